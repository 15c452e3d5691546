package spool

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// segFiles returns the segment files of dir's queue/, oldest first.
func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, n := range names(t, filepath.Join(dir, dirQueue)) {
		if strings.HasSuffix(n, extSeg) {
			out = append(out, filepath.Join(dir, dirQueue, n))
		}
	}
	return out
}

func segBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	for _, p := range segFiles(t, dir) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// state is what a spool holds: id → envelope attempts and body.
func state(t *testing.T, s *Spool) map[string]string {
	t.Helper()
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range list {
		out[e.ID] = fmt.Sprintf("attempts=%d body=%s", e.Attempts, readAll(t, s, e.ID))
	}
	return out
}

func put(t *testing.T, s *Spool, body string) *Envelope {
	t.Helper()
	env := testEnv(s)
	if err := s.Put(context.Background(), env, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	return env
}

// A crash can cut the last segment anywhere inside the last record (its
// Put never returned): every earlier record comes back, the torn one
// does not, and the tail is cut off.
func TestTornTail(t *testing.T) {
	src := t.TempDir()
	s := open(t, src, Options{NoSync: true})
	var ids []string
	for i := range 3 {
		ids = append(ids, put(t, s, fmt.Sprint("message ", i)).ID)
	}
	e := testEnv(s)
	e.ID = ids[1]
	e.Attempts = 4
	if err := s.Update(e); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ids[0]); err != nil {
		t.Fatal(err)
	}
	path := segFiles(t, src)[0]
	fi, _ := os.Stat(path)
	synced := fi.Size()
	put(t, s, "the torn one")
	s.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{ids[1]: "attempts=4 body=message 1", ids[2]: "attempts=0 body=message 2"}
	// On ext4 without a journal the unsynced tail may also read as
	// zeros or as stale blocks (here: a copy of the synced records).
	zeros := append(append([]byte(nil), data[:synced]...), make([]byte, int64(len(data))-synced)...)
	stale := append(append([]byte(nil), data[:synced]...), data[:int64(len(data))-synced]...)
	for _, variant := range [][]byte{zeros, stale} {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, dirQueue), 0o700)
		if err := os.WriteFile(filepath.Join(dir, dirQueue, filepath.Base(path)), variant, 0o600); err != nil {
			t.Fatal(err)
		}
		r := open(t, dir, Options{NoSync: true})
		if got := state(t, r); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("garbage tail: recovered %v, want %v", got, want)
		}
		r.Close()
	}
	for cut := synced; cut < int64(len(data)); cut++ {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, dirQueue), 0o700); err != nil {
			t.Fatal(err)
		}
		seg := filepath.Join(dir, dirQueue, filepath.Base(path))
		if err := os.WriteFile(seg, data[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		ro, err := OpenReadOnly(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := state(t, ro); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("cut at %d: read-only view %v, want %v", cut, got, want)
		}
		r, err := Open(dir, Options{NoSync: true})
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if got := state(t, r); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("cut at %d: recovered %v, want %v", cut, got, want)
		}
		r.Close()
		if fi, err := os.Stat(seg); err != nil || fi.Size() != synced {
			t.Errorf("cut at %d: torn tail not cut back to %d: %v %v", cut, synced, fi.Size(), err)
		}
		if n := names(t, filepath.Join(dir, dirBad)); len(n) != 0 {
			t.Errorf("cut at %d: set aside %v", cut, n)
		}
	}
}

// A flipped bit inside a segment: the segment goes to corrupt/, every
// record that still parses is salvaged (written again), removals stay
// removed, and the state survives a second restart.
func TestCorruptMiddle(t *testing.T) {
	for _, where := range []string{"message", "header", "envelope"} {
		t.Run(where, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, Options{SegmentSize: 4096})
			early := put(t, s, "early, in its own segment")
			// Fill the first segment: the Put that rolls is in the second.
			var ids []string
			for len(segFiles(t, dir)) == 1 {
				ids = append(ids, put(t, s, "filler").ID)
			}
			a := &Envelope{ID: ids[len(ids)-1]}
			seg2 := segFiles(t, dir)[1]
			victim := put(t, s, "victim-victim-victim")
			b := put(t, s, "bravo")
			b.Attempts = 2
			if err := s.Update(b); err != nil {
				t.Fatal(err)
			}
			if err := s.Remove(early.ID); err != nil { // tombstone in segment 2 for a record of segment 1
				t.Fatal(err)
			}
			c := put(t, s, "charlie")
			s.Close()

			data, err := os.ReadFile(seg2)
			if err != nil {
				t.Fatal(err)
			}
			i := bytes.Index(data, []byte("victim-victim"))
			switch where {
			case "header":
				i = bytes.LastIndex(data[:i], []byte(victim.ID)) - hdrSize + 13
			case "envelope":
				i = bytes.LastIndex(data[:i], []byte("bob@example.net"))
			}
			data[i] ^= 0x10
			if err := os.WriteFile(seg2, data, 0o600); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{a.ID: "attempts=0 body=filler", b.ID: "attempts=2 body=bravo", c.ID: "attempts=0 body=charlie"}
			for _, id := range ids {
				want[id] = "attempts=0 body=filler"
			}
			for round := range 2 {
				r := open(t, dir, Options{SegmentSize: 4096})
				if got := state(t, r); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("round %d: recovered %v\nwant %v", round, got, want)
				}
				r.Close()
			}
			if aside := names(t, filepath.Join(dir, dirBad)); len(aside) != 1 || aside[0] != filepath.Base(seg2) {
				t.Errorf("set aside %v, want %s", aside, filepath.Base(seg2))
			}
		})
	}
}

// Records spread over many segments, with state records and tombstones,
// replay to the same state; segments whose records are all removed are
// deleted, and with them the tombstones that pinned them.
func TestReplayAndReclaim(t *testing.T) {
	dir := t.TempDir()
	opt := Options{SegmentSize: 2048}
	s := open(t, dir, opt)
	var envs []*Envelope
	for i := range 40 {
		envs = append(envs, put(t, s, strings.Repeat(fmt.Sprint(i), 100)))
	}
	want := map[string]string{}
	for i, e := range envs {
		switch i % 3 {
		case 0:
			if err := s.Remove(e.ID); err != nil {
				t.Fatal(err)
			}
		case 1:
			e.Attempts = i
			if err := s.Update(e); err != nil {
				t.Fatal(err)
			}
			fallthrough
		default:
			want[e.ID] = fmt.Sprintf("attempts=%d body=%s", e.Attempts, strings.Repeat(fmt.Sprint(i), 100))
		}
	}
	if got := state(t, s); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("live state %v, want %v", got, want)
	}
	s.Close()
	s = open(t, dir, opt)
	if got := state(t, s); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("replayed %v\nwant %v", got, want)
	}
	for id := range want {
		if err := s.Remove(id); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	// Every segment but the newest one has no live record: all deleted,
	// now or at the next Open.
	s = open(t, dir, opt)
	if got := state(t, s); len(got) != 0 {
		t.Errorf("after removing all: %v", got)
	}
	s.Close()
	if n := segFiles(t, dir); len(n) > 2 {
		t.Errorf("%d segments left: %v", len(n), n)
	}
}

// Concurrent Put, Update, Remove, Get and Open (run with -race).
func TestConcurrentOps(t *testing.T) {
	dir := t.TempDir()
	opt := Options{SegmentSize: 8 << 10}
	s := open(t, dir, opt)
	var mu sync.Mutex
	want := map[string]string{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				body := fmt.Sprintf("w%d-%d-%s", w, i, strings.Repeat("z", i*20))
				env := testEnv(s)
				if err := s.Put(context.Background(), env, strings.NewReader(body)); err != nil {
					t.Error(err)
					return
				}
				if b := readAll(t, s, env.ID); b != body {
					t.Errorf("%s = %q", env.ID, b)
				}
				switch i % 3 {
				case 0:
					if err := s.Remove(env.ID); err != nil {
						t.Error(err)
					}
					continue
				case 1:
					env.Attempts = i
					if err := s.Update(env); err != nil {
						t.Error(err)
					}
				}
				mu.Lock()
				want[env.ID] = fmt.Sprintf("attempts=%d body=%s", env.Attempts, body)
				mu.Unlock()
			}
		}()
	}
	done := make(chan struct{})
	go func() { // compaction as a second writer, all the time
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				s.compact(time.Now().Add(time.Hour))
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-done
	if got := state(t, s); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("live state differs")
	}
	s.Close()
	s = open(t, dir, opt)
	if got := state(t, s); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("replayed state differs")
	}
}

func TestLargeMessage(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{SegmentSize: 1 << 20})
	body := strings.Repeat("0123456789abcdef", (3<<20)/16)
	env := put(t, s, body)
	small := put(t, s, "small")
	if readAll(t, s, env.ID) != body || readAll(t, s, small.ID) != "small" {
		t.Fatal("bodies differ")
	}
	s.Close()
	s = open(t, dir, Options{SegmentSize: 1 << 20})
	if readAll(t, s, env.ID) != body {
		t.Fatal("body differs after reopen")
	}
	assertEmpty(t, filepath.Join(dir, dirTmp))
}

// A read-only spool sees what a running one has acknowledged and changes
// nothing.
func TestReadOnlySnapshot(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	a := put(t, s, "a")
	ro, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := put(t, s, "b")
	if err := s.Remove(a.ID); err != nil {
		t.Fatal(err)
	}
	before := segBytes(t, dir)
	got := state(t, ro)
	if len(got) != 1 || got[b.ID] != "attempts=0 body=b" {
		t.Errorf("read-only view %v", got)
	}
	if ro.Remove(b.ID) != ErrReadOnly || ro.Update(b) != ErrReadOnly {
		t.Error("read-only spool accepted a change")
	}
	if segBytes(t, dir) != before {
		t.Error("read-only spool changed the segments")
	}
}

// TestAppendHeaderReused: a record written over a reused buffer (the
// spool keeps one between appends) is the same as one in a fresh buffer,
// and decodes.
func TestAppendHeaderReused(t *testing.T) {
	env, _ := encodeEnvelope(&Envelope{ID: "abc", Recipients: []Recipient{{Address: "a@b", Status: StatusPending}}})
	fresh := appendHeader(nil, kindState, "abc", env, 0, 0, 7, 0)
	dirty := bytes.Repeat([]byte{0xff}, 2*len(fresh))
	if got := appendHeader(dirty[:0], kindState, "abc", env, 0, 0, 7, 0); !bytes.Equal(got, fresh) {
		t.Fatalf("over a dirty buffer:\n%x\nwant\n%x", got, fresh)
	}
	if r, err := decodeRecord(bytes.NewReader(fresh), 0, int64(len(fresh)), 7); err != nil || r.id != "abc" || r.kind != kindState {
		t.Fatalf("decode: %+v, %v", r, err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	env, _ := encodeEnvelope(&Envelope{ID: "abc", Recipients: []Recipient{{Address: "a@b", Status: StatusPending}}})
	msg := []byte("hello\r\n")
	good := append(appendHeader(nil, kindPut, "abc", env, int64(len(msg)), crc(msg), 1, 0), msg...)
	f.Add(good)
	f.Add(appendHeader(nil, kindState, "abc", env, 0, 0, 1, 0))
	f.Add(appendHeader(nil, kindTomb, "abc", nil, 0, 0, 1, 0))
	f.Add(good[:40])
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(bytes.NewReader(b), 0, int64(len(b)), 1)
		if err != nil {
			return
		}
		if r.end > int64(len(b)) || r.msgOff+r.msgLen != r.end || !ValidID(r.id) {
			t.Fatalf("bad bounds %+v for %d bytes", r, len(b))
		}
		if (r.kind == kindTomb) != (r.env == nil) {
			t.Fatalf("kind %d with env %v", r.kind, r.env)
		}
	})
}

// Recovery over arbitrary segment bytes never fails or panics, and is
// stable: a second Open sees what the first recovered.
func FuzzRecover(f *testing.F) {
	env, _ := encodeEnvelope(&Envelope{ID: "abc", Recipients: []Recipient{{Address: "a@b", Status: StatusPending}}})
	msg := []byte("hello\r\n")
	good := append(appendHeader(nil, kindPut, "abc", env, int64(len(msg)), crc(msg), 1, 0), msg...)
	f.Add(good)
	f.Add(append(append([]byte(nil), good...), appendHeader(nil, kindTomb, "abc", nil, 0, 0, 1, int64(len(good)))...))
	f.Add(append(append([]byte("junk"), good...), good[:50]...))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, dirQueue), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dirQueue, "0000000000000001.seg"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		ro, err := OpenReadOnly(dir)
		if err != nil {
			t.Fatal(err)
		}
		seen := state(t, ro)
		s, err := Open(dir, Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		first := state(t, s)
		s.Close()
		if fmt.Sprint(seen) != fmt.Sprint(first) {
			t.Fatalf("read-only %v, recovered %v", seen, first)
		}
		s, err = Open(dir, Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if second := state(t, s); fmt.Sprint(first) != fmt.Sprint(second) {
			t.Fatalf("first %v, second %v", first, second)
		}
	})
}

// Random operations against a model, with restarts in between.
func TestModel(t *testing.T) {
	dir := t.TempDir()
	opt := Options{SegmentSize: 3000, NoSync: true}
	rng := rand.New(rand.NewPCG(1, 2))
	s := open(t, dir, opt)
	model := map[string]string{}
	var ids []string
	for step := range 600 {
		switch op := rng.IntN(10); {
		case op < 4 || len(ids) == 0:
			body := strings.Repeat("m", rng.IntN(400))
			e := put(t, s, body)
			model[e.ID] = "attempts=0 body=" + body
			ids = append(ids, e.ID)
		case op < 6:
			id := ids[rng.IntN(len(ids))]
			e, err := s.Get(id)
			if _, ok := model[id]; !ok {
				continue
			} else if err != nil {
				t.Fatal(err)
			}
			e.Attempts = step
			if err := s.Update(e); err != nil {
				t.Fatal(err)
			}
			model[id] = fmt.Sprintf("attempts=%d body=%s", step, readAll(t, s, id))
		case op < 9:
			id := ids[rng.IntN(len(ids))]
			if _, ok := model[id]; ok {
				if err := s.Remove(id); err != nil {
					t.Fatal(err)
				}
				delete(model, id)
			}
		default:
			s.Close()
			s = open(t, dir, opt)
		}
	}
	if got := state(t, s); fmt.Sprint(got) != fmt.Sprint(model) {
		t.Errorf("state differs from model")
	}
	s.Close()
	keys := make([]string, 0, len(model))
	for k := range model {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s = open(t, dir, opt)
	if got := state(t, s); fmt.Sprint(got) != fmt.Sprint(model) {
		t.Errorf("state after restart differs from model")
	}
}

// Compaction moves the few live messages out of mostly dead segments,
// which are then deleted; the state is unchanged, also after a restart.
func TestCompaction(t *testing.T) {
	dir := t.TempDir()
	opt := Options{SegmentSize: 4096, CompactAge: -1}
	s := open(t, dir, opt)
	want := map[string]string{}
	for i := range 60 {
		e := put(t, s, fmt.Sprint("message ", i))
		switch {
		case i%10 == 3:
			e.Attempts = i
			if err := s.Update(e); err != nil {
				t.Fatal(err)
			}
			fallthrough
		case i%10 == 7:
			want[e.ID] = fmt.Sprintf("attempts=%d body=message %d", e.Attempts, i)
		default:
			if err := s.Remove(e.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	before := len(segFiles(t, dir))
	if DiskBytes(dir) != segBytes(t, dir) || DiskBytes(dir) == 0 {
		t.Errorf("DiskBytes = %d, want %d", DiskBytes(dir), segBytes(t, dir))
	}
	s.compact(time.Now().Add(time.Hour))
	s.Close()
	after := len(segFiles(t, dir))
	if after*2 > before {
		t.Errorf("%d segments before compaction, %d after", before, after)
	}
	s = open(t, dir, opt)
	if got := state(t, s); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after compaction %v\nwant %v", got, want)
	}
	// Nothing is due yet for a spool that was just opened.
	n := len(segFiles(t, dir))
	s.compact(time.Now())
	if len(segFiles(t, dir)) != n {
		t.Error("compacted young segments")
	}
}

// openDeleted lists this process's descriptors on files of dir that are
// deleted.
func openDeleted(t *testing.T, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	var out []string
	for _, fd := range fds {
		p, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(p, dir) && strings.HasSuffix(p, " (deleted)") {
			out = append(out, p)
		}
	}
	return out
}

// Readers share one handle per segment. A reader still open when its
// segment is deleted keeps reading it; the handle closes with the last
// reader, and no descriptor outlives its segment.
func TestReadHandles(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{SegmentSize: 2048})
	defer s.Close()
	var ids []string
	for i := range 30 {
		ids = append(ids, put(t, s, strings.Repeat(fmt.Sprint(i%10), 200)).ID)
	}
	held, err := s.Open(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		readAll(t, s, id)
		if err := s.Remove(id); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(segFiles(t, dir)) > 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // the reaper deletes the dead segments
	}
	if n := len(segFiles(t, dir)); n > 2 {
		t.Fatalf("%d segments left", n)
	}
	if got := openDeleted(t, dir); len(got) != 1 {
		t.Errorf("descriptors on deleted files while one reader is open: %v", got)
	}
	b, err := io.ReadAll(held)
	if err != nil || string(b) != strings.Repeat("0", 200) {
		t.Errorf("held reader read %q, %v", b, err)
	}
	held.Close()
	held.Close() // twice is harmless
	if got := openDeleted(t, dir); len(got) != 0 {
		t.Errorf("descriptors on deleted files after the last reader: %v", got)
	}
}

// zeroFailWriter fails every write of zeros only (the preallocation),
// as a disk with no room for more than the record would.
type zeroFailWriter struct{ w io.Writer }

func (z zeroFailWriter) Write(p []byte) (int, error) {
	if len(bytes.Trim(p, "\x00")) == 0 {
		return 0, syscall.ENOSPC
	}
	return z.w.Write(p)
}

// The current segment has zeros written ahead of its last record; a
// rolled segment is cut back to its records; after a crash the zeros
// read as the end of the log, in the last segment or (should the cut at
// roll have failed) in any other, and are cut off: nothing is set aside.
func TestPreallocate(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{SegmentSize: 8 << 10})
	var bodies []string
	for i := range 5 {
		b := fmt.Sprintf("message %d %s", i, strings.Repeat("x", 3000))
		put(t, s, b)
		bodies = append(bodies, b)
	}
	segs := segFiles(t, dir)
	if len(segs) < 2 {
		t.Fatalf("want a rolled segment, have %v", segs)
	}
	s.wmu.Lock()
	size, alloc := s.cur.size, s.cur.alloc
	s.wmu.Unlock()
	data, err := os.ReadFile(segs[len(segs)-1])
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != alloc || alloc < size+preallocStep/2 {
		t.Fatalf("current segment: %d bytes on disk, records %d, alloc %d", len(data), size, alloc)
	}
	if len(bytes.Trim(data[size:], "\x00")) != 0 {
		t.Fatal("the space ahead of the records is not zeros")
	}
	for _, p := range segs[:len(segs)-1] {
		fi, _ := os.Stat(p)
		if fi.Size() > 8<<10 {
			t.Errorf("rolled segment %s keeps %d bytes: not cut back to its records", p, fi.Size())
		}
	}
	want := state(t, s)
	if len(want) != 5 {
		t.Fatalf("state %v", want)
	}

	// kill -9: copy the files as they are, the current one with its zeros,
	// and an older one as if its cut at roll had failed.
	crash := t.TempDir()
	os.MkdirAll(filepath.Join(crash, dirQueue), 0o700)
	for i, p := range segs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			b = append(b, make([]byte, 100000)...)
		}
		if err := os.WriteFile(filepath.Join(crash, dirQueue, filepath.Base(p)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	r := open(t, crash, Options{})
	if got := state(t, r); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after the crash: %v, want %v", got, want)
	}
	r.Close()
	assertEmpty(t, filepath.Join(crash, dirBad))
	for _, p := range segs {
		fi, err := os.Stat(filepath.Join(crash, dirQueue, filepath.Base(p)))
		if err == nil && fi.Size() > 8<<10 {
			t.Errorf("%s: zeros not cut off at recovery (%d bytes)", p, fi.Size())
		}
	}

	// A disk with room for the record but not for the zeros ahead.
	full := t.TempDir()
	f := open(t, full, Options{})
	f.wrapWrite = func(_ string, w io.Writer) io.Writer { return zeroFailWriter{w} }
	env := put(t, f, bodies[0])
	f.wmu.Lock()
	size, alloc = f.cur.size, f.cur.alloc
	f.wmu.Unlock()
	if fi, _ := os.Stat(segFiles(t, full)[0]); fi.Size() != size || alloc != size {
		t.Errorf("without room for zeros: %d bytes on disk, records %d, alloc %d", fi.Size(), size, alloc)
	}
	f.wrapWrite = nil
	f.Close()
	f = open(t, full, Options{})
	if got := readAll(t, f, env.ID); got != bodies[0] {
		t.Errorf("after reopen: %.20q", got)
	}
	f.Close()
}

// TestLenAndSample: the count without copies, and a bounded sample of
// copies that the caller may change without changing the spool.
func TestLenAndSample(t *testing.T) {
	s := open(t, t.TempDir(), Options{NoSync: true})
	ids := map[string]bool{}
	for i := range 5 {
		ids[put(t, s, fmt.Sprint("message ", i)).ID] = true
	}
	if n, err := s.Len(); err != nil || n != 5 {
		t.Fatalf("Len = %d, %v", n, err)
	}
	for _, tc := range []struct{ n, want int }{{0, 0}, {3, 3}, {5, 5}, {10, 5}} {
		envs, err := s.Sample(tc.n)
		if err != nil || len(envs) != tc.want {
			t.Fatalf("Sample(%d): %d envelopes, %v; want %d", tc.n, len(envs), err, tc.want)
		}
		seen := map[string]bool{}
		for _, e := range envs {
			if !ids[e.ID] || seen[e.ID] {
				t.Fatalf("Sample(%d): %s unknown or twice", tc.n, e.ID)
			}
			seen[e.ID] = true
			e.Attempts = 99
		}
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list {
		if e.Attempts == 99 {
			t.Fatalf("a sample's copy changed the spool's envelope %s", e.ID)
		}
	}
}
