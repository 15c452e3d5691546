package verify

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/smtptest"
	"moat/relay/route"
)

func TestParseList(t *testing.T) {
	l, err := ParseList(strings.NewReader(`# recipients of corp.example
alice@corp.example
  Bob@Corp.Example.   # trailing comment
a#b@corp.example
<carol@corp.example>
@sales.example
@BÜCHER.example
user@xn--bcher-kva.example

`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		local, domain string
		want          bool
	}{
		{"alice", "corp.example", true},
		{"ALICE", "corp.example", true},
		{"bob", "corp.example", true},
		{"a#b", "corp.example", true},
		{"a", "corp.example", false},
		{"carol", "corp.example", true},
		{"dave", "corp.example", false},
		{"anyone", "sales.example", true},
		{"anyone", "xn--bcher-kva.example", true},
		{"alice", "other.example", false},
		{"alice", "sub.sales.example", false},
	}
	for _, tt := range tests {
		if got := l.Contains(tt.local, tt.domain); got != tt.want {
			t.Errorf("Contains(%q, %q) = %v, want %v", tt.local, tt.domain, got, tt.want)
		}
	}
	if l.Len() != 7 {
		t.Errorf("Len = %d, want 7", l.Len())
	}
}

func TestParseListBad(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"no at", "alice\n", "line 1"},
		{"two addresses", "ok@corp.example\na@x b@y\n", "line 2"},
		{"source route", "@a,@b:c@d.example\n", "line 1"},
		{"literal", "a@[192.0.2.1]\n", "line 1"},
		{"bad domain", "@bad_domain.example\n", "line 1"},
		{"empty domain", "@\n", "line 1"},
		{"NUL", "a\x00b@corp.example\n", "line 1"},
		{"long line", "a@b.example\n" + strings.Repeat("x", 2000) + "@c.example\n", "line 2"},
		{"hidden at", "\"a@b\"@corp.example\n", "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseList(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

func TestParseListTooBig(t *testing.T) {
	line := "user@corp.example\n"
	r := strings.NewReader(strings.Repeat(line, MaxListBytes/len(line)+2))
	if _, err := ParseList(r); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Fatalf("got %v, want a size error", err)
	}
}

func FuzzParseList(f *testing.F) {
	f.Add("alice@corp.example\n# c\n@sales.example\n")
	f.Add("\"quoted local\"@corp.example\n")
	f.Add("a#b@x.example #c\r\n@bücher.example\n")
	f.Add("<>\n@\n@@\n")
	f.Fuzz(func(t *testing.T, in string) {
		l, err := ParseList(strings.NewReader(in))
		if err != nil {
			return
		}
		// Every parsed address is found again by what routing returns
		// for it.
		for a := range l.addrs {
			local, dom, err := route.Split(a)
			if err != nil {
				t.Fatalf("stored %q does not split: %v", a, err)
			}
			if !l.Contains(local, dom) {
				t.Fatalf("stored %q not found", a)
			}
		}
	})
}

func writeFile(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func TestListMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "recipients")
	mtime := time.Now().Add(-time.Hour)
	writeFile(t, path, "alice@corp.example\n", mtime)
	routes := map[string]route.Route{"backend": {Type: route.TypeSMTP, Address: "127.0.0.1:1", VerifyRecipients: route.VerifyList, RecipientsFile: path}}
	cfg := DefaultConfig()
	v, clk := newTest(t, cfg, routes, nil)
	if err := check(t, v, client1, "Alice@CORP.example"); err != nil {
		t.Fatalf("listed: %v", err)
	}
	if err := check(t, v, client1, "PostMaster@corp.example"); err != nil {
		t.Fatalf("postmaster (RFC 5321 §4.5.1): %v", err)
	}
	r := smtptest.AsReply(t, check(t, v, client1, "bob@corp.example"))
	if r.Code != 550 || r.Enhanced.String() != "5.1.1" {
		t.Fatalf("unlisted: got %v", r)
	}

	// A change is seen after list_reload, not before.
	writeFile(t, path, "bob@corp.example\n", mtime.Add(time.Minute))
	if c := code(check(t, v, client1, "bob@corp.example")); c != 550 {
		t.Fatalf("before list_reload: got %d", c)
	}
	clk.Add(cfg.ListReload)
	if err := check(t, v, client1, "bob@corp.example"); err != nil {
		t.Fatalf("after the change: %v", err)
	}
	if c := code(check(t, v, client1, "alice@corp.example")); c != 550 {
		t.Fatalf("removed address: got %d", c)
	}

	// A broken file keeps the last good list.
	writeFile(t, path, "bob@corp.example\nnot an address\n", mtime.Add(2*time.Minute))
	clk.Add(cfg.ListReload)
	if err := check(t, v, client1, "bob@corp.example"); err != nil {
		t.Fatalf("after a bad change: %v", err)
	}
	if st := v.Stats(); st.ListErrors != 1 || st.ListReloads != 2 {
		t.Errorf("stats %+v", st)
	}
	if err := v.Reload(); err == nil || !strings.Contains(err.Error(), "routes.backend.recipients_file") || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("Reload: got %v", err)
	}

	// Reload reads at once, even with the same size and time.
	writeFile(t, path, "carol@corp.example\n", mtime.Add(2*time.Minute))
	if err := v.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := v.Check(context.Background(), client1, "backend", "carol@corp.example"); err != nil {
		t.Fatalf("after Reload: %v", err)
	}
}

func TestListModeHarvest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "recipients")
	writeFile(t, path, "alice@corp.example\n", time.Now())
	routes := map[string]route.Route{"backend": {Type: route.TypeSMTP, Address: "127.0.0.1:1", VerifyRecipients: route.VerifyList, RecipientsFile: path}}
	cfg := DefaultConfig()
	cfg.HarvestLimit = 2
	v, _ := newTest(t, cfg, routes, nil)
	check(t, v, client1, "x@corp.example")
	check(t, v, client1, "y@corp.example")
	if c := code(check(t, v, client1, "alice@corp.example")); c != 421 {
		t.Fatalf("got %d, want 421", c)
	}
}
