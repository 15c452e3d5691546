package maildir

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"moat/internal/reply"
)

func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

var nameRE = regexp.MustCompile(`^[0-9]+\.M[0-9]+P[0-9]+R[0-9a-f]{16}\.[^/:]+,S=[0-9]+$`)

func TestDeliverBytes(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef\r\n"), 1<<16)
	tests := []struct {
		name string
		msg  []byte
	}{
		{"empty", nil},
		{"crlf", []byte("Subject: hi\r\n\r\nbody\r\n")},
		{"lf only kept", []byte("Subject: hi\n\nbody\n")},
		{"binary", []byte{0, 1, 2, 0xff, '\r', '\n', 0x80}},
		{"no final newline", []byte("Subject: x\r\n\r\nno newline")},
		{"1 MiB", big},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "example.org", "alice")
			p, err := Deliver(dir, bytes.NewReader(tc.msg), Options{Hostname: "mx.example.org"})
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Dir(p) != filepath.Join(dir, "new") {
				t.Errorf("path %s not in new/", p)
			}
			if !nameRE.MatchString(filepath.Base(p)) {
				t.Errorf("name %q does not follow the convention", filepath.Base(p))
			}
			if !strings.HasSuffix(p, fmt.Sprintf(".mx.example.org,S=%d", len(tc.msg))) {
				t.Errorf("name %q: want host and size", p)
			}
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.msg) {
				t.Errorf("content differs: got %d bytes, want %d", len(got), len(tc.msg))
			}
			if n := entries(t, filepath.Join(dir, "tmp")); len(n) != 0 {
				t.Errorf("tmp/ not empty: %v", n)
			}
			for _, d := range []string{dir, filepath.Join(dir, "tmp"), filepath.Join(dir, "new"), filepath.Join(dir, "cur")} {
				fi, err := os.Stat(d)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o700 {
					t.Errorf("%s: mode %v, want 0700", d, fi.Mode().Perm())
				}
			}
			fi, _ := os.Stat(p)
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
			}
		})
	}
}

func TestEscapeHost(t *testing.T) {
	tests := map[string]string{
		"mx.example.org": "mx.example.org",
		"a/b":            `a\057b`,
		"a:b":            `a\072b`,
		"/:/":            `\057\072\057`,
	}
	for in, want := range tests {
		if got := EscapeHost(in); got != want {
			t.Errorf("EscapeHost(%q) = %q, want %q", in, got, want)
		}
	}
	// A host with '/' and ':' still yields one path element.
	p, err := Deliver(t.TempDir(), strings.NewReader("x"), Options{Hostname: "evil/../host:2,S"})
	if err != nil {
		t.Fatal(err)
	}
	if base := filepath.Base(p); !strings.Contains(base, `evil\057..\057host\0722,S,S=1`) {
		t.Errorf("name %q", base)
	}
}

func TestUniqueUnderConcurrency(t *testing.T) {
	dir := t.TempDir()
	// A frozen clock makes the time part of every name equal; the random
	// part must still keep them apart.
	now := time.Unix(1700000000, 123456000)
	opt := Options{Hostname: "h", Now: func() time.Time { return now }}
	const n = 100
	var wg sync.WaitGroup
	paths := make([]string, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			paths[i], errs[i] = Deliver(dir, strings.NewReader(fmt.Sprintf("message %d\r\n", i)), opt)
		}(i)
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Fatalf("delivery %d: %v", i, errs[i])
		}
		if seen[paths[i]] {
			t.Fatalf("duplicate name %s", paths[i])
		}
		seen[paths[i]] = true
		got, err := os.ReadFile(paths[i])
		if err != nil || string(got) != fmt.Sprintf("message %d\r\n", i) {
			t.Fatalf("delivery %d: content %q, %v", i, got, err)
		}
	}
	if got := len(entries(t, filepath.Join(dir, "new"))); got != n {
		t.Errorf("new/ has %d files, want %d", got, n)
	}
	if got := entries(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Errorf("tmp/ not empty: %v", got)
	}
}

// faultFS makes one operation fail, optionally only for paths with a
// given suffix, and counts calls.
type faultFS struct {
	OS
	op     string // Create, Write, Sync, Close, Link, Rename, SyncDir, Mkdir
	suffix string
	err    error
	times  int // fail this many times (0: always)
	mu     sync.Mutex
	failed int
	calls  map[string]int
}

func (f *faultFS) hit(op, path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[op]++
	if op != f.op || !strings.HasSuffix(path, f.suffix) {
		return nil
	}
	if f.times > 0 && f.failed >= f.times {
		return nil
	}
	f.failed++
	return f.err
}

func (f *faultFS) Mkdir(name string, perm fs.FileMode) error {
	if err := f.hit("Mkdir", name); err != nil {
		return err
	}
	return f.OS.Mkdir(name, perm)
}

func (f *faultFS) Create(name string, perm fs.FileMode) (File, error) {
	if err := f.hit("Create", name); err != nil {
		return nil, err
	}
	file, err := f.OS.Create(name, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, fs: f, name: name}, nil
}

func (f *faultFS) Link(o, n string) error {
	if err := f.hit("Link", n); err != nil {
		return err
	}
	return f.OS.Link(o, n)
}

func (f *faultFS) Rename(o, n string) error {
	if err := f.hit("Rename", n); err != nil {
		return err
	}
	return f.OS.Rename(o, n)
}

func (f *faultFS) SyncDir(name string) error {
	if err := f.hit("SyncDir", name); err != nil {
		return err
	}
	return f.OS.SyncDir(name)
}

type faultFile struct {
	File
	fs   *faultFS
	name string
}

func (f *faultFile) Write(p []byte) (int, error) {
	if err := f.fs.hit("Write", f.name); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *faultFile) Sync() error {
	if err := f.fs.hit("Sync", f.name); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *faultFile) Close() error {
	err := f.File.Close()
	if herr := f.fs.hit("Close", f.name); herr != nil {
		return herr
	}
	return err
}

type errReader struct{ n int }

func (r *errReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("connection reset")
	}
	k := min(r.n, len(p))
	for i := range p[:k] {
		p[i] = 'x'
	}
	r.n -= k
	return k, nil
}

func TestFailureCleansTmp(t *testing.T) {
	boom := errors.New("injected")
	tests := []struct {
		name string
		fs   *faultFS
		msg  io.Reader
	}{
		{"create", &faultFS{op: "Create", err: boom}, strings.NewReader("x")},
		{"write", &faultFS{op: "Write", err: boom}, strings.NewReader("x")},
		{"reader", &faultFS{}, &errReader{n: 5000}},
		{"sync", &faultFS{op: "Sync", err: boom}, strings.NewReader("x")},
		{"close", &faultFS{op: "Close", err: boom}, strings.NewReader("x")},
		{"link", &faultFS{op: "Link", err: boom}, strings.NewReader("x")},
		{"link exists forever", &faultFS{op: "Link", err: fs.ErrExist}, strings.NewReader("x")},
		{"sync new dir", &faultFS{op: "SyncDir", suffix: "/new", err: boom}, strings.NewReader("x")},
		{"mkdir", &faultFS{op: "Mkdir", suffix: "/cur", err: boom}, strings.NewReader("x")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// Create the layout first (except for the mkdir case) so that
			// emptiness can be checked.
			if tc.name != "mkdir" {
				if _, err := Deliver(dir, strings.NewReader("seed"), Options{}); err != nil {
					t.Fatal(err)
				}
				for _, n := range entries(t, filepath.Join(dir, "new")) {
					os.Remove(filepath.Join(dir, "new", n))
				}
			}
			p, err := Deliver(dir, tc.msg, Options{FS: tc.fs})
			if err == nil {
				t.Fatalf("no error, delivered to %s", p)
			}
			var r *reply.Reply
			if errors.As(err, &r) {
				t.Errorf("I/O failure reported as reply %v", r)
			}
			for _, sub := range []string{"tmp", "new"} {
				if n, err := os.ReadDir(filepath.Join(dir, sub)); err == nil && len(n) != 0 {
					t.Errorf("%s/ not empty after failure: %v", sub, n)
				}
			}
		})
	}
}

func TestNameCollisionRetried(t *testing.T) {
	tests := []*faultFS{
		{op: "Create", err: &fs.PathError{Op: "open", Err: fs.ErrExist}, times: 2},
		{op: "Link", err: &fs.PathError{Op: "link", Err: fs.ErrExist}, times: 3},
	}
	for _, f := range tests {
		t.Run(f.op, func(t *testing.T) {
			dir := t.TempDir()
			p, err := Deliver(dir, strings.NewReader("hello"), Options{FS: f})
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(p); string(got) != "hello" {
				t.Errorf("content %q", got)
			}
			if n := entries(t, filepath.Join(dir, "tmp")); len(n) != 0 {
				t.Errorf("tmp/ not empty: %v", n)
			}
		})
	}
}

func TestNoHardLinksFallsBackToRename(t *testing.T) {
	dir := t.TempDir()
	f := &faultFS{op: "Link", err: &os.LinkError{Op: "link", Err: syscall.EPERM}}
	p, err := Deliver(dir, strings.NewReader("hello"), Options{FS: f})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != "hello" {
		t.Errorf("content %q", got)
	}
	if f.calls["Rename"] != 1 {
		t.Errorf("rename calls = %d", f.calls["Rename"])
	}
	if n := entries(t, filepath.Join(dir, "tmp")); len(n) != 0 {
		t.Errorf("tmp/ not empty: %v", n)
	}
}

func TestDirectoriesSynced(t *testing.T) {
	root := t.TempDir()
	f := &faultFS{}
	dir := filepath.Join(root, "example.org", "alice")
	if _, err := Deliver(dir, strings.NewReader("x"), Options{FS: f}); err != nil {
		t.Fatal(err)
	}
	// example.org, alice, tmp, new, cur created: each synced into its
	// parent, plus new/ after the link.
	if got := f.calls["SyncDir"]; got != 6 {
		t.Errorf("SyncDir calls = %d, want 6", got)
	}
	f.calls = nil
	if _, err := Deliver(dir, strings.NewReader("x"), Options{FS: f}); err != nil {
		t.Fatal(err)
	}
	if got := f.calls["SyncDir"]; got != 1 {
		t.Errorf("second delivery SyncDir calls = %d, want 1", got)
	}
}

func TestDeliverIntoFileFails(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "f")
	os.WriteFile(file, nil, 0o600)
	if _, err := Deliver(filepath.Join(file, "box"), strings.NewReader("x"), Options{}); err == nil {
		t.Fatal("delivery under a regular file succeeded")
	}
	if _, err := Deliver(file, strings.NewReader("x"), Options{}); err == nil {
		t.Fatal("delivery into a regular file succeeded")
	}
	if _, err := Deliver("", strings.NewReader("x"), Options{}); err == nil {
		t.Fatal("delivery to empty dir succeeded")
	}
}

func BenchmarkDeliver2K(b *testing.B) {
	dir := b.TempDir()
	msg := bytes.Repeat([]byte("a 2 KB message line of text, 32\n"), 64)
	opt := Options{Hostname: "bench"}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Deliver(dir, bytes.NewReader(msg), opt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDeliver2KQuota(b *testing.B) {
	dir := b.TempDir()
	msg := bytes.Repeat([]byte("a 2 KB message line of text, 32\n"), 64)
	opt := Options{Hostname: "bench", Quota: 1 << 40}
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := Deliver(dir, bytes.NewReader(msg), opt); err != nil {
			b.Fatal(err)
		}
	}
}
