// Package maildir owns durable delivery of one message into one Maildir,
// and the per-mailbox quota check that goes with it.
//
// It follows the Maildir convention (D. J. Bernstein, cr.yp.to/proto/
// maildir.html) as refined by Courier and Dovecot:
//
//   - a message is written to tmp/<unique>, synced, then hard-linked into
//     new/ and the tmp name removed, so that a reader never sees half a
//     message in new/;
//   - the unique name is "<seconds>.M<usec>P<pid>R<random>.<host>", the
//     host with '/' written as \057 and ':' as \072 (Dovecot's rule), and
//     the name in new/ carries ",S=<size>" (Maildir++), which lets quota
//     scans and IMAP servers know a message's size without a stat;
//   - the R<random> part replaces the per-process delivery counter Q<n> of
//     the convention, so that no process-wide state is needed; creating the
//     tmp file with O_EXCL and linking (which never overwrites) make a
//     collision an error that is retried with a new name, never a loss.
//
// Durability (ARCHITECTURE.md, "Durability"): Deliver returns nil only
// after the file's data is fsynced and new/ is fsynced, so the entry
// survives a crash. Directories it creates are fsynced into their parents.
// On any error the tmp file is removed.
//
// The bytes are written unchanged: no line-ending conversion and no
// header is added (a caller that wants Return-Path or Delivered-To, RFC
// 5321 §4.4, prepends them to the reader).
//
// Options.Folder delivers into a Maildir++ folder (".Junk" inside the
// mailbox, with its own tmp/new/cur and the "maildirfolder" marker file,
// as Courier and Dovecot lay folders out), created on demand.
//
// Quota uses a Maildir++ "maildirsize" file as a cache of the mailbox's
// size (Courier's maildirquota, also read and written by Dovecot's
// Maildir++ quota backend); see quota.go.
package maildir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options tune a delivery. The zero value is usable: no quota, the host's
// name, the real file system and clock.
type Options struct {
	// Quota is the most bytes the mailbox may hold (messages in new/ and
	// cur/ of the mailbox and of its Maildir++ folders); 0 means none.
	Quota int64
	// Hostname goes into the unique name; default os.Hostname().
	Hostname string
	// FS is the file system; default OS{}. Tests inject failures here.
	FS FS
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Folder is a Maildir++ folder to deliver into, e.g. "Junk": the
	// message goes to <dir>/.Junk/new (see ValidFolder). "" is the
	// mailbox itself (INBOX). The quota is the whole mailbox's either way.
	Folder string
}

const (
	dirPerm  = 0o700
	filePerm = 0o600
	// nameTries bounds the retries when a unique name is already taken.
	nameTries = 8
	// maxDirDepth bounds the walk up when creating missing parents.
	maxDirDepth = 64
)

// Deliver writes msg into the Maildir at dir, creating dir/{tmp,new,cur}
// (mode 0700) if missing, and returns the path of the new file in new/.
// A nil error means the message is durable.
//
// With opt.Folder, the message goes into the Maildir++ folder
// dir/.<Folder>/ instead, laid out as Dovecot and Courier expect: its own
// tmp, new and cur, and an empty "maildirfolder" file that marks it a
// folder, all created on demand and fsynced like the mailbox itself.
//
// Errors: an over-quota mailbox gives a *reply.Reply 452 4.2.2 that wraps
// ErrQuotaExceeded (temporary, see quota.go); every other error is a plain
// (temporary) I/O error.
func Deliver(dir string, msg io.Reader, opt Options) (path string, err error) {
	if dir == "" {
		return "", errors.New("maildir: empty directory")
	}
	opt = opt.withDefaults()
	fsys := opt.FS
	mailbox := dir
	if opt.Folder != "" {
		if !ValidFolder(opt.Folder) {
			return "", fmt.Errorf("maildir: %q is not a folder name", opt.Folder)
		}
		dir = filepath.Join(mailbox, "."+opt.Folder)
	}
	for _, d := range maildirDirs(mailbox, dir) {
		if err := mkdirAll(fsys, d, 0); err != nil {
			return "", fmt.Errorf("maildir: create %s: %w", d, err)
		}
	}
	if dir != mailbox {
		if err := markFolder(fsys, dir); err != nil {
			return "", err
		}
	}
	q := quota{fsys: fsys, dir: mailbox, limit: opt.Quota, now: opt.Now}
	// Refuse early when the mailbox is already over quota, before the
	// message is written at all.
	if err := q.check(0); err != nil {
		return "", err
	}

	base, tmpPath, f, err := createTmp(fsys, dir, opt)
	if err != nil {
		return "", err
	}
	cleanup := func() { _ = fsys.Remove(tmpPath) }

	size, err := io.Copy(f, msg)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		cleanup()
		return "", fmt.Errorf("maildir: write %s: %w", tmpPath, err)
	}
	if err := q.check(size); err != nil {
		cleanup()
		return "", err
	}

	newDir := filepath.Join(dir, "new")
	var newPath string
	for try := 0; ; try++ {
		newPath = filepath.Join(newDir, base+",S="+strconv.FormatInt(size, 10))
		err = place(fsys, tmpPath, newPath)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || try+1 >= nameTries {
			cleanup()
			return "", fmt.Errorf("maildir: move into new/: %w", err)
		}
		base = uniqueName(opt)
	}
	if err := fsys.SyncDir(newDir); err != nil {
		// The entry may or may not survive a crash: take it back so that
		// the caller's retry does not deliver twice.
		_ = fsys.Remove(newPath)
		cleanup()
		return "", fmt.Errorf("maildir: sync %s: %w", newDir, err)
	}
	// The message is durable in new/; the tmp name is only a leftover
	// now (readers clean tmp/ files older than 36 hours anyway).
	cleanup()
	q.added(size)
	return newPath, nil
}

// maildirDirs are the directories a delivery into dir needs: the
// mailbox's own, and the folder's when dir is a folder of it.
func maildirDirs(mailbox, dir string) []string {
	var out []string
	for _, d := range []string{mailbox, dir} {
		out = append(out, d, filepath.Join(d, "tmp"), filepath.Join(d, "new"), filepath.Join(d, "cur"))
		if dir == mailbox {
			break
		}
	}
	return out
}

// FolderMarker is the empty file that marks a Maildir++ folder (Courier's
// convention; Dovecot creates it too).
const FolderMarker = "maildirfolder"

// markFolder creates the folder's marker file if missing, durably.
func markFolder(fsys FS, folder string) error {
	name := filepath.Join(folder, FolderMarker)
	if _, err := fsys.Stat(name); err == nil {
		return nil
	}
	f, err := fsys.Create(name, filePerm)
	if errors.Is(err, fs.ErrExist) {
		return nil // made by a concurrent delivery
	}
	if err != nil {
		return fmt.Errorf("maildir: create %s: %w", name, err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.SyncDir(folder)
	}
	if err != nil {
		return fmt.Errorf("maildir: create %s: %w", name, err)
	}
	return nil
}

// maxFolder bounds a folder name (one path element, with its dot).
const maxFolder = 200

// ValidFolder reports whether name can be a Maildir++ folder moat
// delivers into: 1 to 200 characters of letters, digits, '_', '-', and
// '.' between parts (Maildir++ writes a subfolder "Spam/Old" as
// ".Spam.Old"). No '/', no leading, trailing or doubled dot, nothing
// that needs Dovecot's modified UTF-7 ('&') or escaping: the name is one
// path element inside the mailbox, never a way out of it.
func ValidFolder(name string) bool {
	if name == "" || len(name) > maxFolder || name[0] == '.' || name[len(name)-1] == '.' || strings.Contains(name, "..") {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func (o Options) withDefaults() Options {
	if o.FS == nil {
		o.FS = OS{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		o.Hostname = h
	}
	return o
}

// createTmp creates tmp/<unique> exclusively, retrying a taken name.
func createTmp(fsys FS, dir string, opt Options) (base, path string, f File, err error) {
	for try := 0; try < nameTries; try++ {
		base = uniqueName(opt)
		path = filepath.Join(dir, "tmp", base)
		f, err = fsys.Create(path, filePerm)
		if err == nil {
			return base, path, f, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	return "", "", nil, fmt.Errorf("maildir: create tmp file: %w", err)
}

// place puts tmpPath at newPath without ever replacing an existing file:
// link(2) as the convention says; on file systems without hard links, a
// rename after checking that the name is free (the name is unique by
// construction, so the check only guards against a bug).
func place(fsys FS, tmpPath, newPath string) error {
	err := fsys.Link(tmpPath, newPath)
	if err == nil || errors.Is(err, fs.ErrExist) || !linkUnsupported(err) {
		return err
	}
	if _, serr := fsys.Stat(newPath); serr == nil {
		return &fs.PathError{Op: "rename", Path: newPath, Err: fs.ErrExist}
	}
	return fsys.Rename(tmpPath, newPath)
}

func linkUnsupported(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOTSUP) ||
		errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EOPNOTSUPP) ||
		errors.Is(err, syscall.EMLINK)
}

// uniqueName builds "<seconds>.M<usec>P<pid>R<random>.<host>".
func uniqueName(opt Options) string {
	now := opt.Now()
	var rnd [8]byte
	_, _ = rand.Read(rnd[:]) // crypto/rand.Read never fails (Go 1.24+)
	var b strings.Builder
	b.Grow(64)
	b.WriteString(strconv.FormatInt(now.Unix(), 10))
	b.WriteString(".M")
	b.WriteString(strconv.Itoa(now.Nanosecond() / 1000))
	b.WriteString("P")
	b.WriteString(strconv.Itoa(os.Getpid()))
	b.WriteString("R")
	b.WriteString(hex.EncodeToString(rnd[:]))
	b.WriteString(".")
	b.WriteString(EscapeHost(opt.Hostname))
	return b.String()
}

// EscapeHost writes a host name for use in a unique name: '/' becomes
// \057 and ':' becomes \072 (the Maildir convention as Dovecot applies
// it), so the name is one path element and has no info separator.
func EscapeHost(h string) string {
	if !strings.ContainsAny(h, "/:") {
		return h
	}
	return strings.NewReplacer("/", `\057`, ":", `\072`).Replace(h)
}

// mkdirAll creates path and missing parents (mode 0700), fsyncing each
// parent after a child was created in it, so a new mailbox survives a
// crash together with its first message.
func mkdirAll(fsys FS, path string, depth int) error {
	fi, err := fsys.Stat(path)
	if err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: path, Err: syscall.ENOTDIR}
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if depth >= maxDirDepth {
		return fmt.Errorf("%s: too many missing parent directories", path)
	}
	parent := filepath.Dir(path)
	if parent != path {
		if err := mkdirAll(fsys, parent, depth+1); err != nil {
			return err
		}
	}
	if err := fsys.Mkdir(path, dirPerm); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return fsys.SyncDir(parent)
}
