package rules

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// list is a named list loaded from a file: one entry a line, '#' starts a
// comment. An entry is a CIDR or IP (client addresses), an address
// (contains '@'), a domain (matches itself) or ".domain" (matches its
// subdomains, not itself).
type list struct {
	addrs   map[string]bool
	domains map[string]bool
	subs    map[string]bool
	nets    []netip.Prefix
}

const (
	maxListBytes   = 16 << 20
	maxListEntries = 1 << 20
)

func loadList(path string) (*list, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > maxListBytes {
		return nil, fmt.Errorf("%s: list file larger than %d bytes", path, maxListBytes)
	}
	l := &list{addrs: map[string]bool{}, domains: map[string]bool{}, subs: map[string]bool{}}
	sc := bufio.NewScanner(f)
	n, line := 0, 0
	for sc.Scan() {
		line++
		s, _, _ := strings.Cut(sc.Text(), "#")
		s = strings.ToLower(strings.TrimSpace(s))
		if s == "" {
			continue
		}
		if n++; n > maxListEntries {
			return nil, fmt.Errorf("%s:%d: more than %d entries", path, line, maxListEntries)
		}
		switch {
		case strings.ContainsRune(s, '/'):
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %q is not a CIDR prefix", path, line, s)
			}
			l.nets = append(l.nets, p.Masked())
		case strings.ContainsRune(s, '@'):
			l.addrs[s] = true
		default:
			if a, err := netip.ParseAddr(s); err == nil {
				l.nets = append(l.nets, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
				continue
			}
			if strings.ContainsAny(s, " \t\"") {
				return nil, fmt.Errorf("%s:%d: %q is not a domain, address or CIDR", path, line, s)
			}
			if strings.HasPrefix(s, ".") {
				l.subs[strings.TrimPrefix(s, ".")] = true
			} else {
				l.domains[s] = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

// match reports whether v is in the list: an IP against the prefixes; an
// address exactly, or by its domain; a domain exactly or by a parent
// ".domain" entry.
func (l *list) match(v string) bool {
	if v == "" {
		return false
	}
	if a, err := netip.ParseAddr(v); err == nil {
		a = a.Unmap()
		for _, p := range l.nets {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	v = strings.ToLower(v)
	if i := strings.LastIndexByte(v, '@'); i >= 0 {
		if l.addrs[v] {
			return true
		}
		v = v[i+1:]
	}
	v = strings.TrimSuffix(v, ".")
	if l.domains[v] {
		return true
	}
	for i := 0; i < 127; i++ { // bounded: a domain has at most 127 labels
		dot := strings.IndexByte(v, '.')
		if dot < 0 {
			return false
		}
		v = v[dot+1:]
		if l.subs[v] {
			return true
		}
	}
	return false
}
