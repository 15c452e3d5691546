package spool

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// fileSpool is the Put path of the spool before the segment log (two
// files per message in tmp/, an fsync of each, two renames into one
// queue/ directory, one group fsync of queue/), kept in the tests only so
// that BenchmarkPut measures before and after side by side.
type fileSpool struct {
	dir  string
	qdir *os.File
	seq  atomic.Uint64
	dirG *groupSyncer
}

func openFileSpool(dir string) (*fileSpool, error) {
	for _, d := range []string{dirTmp, dirQueue} {
		if err := os.MkdirAll(filepath.Join(dir, d), dirPerm); err != nil {
			return nil, err
		}
	}
	q, err := os.Open(filepath.Join(dir, dirQueue))
	if err != nil {
		return nil, err
	}
	f := &fileSpool{dir: dir, qdir: q}
	f.dirG = &groupSyncer{fn: q.Sync}
	f.dirG.cond = sync.NewCond(&f.dirG.mu)
	return f, nil
}

func (s *fileSpool) Close() error { return s.qdir.Close() }

func (s *fileSpool) Put(env *Envelope, msg io.Reader) error {
	type pending struct {
		tmp, final string
		f          *os.File
	}
	var files []pending
	write := func(ext string, r io.Reader) (int64, error) {
		tmp := filepath.Join(s.dir, dirTmp, fmt.Sprintf("%s%s.%d", env.ID, ext, s.seq.Add(1)))
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
		if err != nil {
			return 0, err
		}
		files = append(files, pending{tmp, filepath.Join(s.dir, dirQueue, env.ID+ext), f})
		bw := bufio.NewWriterSize(f, 32<<10)
		n, err := bw.ReadFrom(r)
		if err == nil {
			err = bw.Flush()
		}
		return n, err
	}
	n, err := write(".msg", msg)
	if err != nil {
		return err
	}
	env.Size = n
	b, err := encodeEnvelope(env)
	if err != nil {
		return err
	}
	if _, err := write(".env", bytesReader(b)); err != nil {
		return err
	}
	for _, p := range files {
		if err := p.f.Sync(); err != nil {
			return err
		}
		p.f.Close()
	}
	for _, p := range files {
		if err := os.Rename(p.tmp, p.final); err != nil {
			return err
		}
	}
	return s.dirG.Sync()
}

func bytesReader(b []byte) io.Reader { return &sliceReader{b} }

type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// groupSyncer: one sync at a time; a caller is released by a sync that
// started after it called (the old group.go).
type groupSyncer struct {
	fn      func() error
	mu      sync.Mutex
	cond    *sync.Cond
	running bool
	started uint64
	done    uint64
	err     error
}

func (g *groupSyncer) Sync() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	target := g.started + 1
	for g.done < target {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		g.started++
		gen := g.started
		g.mu.Unlock()
		err := g.fn()
		g.mu.Lock()
		g.done, g.err, g.running = gen, err, false
		g.cond.Broadcast()
	}
	return g.err
}
