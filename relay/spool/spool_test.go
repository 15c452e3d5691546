package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func testEnv(s *Spool) *Envelope {
	return &Envelope{
		ID:     s.NewID(),
		Sender: "alice@example.org",
		Recipients: []Recipient{
			{Address: "bob@example.net", Route: "mx", Status: StatusPending},
			{Address: "carol@example.org", Route: "local", Status: StatusPending},
		},
		Received: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		ClientIP: "192.0.2.1", HELO: "client.example", Protocol: "ESMTP",
	}
}

func open(t *testing.T, dir string, opt Options) *Spool {
	t.Helper()
	s, err := Open(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func readAll(t *testing.T, s *Spool, id string) string {
	t.Helper()
	r, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRoundTrip(t *testing.T) {
	for _, mode := range []struct {
		name string
		opt  Options
	}{
		{"default", Options{}},
		{"window", Options{GroupCommitWindow: time.Millisecond}},
		{"nosync", Options{NoSync: true}},
		{"tiny segments", Options{SegmentSize: 1}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			s := open(t, t.TempDir(), mode.opt)
			env := testEnv(s)
			body := "Subject: hi\r\n\r\nhello\r\n"
			if err := s.Put(context.Background(), env, strings.NewReader(body)); err != nil {
				t.Fatal(err)
			}
			if env.Size != int64(len(body)) {
				t.Errorf("Size = %d, want %d", env.Size, len(body))
			}
			got, err := s.Get(env.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Sender != env.Sender || len(got.Recipients) != 2 || !got.Received.Equal(env.Received) || got.Size != env.Size || got.HELO != "client.example" {
				t.Errorf("Get = %+v, want %+v", got, env)
			}
			if b := readAll(t, s, env.ID); b != body {
				t.Errorf("Open = %q", b)
			}
			got.Recipients[0].Status = StatusDelivered
			got.Attempts = 3
			got.LastError = strings.Repeat("x", 10000) // truncated, not refused
			if err := s.Update(got); err != nil {
				t.Fatal(err)
			}
			again, err := s.Get(env.ID)
			if err != nil {
				t.Fatal(err)
			}
			if again.Recipients[0].Status != StatusDelivered || again.Attempts != 3 || len(again.LastError) != maxField {
				t.Errorf("after Update: %+v", again)
			}
			list, err := s.List()
			if err != nil || len(list) != 1 || list[0].ID != env.ID {
				t.Fatalf("List = %v, %v", list, err)
			}
			if err := s.Remove(env.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Get(env.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get after Remove: %v", err)
			}
			if err := s.Update(got); !errors.Is(err, ErrNotFound) {
				t.Errorf("Update after Remove: %v", err)
			}
			if err := s.Remove(env.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("second Remove: %v", err)
			}
			assertEmpty(t, filepath.Join(s.dir, dirTmp))
		})
	}
}

func TestConcurrentPuts(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	var wg sync.WaitGroup
	ids := make([]string, 50)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env := testEnv(s)
			ids[i] = env.ID
			if err := s.Put(context.Background(), env, strings.NewReader(fmt.Sprintf("m%d\r\n", i))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i, id := range ids {
		if b := readAll(t, s, id); b != fmt.Sprintf("m%d\r\n", i) {
			t.Errorf("%s = %q", id, b)
		}
	}
	list, _ := s.List()
	if len(list) != len(ids) {
		t.Errorf("List has %d, want %d", len(list), len(ids))
	}
}

func TestNewID(t *testing.T) {
	s := open(t, t.TempDir(), Options{NoSync: true})
	seen := map[string]bool{}
	prev := ""
	for range 10000 {
		id := s.NewID()
		if len(id) != idLen || !ValidID(id) {
			t.Fatalf("bad id %q", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		if id[:idTimeLen] < prev {
			t.Fatalf("id %q sorts before previous %q", id, prev)
		}
		prev = id[:idTimeLen]
		seen[id] = true
	}
}

func TestPutRejects(t *testing.T) {
	s := open(t, t.TempDir(), Options{NoSync: true})
	env := testEnv(s)
	if err := s.Put(context.Background(), env, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	dup := testEnv(s)
	dup.ID = env.ID
	if err := s.Put(context.Background(), dup, strings.NewReader("y")); err == nil {
		t.Error("Put with an existing id succeeded")
	}
	if b := readAll(t, s, env.ID); b != "x" {
		t.Errorf("original overwritten: %q", b)
	}
	for _, bad := range []string{"", "../x", "a/b", "a.b"} {
		e := testEnv(s)
		e.ID = bad
		if err := s.Put(context.Background(), e, strings.NewReader("x")); err == nil {
			t.Errorf("Put(id %q) succeeded", bad)
		}
	}
	noRcpt := testEnv(s)
	noRcpt.Recipients = nil
	if err := s.Put(context.Background(), noRcpt, strings.NewReader("x")); err == nil {
		t.Error("Put without recipients succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Put(ctx, testEnv(s), strings.NewReader("x")); err == nil {
		t.Error("Put with cancelled context succeeded")
	}
	assertEmpty(t, filepath.Join(s.dir, dirTmp))
	list, _ := s.List()
	if len(list) != 1 {
		t.Errorf("List has %d messages, want 1", len(list))
	}
}

// failWriter fails with err after n bytes.
type failWriter struct {
	w   io.Writer
	n   int
	err error
}

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		k, _ := f.w.Write(p[:f.n])
		f.n = 0
		return k, f.err
	}
	f.n -= len(p)
	return f.w.Write(p)
}

func TestNoSpace(t *testing.T) {
	for _, tc := range []struct {
		name  string
		errno error
		after int // bytes of the record written before the failure
	}{
		{"header ENOSPC", syscall.ENOSPC, 0},
		{"envelope EDQUOT", syscall.EDQUOT, 40},
		{"message ENOSPC", syscall.ENOSPC, 2000},
		{"message tail ENOSPC", syscall.ENOSPC, 99000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, Options{})
			before := segBytes(t, dir)
			s.wrapWrite = func(name string, w io.Writer) io.Writer {
				return &failWriter{w: w, n: tc.after, err: &os.PathError{Op: "write", Path: name, Err: tc.errno}}
			}
			env := testEnv(s)
			err := s.Put(context.Background(), env, strings.NewReader(strings.Repeat("x", 100000)))
			if !errors.Is(err, ErrNoSpace) {
				t.Fatalf("Put = %v, want ErrNoSpace", err)
			}
			if !errors.Is(err, tc.errno) {
				t.Errorf("Put = %v, cause lost", err)
			}
			if after := segBytes(t, dir); after != before {
				t.Errorf("segments hold %d bytes after a failed Put, %d before", after, before)
			}
			if _, err := s.Get(env.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get after failed Put = %v", err)
			}
			assertEmpty(t, filepath.Join(s.dir, dirTmp))
			// Update of an existing message under ENOSPC keeps the old record.
			s.wrapWrite = nil
			if err := s.Put(context.Background(), env, strings.NewReader("ok")); err != nil {
				t.Fatal(err)
			}
			s.wrapWrite = func(name string, w io.Writer) io.Writer {
				return &failWriter{w: w, n: 5, err: syscall.ENOSPC}
			}
			env.Attempts = 7
			if err := s.Update(env); !errors.Is(err, ErrNoSpace) {
				t.Errorf("Update = %v, want ErrNoSpace", err)
			}
			got, err := s.Get(env.ID)
			if err != nil || got.Attempts != 0 {
				t.Errorf("after failed Update: %+v, %v", got, err)
			}
			// Nothing half-written comes back after a restart either.
			s.wrapWrite = nil
			s.Close()
			s = open(t, dir, Options{})
			list, err := s.List()
			if err != nil || len(list) != 1 || list[0].ID != env.ID || list[0].Attempts != 0 {
				t.Errorf("after reopen List = %v, %v", list, err)
			}
			assertEmpty(t, filepath.Join(dir, dirBad))
		})
	}
}

// TestRecovery: leftovers of a crash are cleaned or set aside at Open;
// files in queue/ that are not segments are set aside, not imported.
func TestRecovery(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var good []string
	for i := range 3 {
		env := testEnv(s)
		if err := s.Put(context.Background(), env, strings.NewReader(fmt.Sprint("good", i))); err != nil {
			t.Fatal(err)
		}
		good = append(good, env.ID)
	}
	// A second read-write Open is refused while the first holds the lock.
	if s2, err := Open(dir, Options{}); err == nil {
		s2.Close()
		t.Error("second Open of a locked spool succeeded")
	}
	s.Close()

	q := filepath.Join(dir, dirQueue)
	write := func(path, data string) {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A temporary file of a Put cut short, and files that are not ours.
	write(filepath.Join(dir, dirTmp, "AAAA.msg.1"), "half")
	write(filepath.Join(q, "Legacy1.msg"), "a message file of no known layout")
	write(filepath.Join(q, "Legacy1.env"), `{"v":1,"id":"Legacy1"}`)
	write(filepath.Join(q, "stray.txt"), "?")

	s = open(t, dir, Options{})
	assertEmpty(t, filepath.Join(dir, dirTmp))
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range list {
		ids = append(ids, e.ID)
	}
	want := append([]string(nil), good...)
	sort.Strings(want)
	if fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("after recovery List = %v, want %v", ids, want)
	}
	for i, id := range good {
		if b := readAll(t, s, id); b != fmt.Sprint("good", i) {
			t.Errorf("%s = %q", id, b)
		}
	}
	aside := names(t, filepath.Join(dir, dirBad))
	wantAside := []string{"Legacy1.env", "Legacy1.msg", "stray.txt"}
	if fmt.Sprint(aside) != fmt.Sprint(wantAside) {
		t.Errorf("set aside %v, want %v", aside, wantAside)
	}
	for _, n := range names(t, q) {
		if !strings.HasSuffix(n, extSeg) {
			t.Errorf("queue/ still holds %s", n)
		}
	}

	// The read-only view works while the daemon holds the lock.
	ro, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if l, err := ro.List(); err != nil || len(l) != len(want) {
		t.Errorf("read-only List = %d, %v", len(l), err)
	}
	if err := ro.Put(context.Background(), testEnv(s), strings.NewReader("x")); !errors.Is(err, ErrReadOnly) {
		t.Errorf("read-only Put = %v", err)
	}
	if _, err := OpenReadOnly(filepath.Join(dir, "nope")); err == nil {
		t.Error("OpenReadOnly of a missing spool succeeded")
	}
}

func TestClosed(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.Put(context.Background(), testEnv(s), strings.NewReader("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Close = %v", err)
	}
	assertEmpty(t, filepath.Join(s.dir, dirTmp))
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestParseEnvelope(t *testing.T) {
	valid := `{"v":1,"id":"abc","sender":"","recipients":[{"address":"a@b","route":"mx","status":"pending"}],"received":"2025-01-01T00:00:00Z","size":1}`
	if _, err := ParseEnvelope([]byte(valid)); err != nil {
		t.Fatalf("valid record: %v", err)
	}
	for _, tc := range []struct{ name, rec string }{
		{"empty", ""},
		{"not json", "hello"},
		{"version", strings.Replace(valid, `"v":1`, `"v":9`, 1)},
		{"no version", strings.Replace(valid, `"v":1,`, ``, 1)},
		{"bad id", strings.Replace(valid, `"abc"`, `"../etc"`, 1)},
		{"bad status", strings.Replace(valid, `"pending"`, `"weird"`, 1)},
		{"no recipients", strings.Replace(valid, `[{"address":"a@b","route":"mx","status":"pending"}]`, `[]`, 1)},
		{"empty address", strings.Replace(valid, `"a@b"`, `""`, 1)},
		{"negative size", strings.Replace(valid, `"size":1`, `"size":-1`, 1)},
		{"unknown field", strings.Replace(valid, `"size":1`, `"size":1,"x":2`, 1)},
		{"trailing", valid + "{}"},
		{"long field", strings.Replace(valid, `"sender":""`, `"sender":"`+strings.Repeat("a", maxField+1)+`"`, 1)},
	} {
		if _, err := ParseEnvelope([]byte(tc.rec)); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func FuzzParseEnvelope(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"abc","sender":"","recipients":[{"address":"a@b","route":"mx","status":"pending"}],"received":"2025-01-01T00:00:00Z","size":1}`))
	f.Add([]byte(`{"v":1,"id":"abc","recipients":[{"address":"a@b","status":"failed","attempts":3,"last_attempt":"2025-01-01T00:00:00Z"}],"held":true}`))
	f.Add([]byte(`{"v":1,"id":"abc","recipients":[{"address":"a@b","status":"pending"}],"quarantine":{"rule":"r","score":7.5,"incident":"i","facts":["r: spf.result=fail"]}}`))
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := ParseEnvelope(b)
		if err != nil {
			return
		}
		// What parses must encode and parse back to the same record.
		enc, err := encodeEnvelope(env)
		if err != nil {
			t.Fatalf("parsed record does not encode: %v", err)
		}
		env2, err := ParseEnvelope(enc)
		if err != nil {
			t.Fatalf("re-encoded record does not parse: %v", err)
		}
		enc2, _ := encodeEnvelope(env2)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("not stable:\n%s\n%s", enc, enc2)
		}
	})
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	if n := names(t, dir); len(n) != 0 {
		t.Errorf("%s not empty: %v", dir, n)
	}
}
