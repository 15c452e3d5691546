//go:build interop

package interop

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"moat/internal/smtptest"
	"moat/test/testenv"
)

// TestDovecotIMAPReadsMoatMaildir: the Dovecot configuration shipped in
// deploy/dovecot, with only its paths and its user changed, serves over
// IMAP what moat delivered: the user logs in with the password `moat user
// add` set (argon2id in moat's users file), finds the ordinary message in
// INBOX and the junk one in Junk, marked \Junk (RFC 6154); and Dovecot,
// running as the mailboxes' owner, leaves every file it adds owned by it,
// so moat's next delivery still works.
func TestDovecotIMAPReadsMoatMaildir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runs as root (Dovecot switches to the mail user)")
	}
	snippet, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "deploy", "dovecot", "99-moat.conf"))
	if err != nil {
		t.Fatal(err)
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)

	m := testenv.NewMoat(t, testenv.MoatBinary(t), testenv.MoatOptions{
		LocalDomain: "moat.test",
		Submission:  true, // a users_file
		Extra: "rules:\n  paths: []\n" +
			"  score: {tag: 5, reject: 15, headers: true}\n",
	})
	// A rule file that marks one message as junk.
	rulesFile := filepath.Join(filepath.Dir(m.Config), "junk.yaml")
	os.WriteFile(rulesFile, []byte("rules:\n  - {name: junk-me, stage: data, action: junk, when: 'subject contains \"junk-me\"'}\n"), 0o600)
	cfg, _ := os.ReadFile(m.Config)
	os.WriteFile(m.Config, []byte(strings.Replace(string(cfg), "  paths: []\n", "  paths: ["+strconv.Quote(rulesFile)+"]\n", 1)), 0o600)
	const pw = "imap-pass-12345"
	m.User("alice@moat.test", pw)
	m.Start()

	for _, subj := range []string{"hello", "junk-me"} {
		msg := []byte("From: <bob@sender.test>\r\nTo: <alice@moat.test>\r\nSubject: " + subj +
			"\r\nMessage-ID: <" + subj + "@sender.test>\r\nDate: Fri, 4 Dec 2026 12:00:00 +0000\r\n\r\nbody " + subj + "\r\n")
		if err := smtptest.Send(m.Addr, "bob@sender.test", []string{"alice@moat.test"}, msg); err != nil {
			t.Fatalf("send %s: %v\nmoat log:\n%s", subj, err, m.LogTail(30))
		}
	}
	root := filepath.Join(m.DataDir, "mailboxes")
	box := filepath.Join(root, "moat.test", "alice")
	if !testenv.WaitFor(30*time.Second, func() bool {
		a, _ := filepath.Glob(filepath.Join(box, "new", "*"))
		j, _ := filepath.Glob(filepath.Join(box, ".Junk", "new", "*"))
		return len(a) == 1 && len(j) == 1
	}) {
		t.Fatalf("the two messages did not land in INBOX and Junk\nmoat log:\n%s", m.LogTail(30))
	}
	m.Stop()
	// moat ran as root here; in production it runs as its own user and
	// owns the mailboxes. nobody plays moat's user for Dovecot.
	chownTree(t, root, uid, gid)
	// The directories above are the test's (owner-only): let the mail
	// user through, as /var/lib/moat lets moat's user through.
	for d := filepath.Dir(root); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o711)
	}
	// Dovecot's auth process runs as dovecot: the users file is readable
	// by its group, as deploy/README.md has the operator set it up.
	dovecot, err := user.LookupGroup("dovecot")
	if err != nil {
		t.Skipf("no group dovecot: %v", err)
	}
	dgid, _ := strconv.Atoi(dovecot.Gid)
	if err := os.Chown(m.UsersFile, 0, dgid); err != nil {
		t.Fatal(err)
	}
	os.Chmod(m.UsersFile, 0o640)

	conf := strings.NewReplacer(
		"mail_uid = moat", "mail_uid = "+nobody.Username,
		"mail_gid = moat", "mail_gid = "+groupName(t, gid),
		"uid=moat gid=moat", "uid="+nobody.Username+" gid="+groupName(t, gid),
		"/var/lib/moat/mailboxes", root,
		"/var/lib/moat/users", m.UsersFile,
	).Replace(string(snippet))
	dv := testenv.StartDovecotIMAP(t, conf)

	dump := func() string { b, _ := os.ReadFile(dv.Log); return string(b) }
	c, err := testenv.DialIMAP(dv.Addr)
	if err != nil {
		t.Fatalf("%v\n%s", err, dump())
	}
	defer c.Close()
	if _, err := c.Cmd("LOGIN alice@moat.test %s", pw); err != nil {
		t.Fatalf("LOGIN with the password moat user add set: %v\n%s", err, dump())
	}
	if _, err := c.Cmd("LOGIN alice@moat.test wrong-password"); err == nil {
		t.Error("a second LOGIN was accepted") // (already authenticated: refused either way)
	}
	lines, err := c.Cmd(`LIST "" "*" RETURN (SPECIAL-USE)`)
	if err != nil {
		t.Fatalf("LIST: %v\n%s", err, dump())
	}
	if !containsLine(lines, `\Junk`, "Junk") {
		t.Errorf("no Junk folder marked \\Junk:\n%s", strings.Join(lines, "\n"))
	}
	for folder, subj := range map[string]string{"INBOX": "hello", "Junk": "junk-me"} {
		if lines, err = c.Cmd("SELECT %s", folder); err != nil || !containsLine(lines, "* 1 EXISTS") {
			t.Fatalf("SELECT %s: %v\n%s\n%s", folder, err, strings.Join(lines, "\n"), dump())
		}
		if lines, err = c.Cmd("FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])"); err != nil || !containsLine(lines, "Subject: "+subj) {
			t.Errorf("FETCH in %s: %v\n%s", folder, err, strings.Join(lines, "\n"))
		}
		// Dovecot marks it seen: a rename in cur/, as the mail user.
		if _, err = c.Cmd(`STORE 1 +FLAGS (\Seen)`); err != nil {
			t.Errorf("STORE in %s: %v", folder, err)
		}
	}
	c.Close()
	// Everything Dovecot created in the mailbox belongs to the mail user.
	filepath.Walk(box, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid {
			t.Errorf("%s is owned by uid %d, not the mail user %d", p, st.Uid, uid)
		}
		return nil
	})
}

func chownTree(t *testing.T, root string, uid, gid int) {
	t.Helper()
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func groupName(t *testing.T, gid int) string {
	g, err := user.LookupGroupId(strconv.Itoa(gid))
	if err != nil {
		t.Skipf("group %d: %v", gid, err)
	}
	return g.Name
}

// containsLine reports whether one line holds every part.
func containsLine(lines []string, parts ...string) bool {
	for _, l := range lines {
		ok := true
		for _, p := range parts {
			if !strings.Contains(l, p) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
