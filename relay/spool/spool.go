package spool

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
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

// Options tune a read-write spool.
type Options struct {
	// NoSync skips every fsync. Tests only: it voids the durability promise.
	NoSync bool
	// GroupCommitWindow is how long the committer waits after the first
	// record of a batch before syncing, to let more records join. 0
	// (default): sync at once; records appended during a sync form the
	// next batch.
	GroupCommitWindow time.Duration
	// SegmentSize is the size at which the log rolls to a new segment
	// file; default 64 MiB. A record larger than this gets a segment of
	// its own.
	SegmentSize int64
	// CompactAge: a segment sealed for longer than this whose live
	// messages fill less than a quarter of it is compacted (its live
	// messages written again to the current segment, then it is
	// deleted). Default 10 minutes; negative: never.
	CompactAge time.Duration
}

const (
	dirTmp         = "tmp"
	dirQueue       = "queue"
	dirBad         = "corrupt"
	extSeg         = ".seg"
	lockName       = "lock"
	dirPerm        = 0o700
	filePerm       = 0o600
	idTimeLen      = 9 // base-62 microseconds: good until year 6200
	idLen          = 16
	defSegmentSize = 64 << 20
	defCompactAge  = 10 * time.Minute
	idStripes      = 256
	memMsgLimit    = 1 << 20 // larger messages are staged in an unlinked temp file
	preallocStep   = 1 << 20 // zeros written ahead of the end of the current segment
)

// zeroBlock is what preallocate writes, a block at a time.
var zeroBlock [64 << 10]byte

// segment is one log file queue/<seq>.seg.
type segment struct {
	seq  uint64
	path string

	// Under Spool.wmu:
	f          *os.File // open for writing while current or being synced
	fileRefs   int      // holders of f: 1 while current, +1 per sync in flight
	size       int64    // bytes appended
	alloc      int64    // file length: size plus zeros written ahead (preallocate)
	syncFailed bool     // a sync or an undo failed: roll, and fail its waiters

	// Under Spool.mu:
	live     int        // index references (message data, latest state, pinned tombstones)
	sealed   bool       // no longer current: deletable when live drops to 0
	sealedAt time.Time  // for compaction
	gone     bool       // deleted or set aside
	pins     []*segment // segments whose tombstones remove messages of this one
	rf       *os.File   // read handle shared by Open's readers (ReadAt)
	readers  int        // Open's readers holding rf
	tombs    []tombRef  // recovery only: tombstones here for messages of other segments
	bad      bool       // recovery only: to be set aside
}

type tombRef struct {
	id     string
	target *segment
}

func (g *segment) unrefFile() {
	g.fileRefs--
	if g.fileRefs == 0 && g.f != nil {
		g.f.Close()
		g.f = nil
	}
}

// entry is the index entry of one queued message.
type entry struct {
	env   *Envelope
	data  *segment // holds the Put record
	off   int64    // of the message bytes in data
	n     int64
	head  int64    // bytes of the Put record before the message
	state *segment // holds the latest envelope record
}

type waiter struct {
	seg  *segment
	done chan error // nil: nobody waits (a tombstone)
}

// Spool is a segment log of spooled messages with an in-memory index.
// Its methods are safe for concurrent use; the caller serializes
// operations on one message id.
type Spool struct {
	dir      string
	opt      Options
	readOnly bool

	lock *os.File
	qdir *os.File // queue/, for directory fsync

	closeMu sync.RWMutex
	closed  bool

	// wmu orders appends: the current segment and its size.
	wmu     sync.Mutex
	wbuf    []byte // under wmu: the record being written, kept for the next
	cur     *segment
	lastSeq uint64 // of the newest segment file

	// mu guards the index and the segments' reference counts.
	mu          sync.Mutex
	index       map[string]*entry
	closedReads bool // Close ran: read handles close with their last reader
	segs        map[uint64]*segment
	dead        []*segment    // sealed, live == 0: for the reaper
	reap        chan struct{} // kicks the reaper
	stop        chan struct{} // closed by Close

	// The committer's batch.
	cmu      sync.Mutex
	ccond    *sync.Cond
	batch    []waiter
	stopping bool

	wg sync.WaitGroup

	// idLocks serialize Update, Remove and compaction of one id (the
	// caller serializes its own operations; compaction is a second
	// writer).
	idLocks [idStripes]sync.Mutex

	idMu     sync.Mutex
	lastTime int64

	// wrapWrite, when set (tests), wraps every write to a segment so that
	// a test can inject failures such as ENOSPC.
	wrapWrite func(name string, w io.Writer) io.Writer
}

// Open opens (creating if needed) the spool in dir for reading and
// writing, takes its lock, and recovers from a crash (package doc): it
// replays every segment, truncates a torn tail of the last one, salvages
// the records of a damaged segment before setting it aside to corrupt/,
// and sets aside any other file in queue/. It never deletes an
// acknowledged message.
func Open(dir string, opt Options) (*Spool, error) {
	if opt.SegmentSize <= 0 {
		opt.SegmentSize = defSegmentSize
	}
	if opt.CompactAge == 0 {
		opt.CompactAge = defCompactAge
	}
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
	s := &Spool{dir: dir, opt: opt, lock: lock, index: map[string]*entry{}, segs: map[uint64]*segment{}, reap: make(chan struct{}, 1), stop: make(chan struct{})}
	s.ccond = sync.NewCond(&s.cmu)
	if s.qdir, err = os.Open(filepath.Join(dir, dirQueue)); err != nil {
		lock.Close()
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := s.recover(); err != nil {
		s.mu.Lock()
		for _, g := range s.segs {
			if g.f != nil {
				g.f.Close()
			}
		}
		s.mu.Unlock()
		s.qdir.Close()
		lock.Close()
		return nil, err
	}
	s.wg.Add(2)
	go s.committer()
	go s.reaper()
	s.kickReaper()
	return s, nil
}

// OpenReadOnly opens an existing spool for List, Get and Open only,
// without the lock and without changing anything, so that `moat queue
// list` works whether or not the daemon runs. It scans the segments into
// a snapshot; List scans again. A torn or damaged record is skipped.
func OpenReadOnly(dir string) (*Spool, error) {
	fi, err := os.Stat(filepath.Join(dir, dirQueue))
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("spool: %s is not a directory", filepath.Join(dir, dirQueue))
	}
	s := &Spool{dir: dir, readOnly: true}
	if err := s.snapshot(); err != nil {
		return nil, err
	}
	return s, nil
}

// Close syncs what was appended, waits for operations under way, then
// releases the lock. Calls after the first return nil.
func (s *Spool) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	s.closeMu.Unlock()
	s.mu.Lock()
	s.closedReads = true
	for _, g := range s.segs {
		s.dropReadHandle(g)
	}
	s.mu.Unlock()
	if s.readOnly {
		return nil
	}
	s.cmu.Lock()
	s.stopping = true
	s.ccond.Broadcast()
	s.cmu.Unlock()
	close(s.stop)
	s.wg.Wait()
	s.wmu.Lock()
	if s.cur != nil {
		s.cur.unrefFile()
	}
	s.wmu.Unlock()
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

// staged is a message read in full before it is appended: in memory, or
// beyond memMsgLimit in an unlinked temp file.
type staged struct {
	mem  []byte
	buf  *bytes.Buffer // holds mem; back to stageBufs at close
	file *os.File
	n    int64
	crc  uint32
}

// stageBufs recycles the buffers of messages staged in memory: once
// appended, a message is on disk and its buffer free.
var stageBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (m *staged) close() {
	if m.file != nil {
		m.file.Close()
	}
	if m.buf != nil && m.buf.Cap() <= maxReusedRecord {
		m.buf.Reset()
		stageBufs.Put(m.buf)
	}
	m.buf, m.mem = nil, nil
}

// stage takes in the message: in memory up to memMsgLimit, else in a
// temporary file. sizeHint, when the caller knows the size, saves
// growing the buffer on the way.
func (s *Spool) stage(r io.Reader, sizeHint int64) (*staged, error) {
	buf := stageBufs.Get().(*bytes.Buffer)
	m := &staged{buf: buf}
	if sizeHint > 0 && sizeHint <= memMsgLimit {
		buf.Grow(int(sizeHint) + bytes.MinRead)
	}
	n, err := buf.ReadFrom(io.LimitReader(r, memMsgLimit+1))
	if err != nil {
		m.close()
		return nil, err
	}
	if n <= memMsgLimit {
		m.mem, m.n = buf.Bytes(), n
		m.crc = crc32.Checksum(m.mem, castagnoli)
		return m, nil
	}
	f, err := os.CreateTemp(filepath.Join(s.dir, dirTmp), "put")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	m.file = f
	h := crc32.New(castagnoli)
	m.n, err = io.Copy(io.MultiWriter(f, h), io.MultiReader(buf, r))
	m.crc = h.Sum32()
	if err != nil {
		f.Close()
		return nil, err
	}
	return m, nil
}

// maxReusedRecord bounds the record buffer kept between appends.
const maxReusedRecord = 256 << 10

// offWriter writes at a tracked offset of a file.
type offWriter struct {
	f   *os.File
	off int64
}

func (w *offWriter) Write(p []byte) (int, error) {
	n, err := w.f.WriteAt(p, w.off)
	w.off += int64(n)
	return n, err
}

// append writes one record at the end of the current segment, rolling
// first when it is full or damaged, takes refs references on the segment
// for the index, and queues a waiter for the committer. It returns the
// segment, the offset of the message bytes and the channel on which the
// covering sync reports. On a write error the segment is cut back to
// where the record began, so nothing of it stays.
func (s *Spool) append(kind byte, id string, env []byte, msg *staged, refs int, wait bool) (*segment, int64, chan error, error) {
	var msgLen int64
	var msgCRC uint32
	if msg != nil {
		msgLen, msgCRC = msg.n, msg.crc
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	g := s.cur
	total := hdrSize + int64(len(id)+len(env)) + msgLen
	if g.syncFailed || (g.size > 0 && g.size+total > s.opt.SegmentSize) {
		if err := s.roll(); err != nil {
			return nil, 0, nil, err
		}
		g = s.cur
	}
	start := g.size
	rec := appendHeader(s.wbuf[:0], kind, id, env, msgLen, msgCRC, g.seq, start)
	defer func() {
		if cap(rec) <= maxReusedRecord {
			s.wbuf = rec
		}
	}()
	ow := &offWriter{f: g.f}
	var w io.Writer = ow
	if s.wrapWrite != nil {
		w = s.wrapWrite(g.path, ow)
	}
	if !s.opt.NoSync && start+total > g.alloc {
		s.preallocate(g, w, ow, start+total)
	}
	ow.off = start
	var err error
	switch {
	case msg == nil:
		_, err = w.Write(rec)
	case msg.file != nil:
		if _, err = w.Write(rec); err == nil {
			_, err = io.Copy(w, io.NewSectionReader(msg.file, 0, msg.n))
		}
	default:
		// One write for a message held in memory: a copy costs less
		// than a second system call.
		rec = append(rec, msg.mem...)
		_, err = w.Write(rec)
	}
	if err == nil && ow.off != start+total {
		err = io.ErrShortWrite
	}
	if err != nil {
		if e := g.f.Truncate(start); e != nil {
			g.syncFailed = true // never append after an unknown tail
		}
		g.alloc = start
		return nil, 0, nil, noSpace(err)
	}
	g.size = start + total
	g.alloc = max(g.alloc, g.size)
	if refs > 0 {
		s.mu.Lock()
		g.live += refs
		s.mu.Unlock()
	}
	var ch chan error
	if wait {
		ch = make(chan error, 1)
	}
	s.cmu.Lock()
	s.batch = append(s.batch, waiter{seg: g, done: ch})
	s.ccond.Signal()
	s.cmu.Unlock()
	return g, start + hdrSize + int64(len(id)+len(env)), ch, nil
}

// preallocate writes zeros from the end of g's file to preallocStep past
// its records (or to need, for a bigger record), so that the fdatasync of
// a batch finds its blocks allocated and written and the file's length
// durable: only the first sync after an extension, once per MiB, commits
// the growth; the others write the data and flush the disk's cache (about
// half the time and CPU of a sync after a plain append on ext4). The zeros
// are no format change: a record never starts with a zero byte, so
// recovery reads them as the end of the log. On a write error (a full
// disk) the file is cut back to its records and the record is appended
// without zeros ahead. Only when syncing (it is for the sync); called with
// wmu held; ow is w's innermost writer.
func (s *Spool) preallocate(g *segment, w io.Writer, ow *offWriter, need int64) {
	end := max(need, g.size+preallocStep)
	ow.off = g.alloc
	for ow.off < end {
		if _, err := w.Write(zeroBlock[:min(int64(len(zeroBlock)), end-ow.off)]); err != nil {
			if g.f.Truncate(g.size) == nil {
				g.alloc = g.size
			}
			return
		}
	}
	g.alloc = ow.off
}

// roll makes a new current segment: the old one is synced in full (so a
// segment other than the last never has a torn tail), the new file is
// created and its name made durable with a directory fsync, once per
// segment. Called with wmu held.
func (s *Spool) roll() error {
	old := s.cur
	// Segment numbers never repeat, even when the newest segments were
	// deleted before a restart: blocks of a deleted segment that show up
	// in a torn tail after a crash then never pass as records (their
	// header names another segment).
	seq := max(s.lastSeq+1, uint64(time.Now().UnixNano()))
	if old != nil {
		if old.alloc > old.size && old.f.Truncate(old.size) == nil {
			// A sealed segment ends with its last record. Should the
			// cut fail, the zeros stay: recovery reads them as the end.
			old.alloc = old.size
		}
		if !s.opt.NoSync && !old.syncFailed {
			if err := unix.Fdatasync(int(old.f.Fd())); err != nil {
				old.syncFailed = true
			}
		}
	}
	path := filepath.Join(s.dir, dirQueue, fmt.Sprintf("%016x%s", seq, extSeg))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	if err != nil {
		return noSpace(fmt.Errorf("spool: new segment: %w", err))
	}
	if !s.opt.NoSync {
		if err := s.qdir.Sync(); err != nil {
			f.Close()
			os.Remove(path)
			return noSpace(fmt.Errorf("spool: new segment: %w", err))
		}
	}
	s.lastSeq = seq
	g := &segment{seq: seq, path: path, f: f, fileRefs: 1}
	s.mu.Lock()
	s.segs[seq] = g
	if old != nil {
		old.sealed, old.sealedAt = true, time.Now()
		s.release(old, 0)
	}
	s.mu.Unlock()
	if old != nil {
		old.unrefFile()
	}
	s.cur = g
	return nil
}

// committer runs one fdatasync for every record appended since the last
// one and then reports to all their waiters (group commit).
func (s *Spool) committer() {
	defer s.wg.Done()
	var batch []waiter
	for {
		s.cmu.Lock()
		for len(s.batch) == 0 && !s.stopping {
			s.ccond.Wait()
		}
		if len(s.batch) == 0 {
			s.cmu.Unlock()
			return
		}
		if w := s.opt.GroupCommitWindow; w > 0 && !s.stopping {
			s.cmu.Unlock()
			time.Sleep(w)
			s.cmu.Lock()
		} else if !s.stopping {
			// Let writers that are runnable right now append first: a
			// bigger batch for the same one sync, at no real delay.
			s.cmu.Unlock()
			runtime.Gosched()
			s.cmu.Lock()
		}
		batch, s.batch = s.batch, batch[:0]
		s.cmu.Unlock()

		// Every waiter in batch wrote before it joined, so one sync of
		// the current segment started now covers them; records of an
		// older segment were synced when it rolled.
		s.wmu.Lock()
		g := s.cur
		g.fileRefs++
		s.wmu.Unlock()
		var err error
		if !s.opt.NoSync {
			err = unix.Fdatasync(int(g.f.Fd()))
		}
		s.wmu.Lock()
		if err != nil {
			g.syncFailed = true
			err = noSpace(fmt.Errorf("spool: sync: %w", err))
		}
		g.unrefFile()
		errs := make([]error, len(batch))
		for i, w := range batch {
			switch {
			case w.seg == g:
				errs[i] = err
			case w.seg.syncFailed:
				errs[i] = errors.New("spool: sync of a rolled segment failed")
			}
		}
		s.wmu.Unlock()
		for i, w := range batch {
			if w.done != nil {
				w.done <- errs[i]
			}
		}
		clear(batch)
	}
}

// release drops n references to g (n may be 0: a check) and queues g for
// deletion when it is sealed and unreferenced. Called with mu held.
func (s *Spool) release(g *segment, n int) {
	g.live -= n
	if g.live == 0 && g.sealed && !g.gone {
		g.gone = true
		s.dropReadHandle(g)
		s.dead = append(s.dead, g)
		s.kickReaper()
	}
}

// dropReadHandle closes g's shared read handle once g is gone (or the
// spool closed) and no reader holds it. Called with mu held.
func (s *Spool) dropReadHandle(g *segment) {
	if (g.gone || s.closedReads) && g.readers == 0 && g.rf != nil {
		g.rf.Close()
		g.rf = nil
	}
}

func (s *Spool) kickReaper() {
	select {
	case s.reap <- struct{}{}:
	default:
	}
}

// reaper deletes dead segments one at a time: unlink, directory fsync,
// and only then releases the tombstones that removed its messages, so a
// tombstone never disappears while the record it cancels can come back.
func (s *Spool) reaper() {
	defer s.wg.Done()
	var tick <-chan time.Time
	if s.opt.CompactAge > 0 {
		t := time.NewTicker(min(max(s.opt.CompactAge/4, time.Second), time.Minute))
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-s.reap:
			s.reapAll()
		case now := <-tick:
			s.compact(now)
			s.reapAll()
		case <-s.stop:
			s.reapAll() // what died before Close; Open redoes anything left
			return
		}
	}
}

func (s *Spool) reapAll() {
	for {
		s.mu.Lock()
		if len(s.dead) == 0 {
			s.mu.Unlock()
			return
		}
		g := s.dead[0]
		s.dead = s.dead[1:]
		s.mu.Unlock()
		if err := os.Remove(g.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			continue // kept; the next Open retries
		}
		if !s.opt.NoSync {
			if err := s.qdir.Sync(); err != nil {
				continue // its tombstones stay pinned
			}
		}
		s.mu.Lock()
		delete(s.segs, g.seq)
		for _, p := range g.pins {
			s.release(p, 1)
		}
		g.pins = nil
		s.mu.Unlock()
	}
}

func (s *Spool) enter() error {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return ErrClosed
	}
	return nil
}

// Put appends a new message and its envelope as one record and returns
// nil only once a sync that covers the record has completed (package
// doc). env.ID must be new (NewID); env.Size, when set, is taken as a
// hint, and is set to the number of bytes read from msg. On error the message is not in the queue.
func (s *Spool) Put(ctx context.Context, env *Envelope, msg io.Reader) error {
	if s.readOnly {
		return ErrReadOnly
	}
	if !ValidID(env.ID) {
		return fmt.Errorf("spool: bad queue id %q", env.ID)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.closeMu.RUnlock()
	s.mu.Lock()
	_, dup := s.index[env.ID]
	s.mu.Unlock()
	if dup {
		return fmt.Errorf("spool: queue id %s already exists", env.ID)
	}
	m, err := s.stage(msg, env.Size)
	if err != nil {
		return noSpace(fmt.Errorf("spool: reading message %s: %w", env.ID, err))
	}
	defer m.close()
	env.Size = m.n
	stored, b, err := encodeClone(env)
	if err != nil {
		return err
	}
	g, off, ch, err := s.append(kindPut, env.ID, b, m, 2, true)
	if err != nil {
		return fmt.Errorf("spool: writing message %s: %w", env.ID, err)
	}
	if err := <-ch; err != nil {
		// The record may reach the disk all the same: cancel it, best
		// effort, so that it is not delivered after a restart (the
		// client was told to retry: at worst a duplicate).
		t, _, _, terr := s.append(kindTomb, env.ID, nil, nil, 0, false)
		s.mu.Lock()
		if terr == nil && t != g && !g.gone {
			t.live++
			g.pins = append(g.pins, t)
		}
		s.release(g, 2)
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	if old := s.index[env.ID]; old != nil { // a racing Put of the same id
		s.release(old.data, 1)
		s.release(old.state, 1)
	}
	s.index[env.ID] = &entry{env: stored, data: g, off: off, n: m.n, head: int64(hdrSize + len(env.ID) + len(b)), state: g}
	s.mu.Unlock()
	return nil
}

// segReader is an open message: a section of a segment file, read
// through the segment's shared handle.
type segReader struct {
	*io.SectionReader
	s      *Spool
	g      *segment
	closed bool
}

func (r *segReader) Close() error {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	if !r.closed {
		r.closed = true
		r.g.readers--
		r.s.dropReadHandle(r.g)
	}
	return nil
}

// Open returns the message bytes. Readers of one segment share one read
// handle (positioned reads), opened by the first: a message costs no
// open and close of its own.
func (s *Spool) Open(id string) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.index[id]
	if e == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	g := e.data
	if g.rf == nil {
		// Under mu, so compaction cannot move the message meanwhile;
		// once per segment.
		f, err := os.Open(g.path)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		if err != nil {
			return nil, err
		}
		g.rf = f
	}
	g.readers++
	return &segReader{SectionReader: io.NewSectionReader(g.rf, e.off, e.n), s: s, g: g}, nil
}

// Get returns the envelope of id.
func (s *Spool) Get(id string) (*Envelope, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.index[id]
	if e == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return e.env.Clone(), nil
}

// Update durably replaces the envelope of an existing message: it appends
// a state record and returns once a sync covering it has completed.
func (s *Spool) Update(env *Envelope) error {
	if s.readOnly {
		return ErrReadOnly
	}
	if !ValidID(env.ID) {
		return fmt.Errorf("spool: bad queue id %q", env.ID)
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.closeMu.RUnlock()
	lk := s.idLock(env.ID)
	lk.Lock()
	defer lk.Unlock()
	s.mu.Lock()
	_, ok := s.index[env.ID]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, env.ID)
	}
	stored, b, err := encodeClone(env)
	if err != nil {
		return err
	}
	g, _, ch, err := s.append(kindState, env.ID, b, nil, 1, true)
	if err != nil {
		return fmt.Errorf("spool: writing envelope %s: %w", env.ID, err)
	}
	err = <-ch
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.index[env.ID]
	if err != nil || e == nil {
		s.release(g, 1)
		if err == nil {
			err = fmt.Errorf("%w: %s", ErrNotFound, env.ID)
		}
		return err
	}
	s.release(e.state, 1)
	e.state, e.env = g, stored
	return nil
}

// Remove takes a message out of the queue: it appends a tombstone, which
// the next group sync makes durable, and forgets the message at once. A
// crash before that sync brings the message back: delivered again (a
// duplicate, never a loss).
func (s *Spool) Remove(id string) error {
	if s.readOnly {
		return ErrReadOnly
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.closeMu.RUnlock()
	lk := s.idLock(id)
	lk.Lock()
	defer lk.Unlock()
	s.mu.Lock()
	_, ok := s.index[id]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	g, _, _, err := s.append(kindTomb, id, nil, nil, 0, false)
	if err != nil {
		return fmt.Errorf("spool: removing %s: %w", id, err)
	}
	s.mu.Lock()
	s.applyTomb(id, g)
	s.mu.Unlock()
	return nil
}

// applyTomb removes id from the index; the tombstone in g is pinned by the
// segment holding the message until that segment is deleted. Called with
// mu held.
func (s *Spool) applyTomb(id string, g *segment) *segment {
	e := s.index[id]
	if e == nil {
		return nil
	}
	delete(s.index, id)
	if e.data != g && !e.data.gone {
		g.live++
		e.data.pins = append(e.data.pins, g)
	}
	s.release(e.data, 1)
	s.release(e.state, 1)
	return e.data
}

// List returns every message in the queue, sorted by id. A read-only
// spool scans the segments again first.
func (s *Spool) List() ([]*Envelope, error) {
	if err := s.fresh(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	out := make([]*Envelope, 0, len(s.index))
	for _, e := range s.index {
		out = append(out, e.env.Clone())
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// fresh brings a read-only spool (another process's, opened by the
// offline viewers) up to what its files hold now; nothing for a spool
// this process writes.
func (s *Spool) fresh() error {
	if s.readOnly {
		return s.snapshot()
	}
	return nil
}

// Len is the number of messages in the spool: what a count needs,
// without the copies List makes.
func (s *Spool) Len() (int, error) {
	if err := s.fresh(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.index), nil
}

// Sample returns copies of at most n envelopes of the spool, which ones
// unspecified: for figures over a large queue (the status page groups
// deferrals over a sample) without copying all of it under the lock.
func (s *Spool) Sample(n int) ([]*Envelope, error) {
	if err := s.fresh(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Envelope, 0, min(n, len(s.index)))
	for _, e := range s.index {
		if len(out) >= n {
			break
		}
		out = append(out, e.env.Clone())
	}
	return out, nil
}

// DiskBytes is the size of the segment files of the spool in dir (what
// the spool occupies on disk, removed messages included until their
// segment is deleted or compacted, and the zeros written ahead of the
// current segment, up to 1 MiB); 0 if there are none.
func DiskBytes(dir string) int64 {
	ents, err := os.ReadDir(filepath.Join(dir, dirQueue))
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range ents {
		if filepath.Ext(e.Name()) != extSeg {
			continue
		}
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}
