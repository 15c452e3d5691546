package atomicfile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestWriteFileReplacesAndKeepsMode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	st, _ := os.Stat(p)
	if string(b) != "new" || st.Mode().Perm() != 0o600 {
		t.Fatalf("%q %v", b, st.Mode())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temporary file left: %v", ents)
	}
}

func TestWriteFileErrorLeavesTarget(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "missing-dir", "f")
	if err := WriteFile(p, []byte("x"), 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

// TestWriteFileOwned: as root, a replaced file keeps its owner and group
// and a new one takes its directory's.
func TestWriteFileOwned(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files away")
	}
	dir := t.TempDir()
	if err := os.Chown(dir, 4242, 4343); err != nil {
		t.Fatal(err)
	}
	owner := func(p string) (uint32, uint32) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		return st.Uid, st.Gid
	}
	p := filepath.Join(dir, "f")
	if err := WriteFileOwned(p, []byte("one"), 0o640); err != nil {
		t.Fatal(err)
	}
	if u, g := owner(p); u != 4242 || g != 4343 {
		t.Errorf("new file %d:%d, want 4242:4343", u, g)
	}
	if err := os.Chown(p, 5000, 5001); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileOwned(p, []byte("two"), 0o640); err != nil {
		t.Fatal(err)
	}
	if u, g := owner(p); u != 5000 || g != 5001 {
		t.Errorf("replaced file %d:%d, want 5000:5001", u, g)
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Errorf("content %q", b)
	}
}
