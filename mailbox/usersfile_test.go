package mailbox

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Test hashes of "secret" and "hunter2", with cheap parameters.
func bcryptHash(t testing.TB, pw, prefix string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return prefix + string(h[4:])
}

func argonHash(pw string) string {
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte(pw), salt, 1, 64, 1, 32)
	e := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=19$m=64,t=1,p=1$%s$%s", e.EncodeToString(salt), e.EncodeToString(key))
}

func TestParseUsersFile(t *testing.T) {
	bc := bcryptHash(t, "secret", "$2y$")
	ar := argonHash("secret")
	good := strings.Join([]string{
		"# users of example.org",
		"",
		"   # indented comment",
		"alice@example.org:" + bc,
		"bob@example.org:" + ar + ":1G\r",
		"carol@example.org:",
		"dave@example.org",
		"  erin@example.org : {ARGON2ID}" + ar + " : 0 ",
		"frank@example.org:{BLF-CRYPT}" + bc + ":",
	}, "\n")
	users, err := ParseUsersFile(strings.NewReader(good), "users")
	if err != nil {
		t.Fatal(err)
	}
	want := []FileUser{
		{Addr: "alice@example.org", Hash: bc, Line: 4},
		{Addr: "bob@example.org", Hash: ar, Quota: 1 << 30, HasQuota: true, Line: 5},
		{Addr: "carol@example.org", Line: 6},
		{Addr: "dave@example.org", Line: 7},
		{Addr: "erin@example.org", Hash: "{ARGON2ID}" + ar, HasQuota: true, Line: 8},
		{Addr: "frank@example.org", Hash: "{BLF-CRYPT}" + bc, HasQuota: true, Line: 9},
	}
	if len(users) != len(want) {
		t.Fatalf("got %d users: %+v", len(users), users)
	}
	for i := range want {
		if users[i] != want[i] {
			t.Errorf("user %d = %+v, want %+v", i, users[i], want[i])
		}
	}

	bad := []struct {
		text string
		want string
	}{
		{"alice@example.org:x", "users:1: alice@example.org: password hash is neither"},
		{"# ok\nalice@example.org:$2a$10$short", "users:2: alice@example.org: bcrypt hash"},
		{"\n\nalice@example.org::lots", "users:3: alice@example.org: quota: size"},
		{"a:b:c:d", `users:1: want "address:hash[:quota]"`},
		{"../x@example.org:", `users:1: address "../x@example.org"`},
		{"alice:", `users:1: address "alice": missing @domain`},
		{"alice@example.org:\nALICE@example.org:", "users:2: ALICE@example.org already defined on line 1"},
		{"x@example.org:\n" + strings.Repeat("a", MaxUsersFileLine+1), "users:2: line longer than 4096 bytes"},
		{"x@example.org:$argon2id$v=19$m=64,t=1,p=1$c2FsdA$" + strings.Repeat("A", 43), "salt must be"},
		{"x@example.org:$argon2id$v=16$m=64,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$" + strings.Repeat("A", 43), "version"},
		{"x@example.org:$argon2id$v=19$m=4194304,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$" + strings.Repeat("A", 43), "m=4194304 outside"},
		{"x@example.org:$argon2id$v=19$m=64,t=1000,p=1$MDEyMzQ1Njc4OWFiY2RlZg$" + strings.Repeat("A", 43), "t=1000 outside"},
		{"x@example.org:$argon2id$v=19$m=64,t=1,p=0$MDEyMzQ1Njc4OWFiY2RlZg$" + strings.Repeat("A", 43), "p must be at least 1"},
		{"x@example.org:$argon2id$v=19$m=64,t=1$MDEyMzQ1Njc4OWFiY2RlZg$" + strings.Repeat("A", 43), "all required"},
		{"x@example.org:$argon2id$v=19$m=64,t=1,p=1,x=2$MDEyMzQ1Njc4OWFiY2RlZg$" + strings.Repeat("A", 43), "unknown parameter"},
		{"x@example.org:$argon2id$v=19$m=64,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAA", "hash must be"},
		{"x@example.org:$argon2i$v=19$m=64,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$" + strings.Repeat("A", 43), "neither"},
		{"x@example.org:" + bcryptCost(t, 17), "bcrypt cost 17"},
	}
	for _, tc := range bad {
		_, err := ParseUsersFile(strings.NewReader(tc.text), "users")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseUsersFile(%.40q) = %v, want %q", tc.text, err, tc.want)
		}
	}
}

// bcryptCost forges a bcrypt string with a given cost (never verified).
func bcryptCost(t *testing.T, cost int) string {
	h := bcryptHash(t, "x", "$2a$")
	return fmt.Sprintf("$2a$%02d%s", cost, h[6:])
}

func TestUsersFileLimits(t *testing.T) {
	var b strings.Builder
	for i := 0; i <= MaxUsersFileLines; i++ {
		b.WriteString("#\n")
	}
	if _, err := ParseUsersFile(strings.NewReader(b.String()), "u"); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("line count: %v", err)
	}
}

func FuzzParseUsersFile(f *testing.F) {
	f.Add("alice@example.org:" + argonHash("x") + ":1G\n# c\n\nbob@example.org:\n")
	f.Add("alice@example.org:$2y$04$abcdefghijklmnopqrstuu5Q0YxvOa0g6tYIUyqV0yVQkq/l5lN7a\n")
	f.Add("a:b:c:d")
	f.Add("x@y.z:$argon2id$v=19$m=8,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$" + strings.Repeat("A", 43))
	f.Fuzz(func(t *testing.T, s string) {
		users, err := ParseUsersFile(strings.NewReader(s), "f")
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, u := range users {
			key, err := normalize(u.Addr)
			if err != nil {
				t.Fatalf("accepted bad address %q", u.Addr)
			}
			if seen[key] {
				t.Fatalf("duplicate %q", key)
			}
			seen[key] = true
			if _, err := SafePath("/root", u.Addr); err != nil {
				t.Fatalf("accepted address %q that SafePath refuses: %v", u.Addr, err)
			}
			if u.Hash != "" && checkHash(u.Hash) != nil {
				t.Fatalf("accepted bad hash %q", u.Hash)
			}
			if u.Quota < 0 || u.Line < 1 {
				t.Fatalf("bad user %+v", u)
			}
		}
	})
}

func TestAuthenticate(t *testing.T) {
	dir := t.TempDir()
	full, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(full, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("HashPassword = %q", full)
	}
	uf := filepath.Join(dir, "users")
	os.WriteFile(uf, []byte(strings.Join([]string{
		"b@example.org:" + bcryptHash(t, "secret", "$2b$"),
		"y@example.org:" + bcryptHash(t, "secret", "$2y$"),
		"d@example.org:{BLF-CRYPT}" + bcryptHash(t, "secret", "$2a$"),
		"a@example.org:" + argonHash("secret"),
		"p@example.org:{argon2id}" + argonHash("secret"),
		"nopw@example.org:",
	}, "\n")), 0o600)
	d, err := New(Config{Root: dir, UsersFile: uf, Users: map[string]UserConfig{
		"full@example.org": {PasswordHash: full},
	}}, []string{"example.org"})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 5000)
	tests := []struct {
		addr, pw string
		ok       bool
	}{
		{"b@example.org", "secret", true},
		{"B@EXAMPLE.ORG", "secret", true},
		{"y@example.org", "secret", true},
		{"d@example.org", "secret", true},
		{"a@example.org", "secret", true},
		{"p@example.org", "secret", true},
		{"full@example.org", "correct horse", true},
		{"full@example.org", "correct horse ", false},
		{"b@example.org", "Secret", false},
		{"a@example.org", "secre", false},
		{"a@example.org", "", false},
		{"a@example.org", long, false},
		{"a+x@example.org", "secret", false},
		{"nopw@example.org", "", false},
		{"nopw@example.org", "x", false},
		{"nobody@example.org", "secret", false},
		{"../a@example.org", "secret", false},
		{"", "", false},
	}
	for _, tc := range tests {
		ok, err := d.Authenticate(tc.addr, tc.pw)
		if err != nil || ok != tc.ok {
			t.Errorf("Authenticate(%q, %.10q) = %v, %v; want %v", tc.addr, tc.pw, ok, err, tc.ok)
		}
	}
	// The dummy hash must cost what a real one costs.
	if a, err := parseArgon2id(dummyHash); err != nil || a.m != argonMemory || a.t != argonTime || a.p != argonThreads {
		t.Errorf("dummy hash %+v, %v: parameters differ from HashPassword's", a, err)
	}
	for _, h := range []string{"junk", "$2a$99$x", "$argon2id$v=19$"} {
		if ok, err := verifyPassword(h, "x"); ok || err == nil {
			t.Errorf("verifyPassword(%q) = %v, %v; want an error", h, ok, err)
		}
	}
	if _, err := HashPassword(""); err == nil {
		t.Error("empty password hashed")
	}
	if _, err := HashPassword(long); err == nil {
		t.Error("over-long password hashed")
	}
}

func TestUserFileRewrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users")
	// Created when missing.
	if err := AddUser(path, "alice@example.org", "pw1"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("created file: %v, %v", fi, err)
	}
	// Comments and other lines stay; the mode stays.
	b, _ := os.ReadFile(path)
	head := "# users\n\n# bob is on leave\nbob@example.org::2G\n"
	os.WriteFile(path, append([]byte(head), b...), 0o640)
	os.Chmod(path, 0o640)

	if err := AddUser(path, "Carol@example.org", "pw3"); err != nil {
		t.Fatal(err)
	}
	if err := AddUser(path, "ALICE@example.org", "x"); err == nil || !strings.Contains(err.Error(), ":5: ALICE@example.org already exists") {
		t.Errorf("duplicate AddUser: %v", err)
	}
	if err := SetPassword(path, "bob@example.org", "pw2"); err != nil {
		t.Fatal(err)
	}
	if err := SetPassword(path, "nobody@example.org", "x"); err == nil {
		t.Error("SetPassword of unknown user")
	}
	if err := DeleteUser(path, "ALICE@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := DeleteUser(path, "alice@example.org"); err == nil {
		t.Error("DeleteUser twice")
	}
	if err := AddUser(path, "../x@example.org", "x"); err == nil {
		t.Error("unsafe address added")
	}
	if err := AddUser(path, "x@example.org", ""); err == nil {
		t.Error("empty password added")
	}

	b, _ = os.ReadFile(path)
	lines := strings.Split(string(b), "\n")
	if len(lines) != 6 || lines[0] != "# users" || lines[1] != "" || lines[2] != "# bob is on leave" ||
		!strings.HasPrefix(lines[3], "bob@example.org:$argon2id$") || !strings.HasSuffix(lines[3], ":2G") ||
		!strings.HasPrefix(lines[4], "Carol@example.org:$argon2id$") || lines[5] != "" {
		t.Errorf("file after edits:\n%s", b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode changed to %v", fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}

	d, err := New(Config{Root: dir, UsersFile: path}, []string{"example.org"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ addr, pw string }{{"bob@example.org", "pw2"}, {"carol@example.org", "pw3"}} {
		if ok, err := d.Authenticate(c.addr, c.pw); !ok || err != nil {
			t.Errorf("Authenticate(%s) = %v, %v", c.addr, ok, err)
		}
	}
	if d.Exists("alice@example.org") {
		t.Error("deleted user still exists")
	}

	// A broken file is never rewritten.
	os.WriteFile(path, []byte("garbage line:x:y:z\n"), 0o600)
	if err := AddUser(path, "z@example.org", "x"); err == nil || !strings.Contains(err.Error(), "refusing to rewrite") {
		t.Errorf("broken file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "garbage line:x:y:z\n" {
		t.Errorf("broken file changed: %q", b)
	}
	// A missing file is only created by AddUser.
	if err := DeleteUser(filepath.Join(dir, "none"), "a@example.org"); err == nil {
		t.Error("DeleteUser on a missing file")
	}
}
