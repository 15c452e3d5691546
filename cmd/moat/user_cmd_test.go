package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"moat/mailbox"
)

// userCmdEnv is a config file whose users_file is in a temp dir.
type userCmdEnv struct {
	dir, config, usersFile string
}

func newUserCmdEnv(t *testing.T, usersFileKey bool) userCmdEnv {
	t.Helper()
	e := userCmdEnv{dir: t.TempDir()}
	e.usersFile = filepath.Join(e.dir, "users")
	e.config = filepath.Join(e.dir, "moat.yaml")
	body := "hostname: mx.example.org\ndata_dir: " + filepath.Join(e.dir, "data") + "\n" +
		"domains: {local: [example.org]}\n" +
		"mailboxes:\n  users: {bob@example.org: {}}\n"
	if usersFileKey {
		body += "  users_file: " + e.usersFile + "\n"
	}
	if err := os.WriteFile(e.config, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// runUser runs `moat user ARGS` with stdin; it returns stdout+stderr.
func runUser(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	return runCombined(userCommand(), stdin, args...)
}

// authenticate builds the directory the server would build and checks pw.
func (e userCmdEnv) authenticate(t *testing.T, addr, pw string) bool {
	t.Helper()
	cfg, err := loadConfig(e.config)
	if err != nil {
		t.Fatalf("config does not load after the edit: %v", err)
	}
	cfg.Mailboxes.UsersFile = e.usersFile
	d, err := mailbox.New(cfg.Mailboxes, cfg.Domains.Local)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := d.Authenticate(addr, pw)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestUserAddPasswdDelete(t *testing.T) {
	e := newUserCmdEnv(t, true)
	out, err := runUser(t, "s3cret pass\n", "add", "alice@example.org", "--config", e.config)
	if err != nil {
		t.Fatalf("add: %v\n%s", err, out)
	}
	if fi, err := os.Stat(e.usersFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("users file: %v %v", fi, err)
	}
	data, _ := os.ReadFile(e.usersFile)
	if bytes.Contains(data, []byte("s3cret")) || !bytes.Contains(data, []byte("alice@example.org:$argon2id$")) {
		t.Fatalf("users file holds %q", data)
	}
	if !e.authenticate(t, "alice@example.org", "s3cret pass") {
		t.Fatal("the added password does not authenticate")
	}
	if e.authenticate(t, "alice@example.org", "s3cret") {
		t.Fatal("a wrong password authenticates")
	}

	// passwd: CRLF input, no final newline handled alike.
	if out, err := runUser(t, "n3w\r\n", "passwd", "Alice@Example.org", "--config", e.config); err != nil {
		t.Fatalf("passwd: %v\n%s", err, out)
	}
	if !e.authenticate(t, "alice@example.org", "n3w") || e.authenticate(t, "alice@example.org", "s3cret pass") {
		t.Fatal("passwd did not replace the password")
	}

	if out, err := runUser(t, "", "delete", "alice@example.org", "--config", e.config); err != nil {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	if e.authenticate(t, "alice@example.org", "n3w") {
		t.Fatal("deleted user authenticates")
	}
}

func TestUserUsersFileFlag(t *testing.T) {
	e := newUserCmdEnv(t, false)
	other := filepath.Join(e.dir, "other-users")
	// With --config, the override is used and the domain is checked.
	if out, err := runUser(t, "pw1", "add", "carol@example.org", "--config", e.config, "--users-file", other); err != nil {
		t.Fatalf("add: %v\n%s", err, out)
	}
	e.usersFile = other
	if !e.authenticate(t, "carol@example.org", "pw1") {
		t.Fatal("password does not authenticate")
	}
	// --users-file alone: no domain check, a warning says so.
	out, err := runUser(t, "pw2\n", "add", "dave@elsewhere.example", "--users-file", other)
	if err != nil || !strings.Contains(out, "not checking") {
		t.Fatalf("add without config: %v\n%s", err, out)
	}
}

func TestUserErrors(t *testing.T) {
	e := newUserCmdEnv(t, true)
	noFile := newUserCmdEnv(t, false)
	if _, err := runUser(t, "pw\n", "add", "alice@example.org", "--config", e.config); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"no users_file", "pw\n", []string{"add", "x@example.org", "--config", noFile.config}, "mailboxes.users_file is not set"},
		{"no config nor file", "pw\n", []string{"add", "x@example.org"}, "--config"},
		{"foreign domain", "pw\n", []string{"add", "x@example.net", "--config", e.config}, "not in domains.local"},
		{"not an address", "pw\n", []string{"add", "nobody", "--config", e.config}, "not an address"},
		{"duplicate", "pw\n", []string{"add", "ALICE@example.org", "--config", e.config}, "already exists"},
		{"in config users", "pw\n", []string{"add", "bob@example.org", "--config", e.config}, "already in mailboxes.users"},
		{"empty input", "", []string{"add", "x@example.org", "--config", e.config}, "no password"},
		{"empty line", "\n", []string{"add", "x@example.org", "--config", e.config}, "empty password"},
		{"too long", strings.Repeat("a", 2000) + "\n", []string{"add", "x@example.org", "--config", e.config}, "longer than 1024"},
		{"line too long", strings.Repeat("a", 5000), []string{"add", "x@example.org", "--config", e.config}, "longer than 4096"},
		{"passwd unknown", "pw\n", []string{"passwd", "zed@example.org", "--config", e.config}, "no user"},
		{"delete unknown", "", []string{"delete", "zed@example.org", "--config", e.config}, "no user"},
		{"missing config", "pw\n", []string{"add", "x@example.org", "--config", filepath.Join(e.dir, "nope.yaml")}, "no such file"},
		{"no address", "pw\n", []string{"add", "--config", e.config}, "accepts 1 arg"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := os.ReadFile(e.usersFile)
			out, err := runUser(t, tc.stdin, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v (output %q), want an error containing %q", err, out, tc.want)
			}
			after, _ := os.ReadFile(e.usersFile)
			if !bytes.Equal(before, after) {
				t.Fatal("a failed command changed the users file")
			}
		})
	}
}

func TestUserBadConfigRefused(t *testing.T) {
	e := newUserCmdEnv(t, true)
	if err := os.WriteFile(e.config, []byte("hostname: mx.example.org\nlog: {level: loud}\ndomains: {local: [example.org]}\n"+
		"mailboxes: {users_file: "+e.usersFile+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := runUser(t, "pw\n", "add", "x@example.org", "--config", e.config)
	if err == nil || !strings.Contains(err.Error(), "log.level") {
		t.Fatalf("got %v, want the config error", err)
	}
}

func FuzzReadPasswordLine(f *testing.F) {
	for _, s := range []string{"", "\n", "pw\n", "pw\r\n", "a\nb\n", "\r", strings.Repeat("x", 5000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		pw, err := readPasswordLine(bufioReader(in))
		if err != nil {
			return
		}
		if pw == "" || strings.Contains(pw, "\n") || len(pw) > maxPasswordLine {
			t.Fatalf("%q -> %q", in, pw)
		}
	})
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReaderSize(strings.NewReader(s), 512) }

// TestUserAddFirstUserNamedInAlias: a configuration whose alias (and
// catch-all) names a user not yet in the users file lets that user be
// added, and loads afterwards; an unrelated error still stops the
// command.
func TestUserAddFirstUserNamedInAlias(t *testing.T) {
	e := userCmdEnv{dir: t.TempDir()}
	e.usersFile = filepath.Join(e.dir, "users")
	e.config = filepath.Join(e.dir, "moat.yaml")
	body := "hostname: mx.example.org\ndata_dir: " + filepath.Join(e.dir, "data") + "\n" +
		"domains: {local: [example.org]}\n" +
		"mailboxes:\n  users_file: " + e.usersFile + "\n" +
		"  aliases: {postmaster@example.org: alice@example.org}\n" +
		"  catch_all: {example.org: alice@example.org}\n"
	os.WriteFile(e.config, []byte(body), 0o600)
	os.WriteFile(e.usersFile, nil, 0o600) // an empty users file, as an installer leaves it
	if _, err := loadConfig(e.config); err == nil {
		t.Fatal("the configuration loads before alice exists: the test proves nothing")
	}
	if out, err := runUser(t, "first-pass-123\n", "add", "alice@example.org", "--config", e.config); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	if !e.authenticate(t, "alice@example.org", "first-pass-123") {
		t.Fatal("alice cannot log in")
	}
	// Another user does not make the alias valid: refused.
	os.WriteFile(e.config, []byte(body+"  quota: nonsense\n"), 0o600)
	if out, err := runUser(t, "other-pass-123\n", "add", "carol@example.org", "--config", e.config); err == nil || !strings.Contains(err.Error(), "mailboxes.quota") {
		t.Errorf("a bad configuration was not refused: %v\n%s", err, out)
	}
}

// TestUserFileOwnership: run as root, the users file keeps the owner and
// group it had, and a new one takes its directory's, so moat running as
// its own user can read it after root edited it.
func TestUserFileOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files away")
	}
	e := newUserCmdEnv(t, true)
	const uid, gid = 4242, 4343
	if err := os.Chown(e.dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	owner := func() (int, int) {
		fi, err := os.Stat(e.usersFile)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		return int(st.Uid), int(st.Gid)
	}
	if out, err := runUser(t, "first-pass-123\n", "add", "alice@example.org", "--config", e.config); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if u, g := owner(); u != uid || g != gid {
		t.Errorf("new users file owned by %d:%d, want the directory's %d:%d", u, g, uid, gid)
	}
	if err := os.Chown(e.usersFile, uid+1, gid+1); err != nil {
		t.Fatal(err)
	}
	if out, err := runUser(t, "second-pass-123\n", "passwd", "alice@example.org", "--config", e.config); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if u, g := owner(); u != uid+1 || g != gid+1 {
		t.Errorf("rewritten users file owned by %d:%d, want the old file's %d:%d", u, g, uid+1, gid+1)
	}
}
