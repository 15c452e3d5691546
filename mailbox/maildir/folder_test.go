package maildir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Delivery into a Maildir++ folder: <mailbox>/.Junk/{tmp,new,cur} and the
// maildirfolder marker, the mailbox's own directories too, durable, and
// the quota counted over the whole mailbox.
func TestDeliverFolder(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "example.org", "alice")
	f := &faultFS{}
	path, err := Deliver(dir, strings.NewReader("spam\r\n"), Options{FS: f, Folder: "Junk"})
	if err != nil {
		t.Fatal(err)
	}
	if got := filepath.Dir(path); got != filepath.Join(dir, ".Junk", "new") {
		t.Fatalf("delivered to %s", path)
	}
	if b, _ := os.ReadFile(path); string(b) != "spam\r\n" {
		t.Errorf("content %q", b)
	}
	for _, d := range []string{"tmp", "new", "cur", ".Junk/tmp", ".Junk/new", ".Junk/cur"} {
		if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", d, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, ".Junk", FolderMarker)); err != nil || fi.Size() != 0 || fi.IsDir() {
		t.Errorf("maildirfolder: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, FolderMarker)); err == nil {
		t.Error("the mailbox itself marked as a folder")
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "new")); len(ents) != 0 {
		t.Errorf("INBOX has %d messages", len(ents))
	}
	// example.org, alice, its tmp new cur, .Junk, its tmp new cur: each
	// synced into its parent; then the marker and new/ after the link.
	if got := f.calls["SyncDir"]; got != 11 {
		t.Errorf("SyncDir calls = %d, want 11", got)
	}
	f.calls = nil
	if _, err := Deliver(dir, strings.NewReader("more\r\n"), Options{FS: f, Folder: "Junk"}); err != nil {
		t.Fatal(err)
	}
	if got := f.calls["SyncDir"]; got != 1 {
		t.Errorf("second delivery SyncDir calls = %d, want 1", got)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, ".Junk", "new")); len(ents) != 2 {
		t.Errorf(".Junk/new has %d messages", len(ents))
	}
}

func TestDeliverFolderQuotaIsTheMailboxs(t *testing.T) {
	dir := t.TempDir()
	msg := strings.Repeat("x", 400)
	if _, err := Deliver(dir, strings.NewReader(msg), Options{Quota: 1000}); err != nil {
		t.Fatal(err)
	}
	if _, err := Deliver(dir, strings.NewReader(msg), Options{Quota: 1000, Folder: "Junk"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".Junk", sizeFile)); err == nil {
		t.Error("the folder has its own maildirsize")
	}
	_, err := Deliver(dir, strings.NewReader(msg), Options{Quota: 1000, Folder: "Junk"})
	if !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("third message over the whole mailbox's quota: %v", err)
	}
}

func TestDeliverFolderMarkerFailure(t *testing.T) {
	dir := t.TempDir()
	f := &faultFS{op: "Create", suffix: FolderMarker, err: syscall.EIO}
	if _, err := Deliver(dir, strings.NewReader("x"), Options{FS: f, Folder: "Junk"}); !errors.Is(err, syscall.EIO) {
		t.Fatalf("err %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, ".Junk", "new")); len(ents) != 0 {
		t.Errorf("delivered although the folder is not marked: %v", ents)
	}
}

func TestValidFolder(t *testing.T) {
	for _, ok := range []string{"Junk", "Spam", "Junk-Mail", "Spam.Old", "a_b", "X"} {
		if !ValidFolder(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", ".Junk", "Junk.", "a..b", "../x", "a/b", "Jünk", "a&b", "a b", "..", ".", strings.Repeat("j", maxFolder+1)} {
		if ValidFolder(bad) {
			t.Errorf("%q accepted", bad)
		}
		if _, err := Deliver(t.TempDir(), strings.NewReader("x"), Options{Folder: bad}); bad != "" && err == nil {
			t.Errorf("delivered into %q", bad)
		}
	}
}
