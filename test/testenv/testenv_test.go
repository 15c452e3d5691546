package testenv

import (
	"os"
	"strings"
	"testing"
)

func TestLastCounter(t *testing.T) {
	for _, tc := range []struct {
		out  string
		key  string
		want int
	}{
		{"", "mesg=", 0},
		{"sess=1 quit=1 mesg=1\r", "mesg=", 1},
		{"sess=1 quit=0 mesg=1\rsess=2 quit=2 mesg=17\r", "mesg=", 17},
		{"sess=2 quit=2 mesg=17\r", "sess=", 2},
		{"mesg=", "mesg=", 0},
	} {
		if got := LastCounter([]byte(tc.out), tc.key); got != tc.want {
			t.Errorf("LastCounter(%q, %q) = %d, want %d", tc.out, tc.key, got, tc.want)
		}
	}
}

// TestPostfixServices: the shared master.cf service table (also read by
// scripts/bench.sh) has eight fields a service and no listener of its own.
func TestPostfixServices(t *testing.T) {
	n := 0
	for _, l := range strings.Split(postfixServices, "\n") {
		if l = strings.TrimSpace(l); l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		n++
		if f := strings.Fields(l); len(f) != 8 || f[1] == "inet" {
			t.Errorf("service line %q", l)
		}
	}
	if n < 20 {
		t.Errorf("%d services", n)
	}
}

func TestSharedTempDir(t *testing.T) {
	dir := sharedTempDir(t, "moat-testenv-")
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.IsDir() || fi.Mode().Perm() != 0o755 {
		t.Errorf("mode %v", fi.Mode())
	}
}
