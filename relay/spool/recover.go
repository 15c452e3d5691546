package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// scanned is one segment file found at Open.
type scanned struct {
	g    *segment
	f    *os.File
	size int64
}

// listSegments sorts queue/ into segment files and the rest.
func listSegments(dir string) (segs []uint64, other []string, err error) {
	ents, err := os.ReadDir(filepath.Join(dir, dirQueue))
	if err != nil {
		return nil, nil, fmt.Errorf("spool: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if hex, ok := strings.CutSuffix(name, extSeg); ok && len(hex) == 16 && e.Type().IsRegular() {
			if seq, err := strconv.ParseUint(hex, 16, 64); err == nil && seq > 0 {
				segs = append(segs, seq)
				continue
			}
		}
		other = append(other, name)
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i] < segs[j] })
	sort.Strings(other)
	return segs, other, nil
}

// replay applies the records of one segment to the index (mu held or not
// yet shared). Later records win: a Put of a known id relocates it, a
// state record replaces its envelope, a tombstone removes it.
func (s *Spool) replayRecord(g *segment, r rec) {
	switch r.kind {
	case kindPut:
		if old := s.index[r.id]; old != nil {
			s.release(old.data, 1)
			s.release(old.state, 1)
		}
		g.live += 2
		s.index[r.id] = &entry{env: r.env, data: g, off: r.msgOff, n: r.msgLen, head: r.msgOff - r.off, state: g}
	case kindState:
		if e := s.index[r.id]; e != nil {
			g.live++
			s.release(e.state, 1)
			e.state, e.env = g, r.env
		}
	case kindTomb:
		if target := s.applyTomb(r.id, g); target != nil && target != g {
			g.tombs = append(g.tombs, tombRef{r.id, target})
		}
	}
}

// scanSegment decodes every record of a segment in order. It returns the
// end of the last good record before an undecodable tail (torn: true when
// such a tail exists) and whether undecodable bytes were followed by good
// records (bad). Records after damage are found again by their magic and
// fully verified, so every record that parses is applied.
func scanSegment(r io.ReaderAt, size int64, seq uint64, apply func(rec)) (end int64, torn, bad bool) {
	wr := newWindowReader(r, size)
	off := int64(0)
	for off < size {
		rc, err := decodeRecord(wr, off, size, seq)
		if err == nil {
			apply(rc)
			off = rc.end
			continue
		}
		n := resync(wr, off+1, size, seq)
		if n < 0 {
			return off, true, bad
		}
		bad, off = true, n
	}
	return off, false, bad
}

// allZero reports whether r holds only zero bytes in [from, size).
func allZero(r io.ReaderAt, from, size int64) bool {
	buf := make([]byte, 64<<10)
	for o := from; o < size; {
		n, err := r.ReadAt(buf[:min(int64(len(buf)), size-o)], o)
		for _, b := range buf[:n] {
			if b != 0 {
				return false
			}
		}
		if err != nil && n == 0 {
			return false
		}
		o += int64(n)
	}
	return true
}

// resync returns the offset of the next decodable record at or after
// from, or -1.
func resync(r io.ReaderAt, from, size int64, seq uint64) int64 {
	var magic [4]byte
	binary.LittleEndian.PutUint32(magic[:], recMagic)
	buf := make([]byte, 1<<20)
	for o := from; o+hdrSize <= size; {
		n, _ := r.ReadAt(buf[:min(int64(len(buf)), size-o)], o)
		if n < len(magic) {
			return -1
		}
		chunk := buf[:n]
		for i := 0; ; {
			k := bytes.Index(chunk[i:], magic[:])
			if k < 0 {
				break
			}
			at := o + int64(i+k)
			if _, err := decodeRecord(r, at, size, seq); err == nil {
				return at
			}
			i += k + 1
		}
		o += int64(n - len(magic) + 1)
	}
	return -1
}

// recover runs at Open with the lock held, before anything else touches
// the spool (package doc, "Recovery").
func (s *Spool) recover() error {
	tmp := filepath.Join(s.dir, dirTmp)
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	for _, e := range ents { // staging files of Puts that never returned
		if err := os.RemoveAll(filepath.Join(tmp, e.Name())); err != nil {
			return fmt.Errorf("spool: removing temp file: %w", err)
		}
	}
	seqs, other, err := listSegments(s.dir)
	if err != nil {
		return err
	}
	var all []scanned
	defer func() {
		for _, sc := range all {
			sc.f.Close()
		}
	}()
	for i, seq := range seqs {
		g := &segment{seq: seq, path: filepath.Join(s.dir, dirQueue, fmt.Sprintf("%016x%s", seq, extSeg))}
		f, err := os.OpenFile(g.path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("spool: %w", err)
		}
		all = append(all, scanned{g, f, fi.Size()})
		s.segs[seq] = g
		s.lastSeq = seq
		end, torn, bad := scanSegment(f, fi.Size(), seq, func(r rec) { s.replayRecord(g, r) })
		last := i == len(seqs)-1
		switch {
		case torn && !bad && (last || allZero(f, end, fi.Size())):
			// Records past the last sync (none was acknowledged), or
			// the zeros written ahead (preallocate) of a segment whose
			// cut at roll failed.
			if err := f.Truncate(end); err != nil {
				return fmt.Errorf("spool: cutting torn tail of %s: %w", g.path, err)
			}
			if !s.opt.NoSync {
				if err := unix.Fdatasync(int(f.Fd())); err != nil {
					return fmt.Errorf("spool: %w", err)
				}
			}
		case torn || bad:
			g.bad = true
		}
	}
	if err := s.roll(); err != nil {
		return err
	}
	// Salvage: every message whose record or latest state lives in a
	// damaged segment is written again, whole, to the new segment, and so
	// is every tombstone of a damaged segment that still cancels a record
	// elsewhere; then the damaged segments go to corrupt/.
	var rewrites int
	for id, e := range s.index {
		if !e.data.bad && !e.state.bad {
			continue
		}
		if err := s.rewrite(id, e); err != nil {
			return err
		}
		rewrites++
	}
	for _, sc := range all {
		if !sc.g.bad {
			continue
		}
		for _, t := range sc.g.tombs {
			if t.target.bad || t.target.gone || s.index[t.id] != nil {
				continue
			}
			g, _, _, err := s.append(kindTomb, t.id, nil, nil, 0, false)
			if err != nil {
				return fmt.Errorf("spool: salvaging %s: %w", sc.g.path, err)
			}
			g.live++
			t.target.pins = append(t.target.pins, g)
			rewrites++
		}
	}
	if rewrites > 0 && !s.opt.NoSync {
		if err := unix.Fdatasync(int(s.cur.f.Fd())); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	s.batch = nil // synced above; the committer starts with nothing
	var aside []string
	for _, sc := range all {
		if sc.g.bad {
			aside = append(aside, filepath.Base(sc.g.path))
		}
	}
	// Any other file in queue/ is not ours: set aside, never deleted.
	aside = append(aside, other...)
	if err := s.setAside(aside); err != nil {
		return err
	}
	for _, sc := range all {
		g := sc.g
		if g.bad {
			g.gone = true
			delete(s.segs, g.seq)
			for _, p := range g.pins {
				s.release(p, 1)
			}
			g.pins = nil
		}
	}
	for _, sc := range all {
		sc.g.tombs = nil
		sc.g.sealed, sc.g.sealedAt = true, time.Now()
		s.release(sc.g, 0)
	}
	return nil
}

// rewrite appends id again, envelope and message, to the current segment.
func (s *Spool) rewrite(id string, e *entry) error {
	f, err := os.Open(e.data.path)
	if err != nil {
		return fmt.Errorf("spool: salvaging %s: %w", id, err)
	}
	defer f.Close()
	m, err := s.stage(io.NewSectionReader(f, e.off, e.n), e.n)
	if err != nil {
		return fmt.Errorf("spool: salvaging %s: %w", id, err)
	}
	defer m.close()
	b, err := encodeEnvelope(e.env)
	if err != nil {
		return err
	}
	g, off, _, err := s.append(kindPut, id, b, m, 2, false)
	if err != nil {
		return fmt.Errorf("spool: salvaging %s: %w", id, err)
	}
	s.release(e.data, 1)
	s.release(e.state, 1)
	e.data, e.state, e.off, e.head = g, g, off, int64(hdrSize+len(id)+len(b))
	return nil
}

// setAside moves names of queue/ to corrupt/ and makes both directories
// durable.
func (s *Spool) setAside(names []string) error {
	if len(names) == 0 {
		return nil
	}
	for _, name := range names {
		dst := filepath.Join(s.dir, dirBad, name)
		if _, err := os.Lstat(dst); err == nil {
			dst += "." + strconv.FormatInt(time.Now().UnixNano(), 10)
		}
		if err := os.Rename(filepath.Join(s.dir, dirQueue, name), dst); err != nil {
			return fmt.Errorf("spool: setting aside %s: %w", name, err)
		}
	}
	if s.opt.NoSync {
		return nil
	}
	if err := syncDir(filepath.Join(s.dir, dirBad)); err != nil {
		return err
	}
	if err := s.qdir.Sync(); err != nil {
		return fmt.Errorf("spool: %w", err)
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

// snapshot rebuilds a read-only spool's index from the segments without
// changing anything: damaged and torn records are skipped. A segment
// deleted between the listing and its scan (its last messages removed or
// moved by compaction to a segment the listing may not show) makes it
// list and scan again.
func (s *Spool) snapshot() error {
	var err error
	for try := 0; try < 5; try++ {
		var vanished bool
		if vanished, err = s.scanAll(); err == nil && !vanished {
			return nil
		}
	}
	return err
}

func (s *Spool) scanAll() (vanished bool, err error) {
	seqs, _, err := listSegments(s.dir)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index, s.segs = map[string]*entry{}, map[uint64]*segment{}
	for _, seq := range seqs {
		g := &segment{seq: seq, path: filepath.Join(s.dir, dirQueue, fmt.Sprintf("%016x%s", seq, extSeg))}
		f, err := os.Open(g.path)
		if errors.Is(err, fs.ErrNotExist) {
			vanished = true
			continue
		}
		if err != nil {
			return false, fmt.Errorf("spool: %w", err)
		}
		fi, err := f.Stat()
		if err == nil {
			scanSegment(f, fi.Size(), seq, func(r rec) { s.replayRecord(g, r) })
		}
		f.Close()
		if err != nil {
			return false, fmt.Errorf("spool: %w", err)
		}
	}
	return vanished, nil
}
