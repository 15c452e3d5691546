package verify

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"moat/relay/route"
)

// Bounds of a recipients file.
const (
	// MaxListBytes is the largest recipients file read (32 MiB, about a
	// million addresses).
	MaxListBytes = 32 << 20
	// maxListLine bounds a line: an address is at most 254 octets
	// (RFC 5321 §4.5.3.1.3), a comment may be longer.
	maxListLine = 1000
)

// List is a parsed recipients file: addresses and whole domains that
// exist behind a route. It is read-only once parsed and safe for
// concurrent use.
type List struct {
	addrs   map[string]struct{} // "local@domain", lower case, domain in A-labels
	domains map[string]struct{}
}

// Len returns the number of entries (addresses and domains).
func (l *List) Len() int { return len(l.addrs) + len(l.domains) }

// Contains reports whether local@domain is listed, as an address or by
// an "@domain" line. domain must be normalized (route.NormalizeDomain,
// which route.Split does); local is compared case-insensitively.
//
// RFC 5321 §2.4 lets a host treat local parts as case-sensitive; every
// common backend does not, and a list that distinguished case would
// refuse mail for "Alice@" that the backend delivers to "alice@".
func (l *List) Contains(local, domain string) bool {
	if _, ok := l.domains[domain]; ok {
		return true
	}
	_, ok := l.addrs[strings.ToLower(local)+"@"+domain]
	return ok
}

// ParseList reads a recipients file: one address a line, or "@domain"
// for every address of a domain. Blank lines are skipped; "#" starts a
// comment at the beginning of a line or after a space or tab ("#" is
// legal inside a local part, RFC 5322 §3.2.3). Addresses go through the
// same checks as routing (route.Split: no source routes, no address
// literals, no hidden "@"); domains are matched in their ASCII form.
// Any bad line makes the whole file an error naming the line, so that a
// broken file never replaces a working one.
func ParseList(r io.Reader) (*List, error) {
	l := &List{addrs: map[string]struct{}{}, domains: map[string]struct{}{}}
	lr := &io.LimitedReader{R: r, N: MaxListBytes + 1}
	sc := bufio.NewScanner(lr)
	sc.Buffer(make([]byte, 0, 4096), maxListLine+2)
	n := 0
	for sc.Scan() {
		n++
		if lr.N <= 0 {
			return nil, fmt.Errorf("larger than %d octets", MaxListBytes)
		}
		line := sc.Text()
		if i := commentStart(line); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.ContainsAny(line, " \t\x00") {
			return nil, fmt.Errorf("line %d: one address a line, without spaces", n)
		}
		if d, ok := strings.CutPrefix(line, "@"); ok {
			nd, err := route.NormalizeDomain(d)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			l.domains[nd] = struct{}{}
			continue
		}
		local, dom, err := route.Split(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %q: %w", n, line, err)
		}
		l.addrs[strings.ToLower(local)+"@"+dom] = struct{}{}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("line %d: longer than %d octets", n+1, maxListLine)
		}
		return nil, err
	}
	if lr.N <= 0 {
		return nil, fmt.Errorf("larger than %d octets", MaxListBytes)
	}
	return l, nil
}

// commentStart returns the index of a "#" that starts a comment, or -1.
func commentStart(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t') {
			return i
		}
	}
	return -1
}

// listFile is a recipients file that is re-read when it changes. A
// file that fails to read or parse leaves the last good list in place.
type listFile struct {
	path  string
	every time.Duration

	cur  atomic.Pointer[List]
	next atomic.Int64 // Clock time (UnixNano) of the next change check

	mu      sync.Mutex // one reload at a time; guards modTime, size
	modTime time.Time
	size    int64
}

// load reads and parses the file if it changed since the last good
// read (or always, with force).
func (f *listFile) load(force bool) (changed bool, err error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return false, err
	}
	defer fh.Close()
	// The size and time of the file actually read, not of a name that
	// may be renamed over meanwhile.
	st, err := fh.Stat()
	if err != nil {
		return false, err
	}
	if !st.Mode().IsRegular() {
		return false, fmt.Errorf("%s: not a regular file", f.path)
	}
	if !force && f.cur.Load() != nil && st.ModTime().Equal(f.modTime) && st.Size() == f.size {
		return false, nil
	}
	if st.Size() > MaxListBytes {
		return false, fmt.Errorf("%s: larger than %d octets", f.path, MaxListBytes)
	}
	l, err := ParseList(fh)
	if err != nil {
		return false, fmt.Errorf("%s: %w", f.path, err)
	}
	f.cur.Store(l)
	f.modTime, f.size = st.ModTime(), st.Size()
	return true, nil
}

// reload re-reads the file now.
func (f *listFile) reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, err := f.load(true)
	return err
}

// maybeReload checks the file for a change at most once per f.every;
// callers never wait for another caller's reload. It reports whether
// a new list was loaded, and an error only when it tried and failed.
func (f *listFile) maybeReload(now time.Time) (bool, error) {
	next := f.next.Load()
	if now.UnixNano() < next {
		return false, nil
	}
	if !f.next.CompareAndSwap(next, now.Add(f.every).UnixNano()) {
		return false, nil
	}
	if !f.mu.TryLock() {
		return false, nil
	}
	defer f.mu.Unlock()
	return f.load(false)
}
