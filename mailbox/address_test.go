package mailbox

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var unsafeAddrs = []string{
	"",
	"@example.org",
	"alice@",
	"alice",
	"../x@example.org",
	"..@example.org",
	".@example.org",
	"a/b@example.org",
	"a\\b@example.org",
	"a\x00b@example.org",
	"a\nb@example.org",
	"a\rb@example.org",
	"a\tb@example.org",
	"a b@example.org",
	"a\x7fb@example.org",
	".hidden@example.org",
	"a..b@example.org",
	"trailing.@example.org",
	`"quoted"@example.org`,
	"a:b@example.org",
	"alice@../example.org",
	"alice@..",
	"alice@.",
	"alice@exa/mple.org",
	"alice@example.org/..",
	"alice@example..org",
	"alice@.example.org",
	"alice@-example.org",
	"alice@example.org\x00",
	"alice@[127.0.0.1]",
	"alice@exa_mple.org",
	"alice@@example.org",
	"\uff41lice@example.org",       // fullwidth a
	"a\u2215b@example.org",         // division slash
	"a\uff0e\uff0e@example.org",    // fullwidth full stops
	"a\u202eb@example.org",         // right-to-left override
	"a\u200bb@example.org",         // zero width space
	"alice@ex\u0430mple.org",       // Cyrillic a
	"alice@example\u3002org",       // ideographic full stop
	"\xff\xfe@example.org",         // invalid UTF-8
	"%2e%2e@example.org/../../etc", // percent-encoding is not decoded, '/' refused
	strings.Repeat("a", 65) + "@example.org",
	"alice@" + strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 62),
	"alice@" + strings.Repeat("a", 64) + ".org",
}

func TestSafePathRefuses(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{Root: root, Users: map[string]UserConfig{"alice@example.org": {}}},
		[]string{"example.org", ".."})
	if err == nil {
		t.Fatal("'..' accepted as a local domain")
	}
	d, err = New(Config{Root: root, Users: map[string]UserConfig{"alice@example.org": {}},
		CatchAll: map[string]string{"example.org": "alice@example.org"}}, []string{"example.org"})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range unsafeAddrs {
		if p, err := SafePath(root, a); err == nil {
			t.Errorf("SafePath(%q) = %q, want error", a, p)
		}
		// Even with a catch-all, the address does not exist.
		if d.Exists(a) {
			t.Errorf("Exists(%q) = true", a)
		}
		if err := d.Deliver(context.Background(), a, strings.NewReader("x")); err == nil {
			t.Errorf("Deliver(%q) succeeded", a)
		}
	}
	// Nothing was created anywhere.
	filepath.WalkDir(base, func(p string, e fs.DirEntry, err error) error {
		if p != base && p != root {
			t.Errorf("created %s", p)
		}
		return nil
	})
	if _, err := SafePath("", "alice@example.org"); err == nil {
		t.Error("empty root accepted")
	}
}

func TestSafePathAccepts(t *testing.T) {
	root := "/var/mail/moat"
	tests := map[string]string{
		"alice@example.org":                "/var/mail/moat/example.org/alice",
		"Alice@Example.ORG":                "/var/mail/moat/example.org/alice",
		"alice@example.org.":               "/var/mail/moat/example.org/alice",
		"a.b+c@x.example":                  "/var/mail/moat/x.example/a.b+c",
		"o'neil@example.org":               "/var/mail/moat/example.org/o'neil",
		"x!#$%&*=?^_`{|}~@e.org":           "/var/mail/moat/e.org/x!#$%&*=?^_`{|}~",
		strings.Repeat("a", 64) + "@e.org": "/var/mail/moat/e.org/" + strings.Repeat("a", 64),
	}
	for in, want := range tests {
		got, err := SafePath(root+"/", in)
		if err != nil || got != want {
			t.Errorf("SafePath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if got, err := SafePath(".", "a@b.c"); err != nil || got != filepath.Join("b.c", "a") {
		t.Errorf("relative root: %q, %v", got, err)
	}
}

func FuzzSafePath(f *testing.F) {
	for _, a := range unsafeAddrs {
		f.Add("/srv/mail", a)
	}
	f.Add("/srv/mail", "alice@example.org")
	f.Add("rel/../root", "a@b")
	f.Add("/", "a@b")
	f.Fuzz(func(t *testing.T, root, addr string) {
		p, err := SafePath(root, addr)
		if err != nil {
			return
		}
		croot := filepath.Clean(root)
		rel, err := filepath.Rel(croot, p)
		if err != nil {
			t.Fatalf("SafePath(%q, %q) = %q: not relative to root: %v", root, addr, p, err)
		}
		parts := strings.Split(rel, string(filepath.Separator))
		if len(parts) != 2 {
			t.Fatalf("SafePath(%q, %q) = %q: %d levels below root", root, addr, p, len(parts))
		}
		for _, s := range parts {
			if s == "" || s == "." || s == ".." || s[0] == '.' || strings.ContainsAny(s, "/\\\x00") {
				t.Fatalf("SafePath(%q, %q) = %q: bad element %q", root, addr, p, s)
			}
		}
		if filepath.Join(croot, parts[0], parts[1]) != p {
			t.Fatalf("SafePath(%q, %q) = %q: not under root", root, addr, p)
		}
	})
}

// Issue 27 item 3: LoginName is the one key of a user whatever the
// spelling; Authenticate takes every spelling of the address itself, but
// not a subaddress.
func TestLoginName(t *testing.T) {
	hash, err := HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{Root: t.TempDir(), Users: map[string]UserConfig{"bob@moat.test": {PasswordHash: hash}},
		Aliases: map[string]any{"sales@moat.test": "bob@moat.test"}}, []string{"moat.test"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in, key string
		ok      bool // a local address
		login   bool // Authenticate takes it with bob's password
	}{
		{"bob@moat.test", "bob@moat.test", true, true},
		{"BOB@Moat.TEST", "bob@moat.test", true, true},
		{"bob@moat.test.", "bob@moat.test", true, true},
		{" bob@moat.test\t", "bob@moat.test", true, true},
		{"bob@ｍｏａｔ.test", "bob@moat.test", true, true},
		{"bob@moat。test", "bob@moat.test", true, true},
		{"bob@mo\u00adat.test", "bob@moat.test", true, true},
		{"ｂｏｂ@moat.test", "bob@moat.test", true, true},
		{"bob+tag@moat.test", "bob@moat.test", true, false},
		{"Bob+Tag@moat.test.", "bob@moat.test", true, false},
		{"sales+x@moat.test", "sales@moat.test", true, false},
		{"nobody@moat.test", "nobody@moat.test", true, false},
		{"bob@other.test", "bob@other.test", false, false},
		{"b\u00f6b@moat.test", "b\u00f6b@moat.test", false, false},
		{"bob@moat.test\x00", "bob@moat.test\x00", false, false},
		{"bob", "bob", false, false},
		{"", "", false, false},
	}
	for _, tc := range tests {
		key, ok := d.LoginName(tc.in)
		if key != tc.key || ok != tc.ok {
			t.Errorf("LoginName(%q) = %q, %v; want %q, %v", tc.in, key, ok, tc.key, tc.ok)
		}
		if got, err := d.Authenticate(tc.in, "pw"); got != tc.login || err != nil {
			t.Errorf("Authenticate(%q) = %v, %v; want %v", tc.in, got, err, tc.login)
		}
		if tc.login {
			if sa := d.SendAs(tc.in); len(sa) != 2 || sa[0] != "bob@moat.test" || sa[1] != "sales@moat.test" {
				t.Errorf("SendAs(%q) = %v", tc.in, sa)
			}
		}
	}
}
