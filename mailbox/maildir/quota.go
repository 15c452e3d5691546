package maildir

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"moat/internal/reply"
)

// ErrQuotaExceeded is wrapped by the reply Deliver returns when the
// message would take the mailbox over its quota.
var ErrQuotaExceeded = errors.New("mailbox quota exceeded")

// MailboxFull is the reply for an over-quota mailbox: 452 4.2.2.
//
// Over quota is a temporary failure on purpose. RFC 3463 §3.3 allows
// X.2.2 "mailbox full" to be a persistent transient error; the owner
// usually frees space within the queue's lifetime, and a retry then
// delivers, whereas a 5yz would bounce the mail at once. The queue still
// bounces (DSN) when the message reaches its maximum age. This is
// Dovecot's quota_full_tempfail=yes and what most MTAs do for a while.
var MailboxFull = reply.New(452, 2, 2, "Mailbox full, try again later")

const (
	sizeFile = "maildirsize"
	// Courier's maildirquota: a maildirsize larger than 5120 bytes is
	// recalculated, and so is one older than 15 minutes when the mailbox
	// looks over quota; we recalculate any older one, as the cache also
	// misses deletions made by IMAP servers that do not update it.
	maxSizeFile = 5120
	maxSizeAge  = 15 * time.Minute
	// scanChunk and maxScanEntries bound the work of a recalculation.
	scanChunk      = 1024
	maxScanEntries = 1 << 20
	maxFolders     = 1000
)

// quota checks a mailbox's size against a limit, through a maildirsize
// file: line 1 "<limit>S", then one "<bytes> <count>" line per change.
// The check is not atomic across concurrent deliveries: a mailbox may go
// over its quota by the messages in flight at that moment (as with
// Courier and Dovecot), never by more.
type quota struct {
	fsys  FS
	dir   string
	limit int64
	now   func() time.Time
}

// check fails when the mailbox plus size bytes would exceed the limit.
// The cached size is trusted only to say "fits"; a cached "does not fit"
// is confirmed by a fresh scan before refusing.
func (q quota) check(size int64) error {
	if q.limit <= 0 {
		return nil
	}
	used, ok := q.cached()
	if ok && used+size <= q.limit {
		return nil
	}
	used, err := q.recalc()
	if err != nil {
		return fmt.Errorf("maildir: quota: %w", err)
	}
	if used+size > q.limit {
		return MailboxFull.With(fmt.Errorf("%w: %s holds %d bytes, message %d, quota %d",
			ErrQuotaExceeded, q.dir, used, size, q.limit))
	}
	return nil
}

// added records a delivered message in the cache. Failure is harmless:
// the next recalculation fixes the sum.
func (q quota) added(size int64) {
	if q.limit <= 0 {
		return
	}
	_ = q.fsys.AppendFile(filepath.Join(q.dir, sizeFile), []byte(strconv.FormatInt(size, 10)+" 1\n"))
}

// cached returns the size the maildirsize file records, if it is usable.
func (q quota) cached() (int64, bool) {
	b, fi, err := q.fsys.ReadFile(filepath.Join(q.dir, sizeFile), maxSizeFile+1)
	if err != nil || len(b) > maxSizeFile || q.now().Sub(fi.ModTime()) > maxSizeAge {
		return 0, false
	}
	return parseSizeFile(string(b), q.limit)
}

// parseSizeFile sums a maildirsize file whose definition line matches
// limit. Any line it does not understand makes the cache unusable.
func parseSizeFile(s string, limit int64) (int64, bool) {
	lines := strings.Split(s, "\n")
	if len(lines) < 2 || lines[len(lines)-1] != "" {
		return 0, false // an unfinished last line: a concurrent append
	}
	if lines[0] != strconv.FormatInt(limit, 10)+"S" {
		return 0, false
	}
	var sum int64
	for _, l := range lines[1 : len(lines)-1] {
		f := strings.Fields(l)
		if len(f) != 2 {
			return 0, false
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n > 1<<50 || n < -(1<<50) {
			return 0, false
		}
		sum += n
	}
	if sum < 0 {
		return 0, false
	}
	return sum, true
}

// recalc scans the mailbox and rewrites the cache.
func (q quota) recalc() (int64, error) {
	scanned := 0
	var total, count int64
	dirs := []string{q.dir}
	// Maildir++ folders are ".Name" directories inside the mailbox.
	if folders, err := q.folders(&scanned); err == nil {
		dirs = append(dirs, folders...)
	} else {
		return 0, err
	}
	for _, d := range dirs {
		for _, sub := range []string{"new", "cur"} {
			n, c, err := q.sumDir(filepath.Join(d, sub), &scanned)
			if err != nil {
				return 0, err
			}
			total += n
			count += c
		}
	}
	content := fmt.Sprintf("%dS\n%d %d\n", q.limit, total, count)
	_ = q.fsys.WriteFileAtomic(filepath.Join(q.dir, sizeFile), []byte(content))
	return total, nil
}

func (q quota) folders(scanned *int) ([]string, error) {
	d, err := q.fsys.OpenDir(q.dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	var out []string
	for *scanned < maxScanEntries && len(out) < maxFolders {
		ents, err := d.ReadDir(scanChunk)
		*scanned += len(ents)
		for _, e := range ents {
			n := e.Name()
			if e.IsDir() && len(n) > 1 && n[0] == '.' && n != ".." {
				out = append(out, filepath.Join(q.dir, n))
			}
		}
		if err != nil || len(ents) == 0 {
			break
		}
	}
	return out, nil
}

// sumDir adds the sizes of the messages in one directory, from the
// ",S=" part of the name when present, else from stat(2).
func (q quota) sumDir(dir string, scanned *int) (total, count int64, err error) {
	d, err := q.fsys.OpenDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	defer d.Close()
	for *scanned < maxScanEntries {
		ents, rerr := d.ReadDir(scanChunk)
		*scanned += len(ents)
		for _, e := range ents {
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			n, ok := SizeFromName(e.Name())
			if !ok {
				fi, err := e.Info()
				if err != nil {
					continue // removed meanwhile
				}
				n = fi.Size()
			}
			total += n
			count++
		}
		if rerr != nil || len(ents) == 0 {
			break
		}
	}
	return total, count, nil
}

// SizeFromName returns the size recorded as ",S=<n>" in a Maildir++ file
// name (before the ":2," info part).
func SizeFromName(name string) (int64, bool) {
	if i := strings.IndexByte(name, ':'); i >= 0 {
		name = name[:i]
	}
	i := strings.Index(name, ",S=")
	if i < 0 {
		return 0, false
	}
	v := name[i+3:]
	if j := strings.IndexByte(v, ','); j >= 0 {
		v = v[:j]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}
