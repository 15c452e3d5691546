// Package junkwatch learns from what users do with their mail: a message
// a user moves into the Junk folder of a local Maildir is learned as
// spam; one that was learned so (or that moat itself filed into Junk)
// and is moved back to the inbox is learned as ham.
//
// Layout (Maildir++, Dovecot's): a mailbox is <root>/<domain>/<local>/
// with the inbox in cur/ and new/ and the Junk folder in
// .Junk/cur and .Junk/new. A Maildir move is a rename or a link, which
// updates the file's ctime: each scan looks only at files changed since
// the last one. The watcher's state (the digests it learned as spam, and
// of mail moat filed into Junk, per mailbox, bounded; the time of the
// last scan) is one small JSON file in data_dir, written atomically:
// a restart resumes where the last finished scan left off, and learning
// is idempotent, so a scan cut short is simply done again.
//
// Mail that moat filed into Junk itself carries its X-Spam-Flag: YES
// field (inbound X-Spam-* fields are removed at the gateway); it is not
// learned as spam — that would teach the classifier its own verdicts —
// but remembered, so that a user who moves it to the inbox teaches ham.
package junkwatch

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"moat/internal/atomicfile"
	"moat/policy/bayes"
	"moat/policy/content"
)

// Options configure a Watcher.
type Options struct {
	// Root is the mailbox root: <Root>/<domain>/<local>/ are Maildirs.
	Root string
	// State is the state file's path (e.g. <data_dir>/junkwatch.json).
	State string
	// Folder is the Maildir++ junk folder name. Default "Junk".
	Folder string
	// Learn learns one message as class (the daemon: the learner, source
	// junk_folder, through gateway.ClassifierInput).
	Learn func(ctx context.Context, m *content.Message, class bayes.Class) (bayes.Outcome, error)
	// MaxFiles bounds the files read per scan (the oldest changes first;
	// the rest wait for the next scan). Default 2000.
	MaxFiles int
	// MaxEntries bounds the directory entries looked at per scan.
	// Default 200000.
	MaxEntries int
	// MaxBytes bounds one file read (the maximum message size); a larger
	// file is skipped. Default 32 MiB.
	MaxBytes int64
	// MaxPerMailbox bounds the digests remembered per mailbox (the
	// oldest go first). Default 5000.
	MaxPerMailbox int
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Folder == "" {
		o.Folder = "Junk"
	}
	if o.MaxFiles <= 0 {
		o.MaxFiles = 2000
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 200000
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 32 << 20
	}
	if o.MaxPerMailbox <= 0 {
		o.MaxPerMailbox = 5000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// What a remembered digest is.
const (
	kindLearned = "spam" // learned as spam by this watcher
	kindFiled   = "filed"
)

// entry is one remembered message of a mailbox.
type entry struct {
	Digest string `json:"d"`
	Kind   string `json:"k"`
}

// state is the state file.
type state struct {
	Version  int   `json:"version"`
	LastScan int64 `json:"last_scan_unix_nano"`
	// Resume: the last scan was cut by a bound; LastScan is then the
	// change time of the first file it left, looked at again exactly.
	Resume bool `json:"resume,omitempty"`
	// Seen are the files changed at LastScan that the cut scan read.
	Seen []string `json:"seen,omitempty"`
	// Mailboxes: "<domain>/<local>" -> remembered messages, oldest first.
	Mailboxes map[string][]entry `json:"mailboxes"`
}

// maxStateBytes bounds the state file read at start.
const maxStateBytes = 256 << 20

// Stats are what one scan did.
type Stats struct {
	Files     int // files read
	Spam, Ham int // learned
	Errors    int // files that could not be read or learned
	Truncated bool
}

// Watcher scans the Junk folders. Not safe for concurrent Scans.
type Watcher struct {
	opt Options
	st  state
}

// New returns a Watcher with the state read from Options.State (none or
// unreadable: a first scan looks at every file).
func New(opt Options) (*Watcher, error) {
	opt = opt.withDefaults()
	if opt.Root == "" || opt.State == "" || opt.Learn == nil {
		return nil, errors.New("junkwatch: Root, State and Learn are required")
	}
	w := &Watcher{opt: opt, st: state{Version: 1, Mailboxes: map[string][]entry{}}}
	b, err := readBounded(opt.State, maxStateBytes)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("junkwatch: state %s: %w", opt.State, err)
	default:
		var s state
		if err := json.Unmarshal(b, &s); err != nil || s.Version != 1 {
			// A broken state costs one full rescan, which learns
			// nothing twice; it does not stop the daemon.
			break
		}
		if s.Mailboxes == nil {
			s.Mailboxes = map[string][]entry{}
		}
		w.st = s
	}
	return w, nil
}

// candidate is a file changed since the last scan.
type candidate struct {
	mailbox string // "<domain>/<local>"
	path    string
	junk    bool
	changed time.Time
}

// Scan looks at the files changed since the last scan and learns; it
// saves the state at the end. An error is returned only when the state
// cannot be saved or ctx ends; files that fail are counted.
func (w *Watcher) Scan(ctx context.Context) (Stats, error) {
	var stats Stats
	start := w.opt.Now()
	// A file renamed during the last scan's listing may carry a ctime a
	// little before its end: look a little further back.
	since := time.Time{}
	switch {
	case w.st.Resume:
		since = time.Unix(0, w.st.LastScan)
	case w.st.LastScan != 0:
		since = time.Unix(0, w.st.LastScan).Add(-2 * time.Second)
	}
	cands, truncatedList := w.list(since)
	sort.Slice(cands, func(i, j int) bool {
		if !cands[i].changed.Equal(cands[j].changed) {
			return cands[i].changed.Before(cands[j].changed)
		}
		return cands[i].path < cands[j].path
	})
	// Files a cut scan already read at the time it resumes from (the
	// ctime clock is coarse: many files can share one value).
	done := map[string]bool{}
	if w.st.Resume {
		for _, p := range w.st.Seen {
			done[p] = true
		}
	}
	next, resume := start, false
	var seen []string
	if truncatedList {
		// Entries were left unlisted: do not skip past them.
		stats.Truncated, next, resume, seen = true, since, w.st.Resume, w.st.Seen
	}
	n := 0
	for _, c := range cands {
		if done[c.path] && c.changed.Equal(since) {
			continue
		}
		if n >= w.opt.MaxFiles || ctx.Err() != nil {
			// The rest (changed later) wait for the next scan.
			stats.Truncated, next, resume, seen = true, c.changed, true, nil
			for _, d := range cands {
				if d.changed.Equal(c.changed) && (d.path < c.path || done[d.path]) {
					seen = append(seen, d.path)
				}
			}
			break
		}
		n++
		w.one(ctx, c, &stats)
	}
	w.st.Seen = seen
	w.st.LastScan, w.st.Resume = next.UnixNano(), resume
	if next.IsZero() {
		w.st.LastScan = 0
	}
	w.prune()
	if err := w.save(); err != nil {
		return stats, err
	}
	return stats, ctx.Err()
}

// one handles one changed file.
func (w *Watcher) one(ctx context.Context, c candidate, stats *Stats) {
	known := w.st.Mailboxes[c.mailbox]
	if !c.junk && len(known) == 0 {
		return // nothing of this mailbox was ever in Junk
	}
	raw, err := readBounded(c.path, w.opt.MaxBytes)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) { // moved again meanwhile
			stats.Errors++
		}
		return
	}
	stats.Files++
	m, err := content.Parse(raw, content.Options{})
	if err != nil {
		stats.Errors++
		return
	}
	d := bayes.DigestOf(m.Header("Message-ID"), raw)
	key := hex.EncodeToString(d[:])
	i := indexOf(known, key)
	if c.junk {
		if i >= 0 {
			return // learned (or filed) before
		}
		kind := kindLearned
		if strings.EqualFold(strings.TrimSpace(m.Header("X-Spam-Flag")), "YES") {
			kind = kindFiled // moat's own verdict: not taught back
		} else if _, err := w.opt.Learn(ctx, m, bayes.ClassSpam); err != nil {
			stats.Errors++
			return
		} else {
			stats.Spam++
		}
		w.st.Mailboxes[c.mailbox] = append(known, entry{Digest: key, Kind: kind})
		return
	}
	if i < 0 {
		return
	}
	// Out of Junk, back in the inbox: the user says ham.
	if _, err := w.opt.Learn(ctx, m, bayes.ClassHam); err != nil {
		stats.Errors++
		return
	}
	stats.Ham++
	w.st.Mailboxes[c.mailbox] = append(known[:i:i], known[i+1:]...)
}

func indexOf(es []entry, d string) int {
	for i, e := range es {
		if e.Digest == d {
			return i
		}
	}
	return -1
}

// list returns the files of every mailbox's inbox and Junk folder
// changed after since, at most MaxEntries entries looked at; true when
// that bound cut the listing.
func (w *Watcher) list(since time.Time) ([]candidate, bool) {
	var out []candidate
	budget := w.opt.MaxEntries
	domains, _ := readDirNames(w.opt.Root, &budget)
	for _, dom := range domains {
		users, _ := readDirNames(filepath.Join(w.opt.Root, dom), &budget)
		for _, u := range users {
			mb := filepath.Join(w.opt.Root, dom, u)
			key := dom + "/" + u
			for _, sub := range []struct {
				dir  string
				junk bool
			}{
				{filepath.Join(mb, "."+w.opt.Folder, "cur"), true},
				{filepath.Join(mb, "."+w.opt.Folder, "new"), true},
				{filepath.Join(mb, "cur"), false},
				{filepath.Join(mb, "new"), false},
			} {
				if !sub.junk && len(w.st.Mailboxes[key]) == 0 {
					continue // no need to look at this inbox
				}
				names, _ := readDirNames(sub.dir, &budget)
				for _, n := range names {
					p := filepath.Join(sub.dir, n)
					fi, err := os.Lstat(p)
					if err != nil || !fi.Mode().IsRegular() {
						continue
					}
					if t := changeTime(fi); !t.Before(since) {
						out = append(out, candidate{mailbox: key, path: p, junk: sub.junk, changed: t})
					}
				}
				if budget <= 0 {
					return out, true
				}
			}
		}
	}
	return out, budget <= 0
}

// readDirNames lists dir's names (not starting with "."), spending the
// budget; a missing dir is empty.
func readDirNames(dir string, budget *int) ([]string, error) {
	if *budget <= 0 {
		return nil, nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(*budget)
	*budget -= len(names)
	out := names[:0]
	for _, n := range names {
		if !strings.HasPrefix(n, ".") {
			out = append(out, n)
		}
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return out, err
}

// prune bounds the remembered digests per mailbox (oldest first) and
// drops empty mailboxes.
func (w *Watcher) prune() {
	for k, es := range w.st.Mailboxes {
		if len(es) == 0 {
			delete(w.st.Mailboxes, k)
			continue
		}
		if n := len(es) - w.opt.MaxPerMailbox; n > 0 {
			w.st.Mailboxes[k] = append([]entry(nil), es[n:]...)
		}
	}
}

func (w *Watcher) save() error {
	b, err := json.Marshal(&w.st)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(w.opt.State, b, 0o640); err != nil {
		return fmt.Errorf("junkwatch: saving state: %w", err)
	}
	return nil
}

// Run scans every interval until ctx ends; report is told each scan's
// stats and error (nil: none).
func (w *Watcher) Run(ctx context.Context, interval time.Duration, report func(Stats, error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		st, err := w.Scan(ctx)
		if ctx.Err() != nil {
			return
		}
		if report != nil {
			report(st, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// readBounded reads a file of at most max bytes.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, max)
	}
	return b, nil
}
