package guard

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
)

// Bounds on list input.
const (
	maxListLine    = 512     // bytes in one line of a list file
	maxListEntries = 1 << 20 // prefixes in one list (inline and files together)
)

// ParseList reads a client list: one CIDR prefix or address per line,
// '#' starts a comment, blank lines are ignored. name is used in errors
// ("name:line: ..."). Prefixes are returned masked; IPv4-mapped IPv6
// forms are turned into IPv4.
func ParseList(r io.Reader, name string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxListLine)
	line := 0
	for sc.Scan() {
		line++
		s := sc.Text()
		if i := strings.IndexByte(s, '#'); i >= 0 {
			s = s[:i]
		}
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := parsePrefix(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", name, line, err))
			if len(errs) >= 10 {
				errs = append(errs, fmt.Errorf("%s: too many errors", name))
				break
			}
			continue
		}
		if len(out) >= maxListEntries {
			errs = append(errs, fmt.Errorf("%s:%d: more than %d entries", name, line, maxListEntries))
			break
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("line longer than %d bytes", maxListLine)
		}
		errs = append(errs, fmt.Errorf("%s:%d: %w", name, line+1, err))
	}
	return out, errors.Join(errs...)
}

// parsePrefix parses "192.0.2.0/24", "2001:db8::/32" or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix", s)
		}
		if p.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: zones are not allowed", s)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR prefix", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parseInline(key string, list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for i, s := range list {
		p, err := parsePrefix(strings.TrimSpace(s))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %w", key, i, err))
			continue
		}
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

// loadList builds a prefix set from inline entries and files.
func loadList(key string, inline, files []string) (*prefixSet, error) {
	ps, err := parseInline(key, inline)
	if err != nil {
		return nil, err
	}
	for i, path := range files {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("%s_files[%d]: %w", key, i, err)
		}
		got, err := ParseList(f, path)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s_files[%d]: %w", key, i, err)
		}
		ps = append(ps, got...)
		if len(ps) > maxListEntries {
			return nil, fmt.Errorf("%s: more than %d entries", key, maxListEntries)
		}
	}
	return newPrefixSet(ps), nil
}

// prefixSet answers "is this address inside any of the prefixes" with
// one map probe per distinct prefix length (at most 33 + 129).
type prefixSet struct {
	byLen map[int]map[netip.Prefix]struct{}
	lens4 []int
	lens6 []int
	n     int
}

func newPrefixSet(ps []netip.Prefix) *prefixSet {
	s := &prefixSet{byLen: map[int]map[netip.Prefix]struct{}{}}
	for _, p := range ps {
		key := p.Bits()
		if p.Addr().Is6() {
			key += 1000 // keep IPv4 and IPv6 lengths apart
		}
		m := s.byLen[key]
		if m == nil {
			m = map[netip.Prefix]struct{}{}
			s.byLen[key] = m
			if p.Addr().Is6() {
				s.lens6 = append(s.lens6, p.Bits())
			} else {
				s.lens4 = append(s.lens4, p.Bits())
			}
		}
		if _, dup := m[p]; !dup {
			m[p] = struct{}{}
			s.n++
		}
	}
	return s
}

// Len returns the number of distinct prefixes.
func (s *prefixSet) Len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// Contains reports whether ip is inside one of the prefixes.
func (s *prefixSet) Contains(ip netip.Addr) bool {
	if s == nil || s.n == 0 || !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	lens, off := s.lens4, 0
	if ip.Is6() {
		lens, off = s.lens6, 1000
	}
	for _, bits := range lens {
		p, err := ip.Prefix(bits)
		if err != nil {
			continue
		}
		if _, ok := s.byLen[bits+off][p]; ok {
			return true
		}
	}
	return false
}
