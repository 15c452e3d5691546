package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Dovecot is a throw-away Dovecot serving only LMTP on a loopback port,
// with a passwd-file of full addresses and Maildirs under Root.
type Dovecot struct {
	Addr string // 127.0.0.1:port of the LMTP listener
	Root string // Maildirs: Root/<domain>/<local>/{new,cur,tmp}
	Log  string
}

// StartDovecot starts Dovecot for users (full addresses). Mail is stored
// as the user nobody: Dovecot refuses to deliver as root.
func StartDovecot(t testing.TB, users []string) *Dovecot {
	t.Helper()
	bin := NeedBinary(t, "/usr/sbin/dovecot")
	NeedBinary(t, "/usr/lib/dovecot/lmtp")
	if os.Geteuid() != 0 {
		t.Skip("the Dovecot interop test runs as root (Dovecot switches to the mail user)")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)

	dir := sharedTempDir(t, "moat-dovecot-")
	d := &Dovecot{
		Addr: "127.0.0.1:" + strconv.Itoa(FreePort(t)),
		Root: filepath.Join(dir, "mail"),
		Log:  filepath.Join(dir, "dovecot.log"),
	}
	for _, sub := range []string{"run", "state", "mail"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(d.Root, uid, gid); err != nil {
		t.Fatal(err)
	}
	var pw strings.Builder
	for _, u := range users {
		fmt.Fprintf(&pw, "%s:{PLAIN}unused:::::\n", u)
	}
	if err := os.WriteFile(filepath.Join(dir, "users"), []byte(pw.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(d.Addr, ":")
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
instance_name = moat-test-%[2]s
protocols = lmtp
ssl = no
listen = 127.0.0.1
log_path = %[3]s
default_internal_user = root
default_internal_group = root
default_login_user = root
mail_uid = %[4]d
mail_gid = %[5]d
first_valid_uid = %[4]d
first_valid_gid = %[5]d
mail_location = maildir:%[6]s/%%d/%%n
lmtp_save_to_detail_mailbox = no
passdb {
  driver = passwd-file
  args = %[1]s/users
}
userdb {
  driver = passwd-file
  args = %[1]s/users
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = %[2]s
  }
  unix_listener lmtp {
    mode = 0600
  }
}
`+noChroot, dir, port, d.Log, uid, gid, d.Root)
	runDovecot(t, bin, dir, conf, d.Addr, d.Log)
	return d
}

// noChroot keeps Dovecot's helper services out of chroots, which a
// private instance in a temporary directory cannot provide.
const noChroot = `service anvil {
  chroot =
}
service log {
  chroot =
}
service auth {
  chroot =
}
service stats {
  chroot =
}
`

// runDovecot writes conf into dir and runs Dovecot in the foreground
// until the test ends (SIGTERM, then SIGKILL after 10 s); it returns once
// addr accepts connections, failing the test with Dovecot's log
// otherwise.
func runDovecot(t testing.TB, bin, dir, conf, addr, logPath string) {
	t.Helper()
	confPath := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-F", "-c", confPath)
	out, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); out.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
	})
	if err := WaitPort(addr, 15*time.Second); err != nil {
		b, _ := os.ReadFile(logPath)
		o, _ := os.ReadFile(filepath.Join(dir, "stdout"))
		t.Fatalf("dovecot: %v\n%s\n%s", err, b, o)
	}
}

// New lists the files in new/ of addr's Maildir.
func (d *Dovecot) New(addr string) []string {
	local, domain, _ := strings.Cut(addr, "@")
	m, _ := filepath.Glob(filepath.Join(d.Root, domain, local, "new", "*"))
	return m
}
