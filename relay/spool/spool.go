package spool

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Errors.
var (
	// ErrNoSpace: the disk or quota is full (ENOSPC, EDQUOT); the gateway
	// answers 452 4.3.1.
	ErrNoSpace = errors.New("spool: no space left")
	// ErrNotFound: no message with that id.
	ErrNotFound = errors.New("spool: no such message")
	// ErrReadOnly: the spool was opened with OpenReadOnly.
	ErrReadOnly = errors.New("spool: opened read-only")
	// ErrClosed: Close was called.
	ErrClosed = errors.New("spool: closed")
)

// SyncMode says how Put and Update make data durable.
type SyncMode int

const (
	// SyncFiles (default): each Put fsyncs its own two files in its own
	// goroutine (the filesystem journal merges concurrent fsyncs into one
	// commit), renames them, then joins a group for ONE fsync of queue/
	// shared by every rename done meanwhile.
	SyncFiles SyncMode = iota
	// SyncFS: no per-file fsync; a group shares one syncfs(2) of the
	// whole filesystem, then renames, then a group directory fsync. Best
	// on a filesystem of its own; slow when it shares the filesystem with
	// busy unrelated writers (syncfs flushes their dirty data too).
	SyncFS
	// SyncEach: no grouping; each Put fsyncs its files and the directory
	// itself. For comparison.
	SyncEach
)

// Options tune a read-write spool.
type Options struct {
	// NoSync skips every fsync. Tests only: it voids the durability promise.
	NoSync bool
	// GroupCommitWindow is how long the leader of a group sync waits for
	// more members before syncing. 0 (default): sync at once; callers that
	// arrive during a sync form the next group.
	GroupCommitWindow time.Duration
	// Sync is the durability method; default SyncFiles.
	Sync SyncMode
}

const (
	dirTmp    = "tmp"
	dirQueue  = "queue"
	dirBad    = "corrupt"
	extMsg    = ".msg"
	extEnv    = ".env"
	lockName  = "lock"
	bufSize   = 32 << 10
	dirPerm   = 0o700
	filePerm  = 0o600
	idTimeLen = 9 // base-62 microseconds: good until year 6200
	idLen     = 16
)

// Spool is a directory of spooled messages. Its methods are safe for
// concurrent use; the caller serializes operations on one message id.
type Spool struct {
	dir      string
	opt      Options
	readOnly bool

	lock    *os.File
	qdir    *os.File   // queue/, for directory fsync and syncfs
	fsSync  *groupSync // syncfs(2) of the spool's filesystem
	dirSync *groupSync // fsync of queue/

	closeMu sync.RWMutex
	closed  bool

	idMu     sync.Mutex
	lastTime int64
	tmpSeq   atomic.Uint64

	// wrapWrite, when set (tests), wraps every file write so that a test
	// can inject failures such as ENOSPC.
	wrapWrite func(name string, w io.Writer) io.Writer
}

type pendingFile struct {
	tmp, final string
	f          *os.File // still open when commit must fsync it
}

type commitReq struct {
	files []pendingFile
	isPut bool
	err   error
}

// Open opens (creating if needed) the spool in dir for reading and
// writing, takes its lock, and recovers from a crash: removes temp files
// and sets aside to dir/corrupt/ every record that does not parse and every
// half of a pair without its partner. It never deletes a message.
func Open(dir string, opt Options) (*Spool, error) {
	for _, d := range []string{dir, filepath.Join(dir, dirTmp), filepath.Join(dir, dirQueue), filepath.Join(dir, dirBad)} {
		if err := os.MkdirAll(d, dirPerm); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, filePerm)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("spool: %s is in use by another process: %w", dir, err)
	}
	s := &Spool{dir: dir, opt: opt, lock: lock}
	if s.qdir, err = os.Open(filepath.Join(dir, dirQueue)); err != nil {
		lock.Close()
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := s.recover(); err != nil {
		s.qdir.Close()
		lock.Close()
		return nil, err
	}
	s.fsSync = newGroupSync(opt.GroupCommitWindow, func() error { return unix.Syncfs(int(s.qdir.Fd())) })
	s.dirSync = newGroupSync(opt.GroupCommitWindow, s.qdir.Sync)
	return s, nil
}

// OpenReadOnly opens an existing spool for List, Get and Open only,
// without the lock and without recovery, so that `moat queue list` works
// whether or not the daemon runs. A record being replaced while it is
// read is seen either old or new (rename is atomic); unparseable records
// are skipped.
func OpenReadOnly(dir string) (*Spool, error) {
	fi, err := os.Stat(filepath.Join(dir, dirQueue))
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("spool: %s is not a directory", filepath.Join(dir, dirQueue))
	}
	return &Spool{dir: dir, readOnly: true}, nil
}

// Close waits for commits under way, then releases the lock. Calls after the first return nil.
func (s *Spool) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	s.closeMu.Unlock()
	if s.readOnly {
		return nil
	}
	err := s.qdir.Close()
	if e := s.lock.Close(); err == nil {
		err = e
	}
	return err
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// NewID returns a new queue id: 16 characters of [0-9A-Za-z], the first 9
// the time in microseconds in base 62 (strictly increasing within this
// process, so ids sort by arrival), the last 7 random (unique across
// processes and restarts with a clock step back).
func (s *Spool) NewID() string {
	s.idMu.Lock()
	t := time.Now().UnixMicro()
	if t <= s.lastTime {
		t = s.lastTime + 1
	}
	s.lastTime = t
	s.idMu.Unlock()
	var b [idLen]byte
	for i := idTimeLen - 1; i >= 0; i-- {
		b[i] = base62[t%62]
		t /= 62
	}
	var r [idLen - idTimeLen]byte
	rand.Read(r[:])
	for i, c := range r {
		b[idTimeLen+i] = base62[int(c)%62]
	}
	return string(b[:])
}

func (s *Spool) msgPath(id string) string { return filepath.Join(s.dir, dirQueue, id+extMsg) }
func (s *Spool) envPath(id string) string { return filepath.Join(s.dir, dirQueue, id+extEnv) }
func (s *Spool) tmpPath(id, ext string) string {
	return filepath.Join(s.dir, dirTmp, id+ext+"."+strconv.FormatUint(s.tmpSeq.Add(1), 10))
}

// noSpace maps ENOSPC and EDQUOT to ErrNoSpace, keeping the cause.
func noSpace(err error) error {
	if err == nil || errors.Is(err, ErrNoSpace) {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

// Put writes a new message and its envelope and returns nil only once
// both are durable (see the package doc). env.ID must be new (NewID);
// env.Size is set to the number of bytes read from msg. On error nothing
// of the message remains visible.
func (s *Spool) Put(ctx context.Context, env *Envelope, msg io.Reader) (err error) {
	if s.readOnly {
		return ErrReadOnly
	}
	if !ValidID(env.ID) {
		return fmt.Errorf("spool: bad queue id %q", env.ID)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := os.Lstat(s.envPath(env.ID)); err == nil {
		return fmt.Errorf("spool: queue id %s already exists", env.ID)
	}
	req := &commitReq{isPut: true}
	defer func() {
		if err != nil {
			for _, f := range req.files {
				if f.f != nil {
					f.f.Close()
				}
				os.Remove(f.tmp)
			}
			err = noSpace(err)
		}
	}()
	msgTmp := s.tmpPath(env.ID, extMsg)
	mf, n, err := s.writeTemp(msgTmp, msg)
	req.files = append(req.files, pendingFile{tmp: msgTmp, final: s.msgPath(env.ID), f: mf})
	if err != nil {
		return fmt.Errorf("spool: writing message %s: %w", env.ID, err)
	}
	env.Size = n
	rec, err := encodeEnvelope(env)
	if err != nil {
		return err
	}
	envTmp := s.tmpPath(env.ID, extEnv)
	ef, _, err := s.writeTemp(envTmp, strings.NewReader(string(rec)))
	req.files = append(req.files, pendingFile{tmp: envTmp, final: s.envPath(env.ID), f: ef})
	if err != nil {
		return fmt.Errorf("spool: writing envelope %s: %w", env.ID, err)
	}
	return s.commit(req)
}

// writeTemp creates name and copies r into it. The file is returned open
// when the commit must fsync it, else closed (nil).
func (s *Spool) writeTemp(name string, r io.Reader) (*os.File, int64, error) {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	if err != nil {
		return nil, 0, err
	}
	var w io.Writer = f
	if s.wrapWrite != nil {
		w = s.wrapWrite(name, f)
	}
	bw := bufio.NewWriterSize(w, bufSize)
	n, err := bw.ReadFrom(r)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		f.Close()
		return nil, n, err
	}
	if !s.opt.NoSync && s.opt.Sync != SyncFS {
		return f, n, nil
	}
	return nil, n, f.Close()
}

// commit makes r's temp files durable under their final names (package
// doc): data sync, renames (for a Put the .msg first, then the .env, the
// commit record), directory sync. The two group syncs are shared by every
// commit waiting at the same moment.
func (s *Spool) commit(r *commitReq) error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		s.abandon(r, 0)
		return ErrClosed
	}
	var err error
	switch {
	case s.opt.NoSync:
	case s.opt.Sync == SyncFS:
		err = s.fsSync.Sync()
	default: // SyncFiles, SyncEach: each file, in the caller's goroutine
		for i := range r.files {
			f := &r.files[i]
			if e := f.f.Sync(); err == nil {
				err = e
			}
		}
	}
	for i := range r.files {
		if f := &r.files[i]; f.f != nil {
			if e := f.f.Close(); err == nil {
				err = e
			}
			f.f = nil
		}
	}
	if err != nil {
		r.err = err
		s.abandon(r, 0)
		return r.err
	}
	for i, f := range r.files {
		if err := os.Rename(f.tmp, f.final); err != nil {
			r.err = err
			s.abandon(r, i)
			return r.err
		}
	}
	switch {
	case s.opt.NoSync:
	case s.opt.Sync == SyncEach:
		err = s.qdir.Sync()
	default:
		err = s.dirSync.Sync()
	}
	if err != nil {
		// The names may or may not be durable: take back what was never
		// acknowledged, so that a failed Put leaves nothing visible.
		r.err = err
		if r.isPut {
			s.abandon(r, len(r.files))
		}
		return r.err
	}
	return nil
}

// Open returns the message bytes.
func (s *Spool) Open(id string) (io.ReadCloser, error) {
	if !ValidID(id) {
		return nil, ErrNotFound
	}
	f, err := os.Open(s.msgPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return f, err
}

// Get reads the envelope of id.
func (s *Spool) Get(id string) (*Envelope, error) {
	if !ValidID(id) {
		return nil, ErrNotFound
	}
	return readEnvelope(s.envPath(id), id)
}

func readEnvelope(path, id string) (*Envelope, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxEnvelopeSize+1))
	if err != nil {
		return nil, err
	}
	env, err := ParseEnvelope(b)
	if err != nil {
		return nil, err
	}
	if env.ID != id {
		return nil, fmt.Errorf("spool: record %s holds id %q", id, env.ID)
	}
	return env, nil
}

// Update durably replaces the envelope of an existing message: write a
// temp file, sync, rename over, sync the directory (batched like Put).
func (s *Spool) Update(env *Envelope) (err error) {
	if s.readOnly {
		return ErrReadOnly
	}
	if !ValidID(env.ID) {
		return fmt.Errorf("spool: bad queue id %q", env.ID)
	}
	if _, err := os.Lstat(s.envPath(env.ID)); err != nil {
		return fmt.Errorf("%w: %s", ErrNotFound, env.ID)
	}
	rec, err := encodeEnvelope(env)
	if err != nil {
		return err
	}
	tmp := s.tmpPath(env.ID, extEnv)
	f, _, err := s.writeTemp(tmp, strings.NewReader(string(rec)))
	if err != nil {
		os.Remove(tmp)
		return noSpace(fmt.Errorf("spool: writing envelope %s: %w", env.ID, err))
	}
	return s.commit(&commitReq{files: []pendingFile{{tmp: tmp, final: s.envPath(env.ID), f: f}}})
}

// Remove deletes a message: the envelope first (the message leaves the
// queue at that instant), then the bytes. The removal is not synced: if
// a crash undoes it, the message is delivered again (a duplicate, never a
// loss), or its orphaned bytes are set aside at Open.
func (s *Spool) Remove(id string) error {
	if s.readOnly {
		return ErrReadOnly
	}
	if !ValidID(id) {
		return ErrNotFound
	}
	errEnv := os.Remove(s.envPath(id))
	errMsg := os.Remove(s.msgPath(id))
	if errors.Is(errEnv, fs.ErrNotExist) && errors.Is(errMsg, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if errEnv != nil && !errors.Is(errEnv, fs.ErrNotExist) {
		return errEnv
	}
	if errMsg != nil && !errors.Is(errMsg, fs.ErrNotExist) {
		return errMsg
	}
	return nil
}

// List returns every message in the queue, sorted by id. Records that do
// not parse are skipped (Open sets them aside).
func (s *Spool) List() ([]*Envelope, error) {
	names, err := s.queueNames()
	if err != nil {
		return nil, err
	}
	var out []*Envelope
	for _, name := range names {
		id, ok := strings.CutSuffix(name, extEnv)
		if !ok || !ValidID(id) {
			continue
		}
		env, err := readEnvelope(filepath.Join(s.dir, dirQueue, name), id)
		if err != nil {
			continue
		}
		out = append(out, env)
	}
	return out, nil
}

func (s *Spool) queueNames() ([]string, error) {
	d, err := os.Open(filepath.Join(s.dir, dirQueue))
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	sort.Strings(names)
	return names, nil
}

// recover runs at Open, before anything else touches the spool (the lock
// is held).
func (s *Spool) recover() error {
	tmp := filepath.Join(s.dir, dirTmp)
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	for _, e := range ents {
		// Never acknowledged: Put returns nil only after the rename.
		if err := os.RemoveAll(filepath.Join(tmp, e.Name())); err != nil {
			return fmt.Errorf("spool: removing temp file: %w", err)
		}
	}
	names, err := s.queueNames()
	if err != nil {
		return err
	}
	type pair struct{ msg, env bool }
	ids := map[string]*pair{}
	var strays []string
	for _, name := range names {
		id, ext := name, ""
		if i := strings.LastIndexByte(name, '.'); i >= 0 {
			id, ext = name[:i], name[i:]
		}
		if !ValidID(id) || (ext != extMsg && ext != extEnv) {
			strays = append(strays, name)
			continue
		}
		p := ids[id]
		if p == nil {
			p = &pair{}
			ids[id] = p
		}
		if ext == extMsg {
			p.msg = true
		} else {
			p.env = true
		}
	}
	moved := false
	for id, p := range ids {
		bad := !p.msg || !p.env
		if !bad {
			if _, err := readEnvelope(s.envPath(id), id); err != nil {
				bad = true
			}
		}
		if !bad {
			continue
		}
		if p.msg {
			strays = append(strays, id+extMsg)
		}
		if p.env {
			strays = append(strays, id+extEnv)
		}
	}
	for _, name := range strays {
		dst := filepath.Join(s.dir, dirBad, name)
		if _, err := os.Lstat(dst); err == nil {
			dst += "." + strconv.FormatInt(time.Now().UnixNano(), 10)
		}
		if err := os.Rename(filepath.Join(s.dir, dirQueue, name), dst); err != nil {
			return fmt.Errorf("spool: setting aside %s: %w", name, err)
		}
		moved = true
	}
	if moved && !s.opt.NoSync {
		if err := syncDir(filepath.Join(s.dir, dirBad)); err != nil {
			return err
		}
		if err := s.qdir.Sync(); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// abandon removes the temp files of r and, for a Put, the first n files
// already renamed to their final names (.env first), so that nothing of a
// failed Put stays visible.
func (s *Spool) abandon(r *commitReq, n int) {
	for i := len(r.files) - 1; i >= 0; i-- {
		if f := r.files[i].f; f != nil {
			f.Close()
			r.files[i].f = nil
		}
		if i < n {
			if r.isPut {
				os.Remove(r.files[i].final)
			}
		} else {
			os.Remove(r.files[i].tmp)
		}
	}
	r.err = noSpace(r.err)
}
