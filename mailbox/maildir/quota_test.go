package maildir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/reply"
)

func TestQuota(t *testing.T) {
	dir := t.TempDir()
	opt := Options{Quota: 1000}
	msg := strings.Repeat("x", 400)
	for i := 0; i < 2; i++ {
		if _, err := Deliver(dir, strings.NewReader(msg), opt); err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "maildirsize"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "1000S\n0 0\n400 1\n400 1\n"; got != want {
		t.Errorf("maildirsize = %q, want %q", got, want)
	}

	_, err = Deliver(dir, strings.NewReader(msg), opt)
	var r *reply.Reply
	if !errors.As(err, &r) || r.Code != 452 || r.Enhanced != (reply.Enhanced{4, 2, 2}) || !r.Temporary() {
		t.Fatalf("over quota: got %v, want 452 4.2.2", err)
	}
	if !errors.Is(err, ErrQuotaExceeded) {
		t.Errorf("error does not wrap ErrQuotaExceeded: %v", err)
	}
	if n := entries(t, filepath.Join(dir, "tmp")); len(n) != 0 {
		t.Errorf("tmp/ not empty: %v", n)
	}
	if n := entries(t, filepath.Join(dir, "new")); len(n) != 2 {
		t.Errorf("new/ has %d files", len(n))
	}
	// A message that still fits is accepted.
	if _, err := Deliver(dir, strings.NewReader(strings.Repeat("y", 200)), opt); err != nil {
		t.Fatalf("fitting message: %v", err)
	}

	// A reader (an IMAP server unaware of maildirsize) removes a message
	// and moves another to cur/: the stale cache must not refuse mail.
	names := entries(t, filepath.Join(dir, "new"))
	os.Remove(filepath.Join(dir, "new", names[0]))
	os.Rename(filepath.Join(dir, "new", names[1]), filepath.Join(dir, "cur", names[1]+":2,S"))
	if _, err := Deliver(dir, strings.NewReader(msg), opt); err != nil {
		t.Fatalf("after deletion: %v", err)
	}
}

func TestQuotaCountsFoldersAndUnsizedNames(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"cur", ".Sent/cur", ".Sent/new", "new", "tmp"} {
		os.MkdirAll(filepath.Join(dir, d), 0o700)
	}
	// No ",S=": size comes from stat.
	os.WriteFile(filepath.Join(dir, "cur", "1.M1P1.host:2,S"), make([]byte, 300), 0o600)
	// ",S=" is trusted without stat.
	os.WriteFile(filepath.Join(dir, ".Sent", "cur", "2.M1P1.host,S=500:2,S"), nil, 0o600)
	// tmp/ does not count.
	os.WriteFile(filepath.Join(dir, "tmp", "3.M1P1.host"), make([]byte, 5000), 0o600)

	opt := Options{Quota: 1000}
	if _, err := Deliver(dir, strings.NewReader(strings.Repeat("x", 200)), opt); err != nil {
		t.Fatal(err)
	}
	_, err := Deliver(dir, strings.NewReader(strings.Repeat("x", 1)), opt)
	if !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("want over quota at 300+500+200+1 > 1000, got %v", err)
	}
}

func TestQuotaCacheRebuilt(t *testing.T) {
	tests := []struct {
		name    string
		content string
		age     time.Duration
	}{
		{"garbage", "hello\n", 0},
		{"other limit", "5S\n0 0\n", 0},
		{"unfinished line", "1000S\n0 0\n12", 0},
		{"stale", "1000S\n0 0\n", time.Hour},
		{"too big", "1000S\n" + strings.Repeat("1 1\n", 2000), 0},
		{"negative sum", "1000S\n-5000 -1\n", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.MkdirAll(filepath.Join(dir, "new"), 0o700)
			os.WriteFile(filepath.Join(dir, "new", "1.M1P1R1.h,S=900"), nil, 0o600)
			p := filepath.Join(dir, "maildirsize")
			os.WriteFile(p, []byte(tc.content), 0o600)
			if tc.age > 0 {
				old := time.Now().Add(-tc.age)
				os.Chtimes(p, old, old)
			}
			_, err := Deliver(dir, strings.NewReader(strings.Repeat("x", 200)), Options{Quota: 1000})
			if !errors.Is(err, ErrQuotaExceeded) {
				t.Fatalf("got %v, want over quota (900+200)", err)
			}
			b, _ := os.ReadFile(p)
			if string(b) != "1000S\n900 1\n" {
				t.Errorf("rebuilt maildirsize = %q", b)
			}
		})
	}
}

func TestNoQuotaNoSizeFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := Deliver(dir, strings.NewReader("x"), Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "maildirsize")); !os.IsNotExist(err) {
		t.Errorf("maildirsize written without a quota: %v", err)
	}
}

func TestSizeFromName(t *testing.T) {
	tests := []struct {
		name string
		size int64
		ok   bool
	}{
		{"1.M1P1.host,S=123", 123, true},
		{"1.M1P1.host,S=123:2,S", 123, true},
		{"1.M1P1.host,S=123,W=130:2,", 123, true},
		{"1.M1P1.host", 0, false},
		{"1.M1P1.host:2,S=5", 0, false},
		{"1.M1P1.host,S=-1", 0, false},
		{"1.M1P1.host,S=abc", 0, false},
		{"1.M1P1.host,S=", 0, false},
	}
	for _, tc := range tests {
		n, ok := SizeFromName(tc.name)
		if n != tc.size || ok != tc.ok {
			t.Errorf("SizeFromName(%q) = %d, %v; want %d, %v", tc.name, n, ok, tc.size, tc.ok)
		}
	}
}

func FuzzParseSizeFile(f *testing.F) {
	f.Add("1000S\n0 0\n400 1\n")
	f.Add("1000S\n-1 -1\n")
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := parseSizeFile(s, 1000)
		if ok && n < 0 {
			t.Fatalf("negative size %d accepted", n)
		}
	})
}
