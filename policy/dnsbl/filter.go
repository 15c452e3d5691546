package dnsbl

import (
	"fmt"
	"net/netip"
	"strings"
)

// Filter selects the list answers that count, like the "=" and "&"
// suffixes of postscreen_dnsbl_sites: one address, an inclusive range of
// addresses, or a bitmask (any bit of the mask set in the answer, for
// lists that encode several sub-lists as bits, RFC 5782 §2.3).
type Filter struct {
	lo, hi netip.Addr // range (lo == hi for one address)
	mask   [4]byte    // non-zero for a bitmask filter
	isMask bool
}

// ParseFilter parses "127.0.0.2", "127.0.0.2-127.0.0.11" or "&0.0.0.4".
func ParseFilter(s string) (Filter, error) {
	s = strings.TrimSpace(s)
	if m, ok := strings.CutPrefix(s, "&"); ok {
		a, err := netip.ParseAddr(strings.TrimSpace(m))
		if err != nil || !a.Is4() {
			return Filter{}, fmt.Errorf("%q: a bitmask must be an IPv4 address such as &0.0.0.4", s)
		}
		if a.As4() == [4]byte{} {
			return Filter{}, fmt.Errorf("%q: a bitmask of zero matches nothing", s)
		}
		return Filter{mask: a.As4(), isMask: true}, nil
	}
	loS, hiS, isRange := strings.Cut(s, "-")
	lo, err := netip.ParseAddr(strings.TrimSpace(loS))
	if err != nil || !lo.Is4() {
		return Filter{}, fmt.Errorf("%q: want an IPv4 address, a range a-b or a bitmask &m", s)
	}
	hi := lo
	if isRange {
		hi, err = netip.ParseAddr(strings.TrimSpace(hiS))
		if err != nil || !hi.Is4() {
			return Filter{}, fmt.Errorf("%q: the end of the range is not an IPv4 address", s)
		}
		if hi.Less(lo) {
			return Filter{}, fmt.Errorf("%q: the range ends before it starts", s)
		}
	}
	return Filter{lo: lo, hi: hi}, nil
}

// Match reports whether the answer a passes the filter.
func (f Filter) Match(a netip.Addr) bool {
	a = a.Unmap()
	if !a.Is4() {
		return false
	}
	if f.isMask {
		b := a.As4()
		for i := range b {
			if b[i]&f.mask[i] != 0 {
				return true
			}
		}
		return false
	}
	return !a.Less(f.lo) && !f.hi.Less(a)
}
