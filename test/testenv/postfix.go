package testenv

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// postfixServices is the rest of master.cf after the smtpd listener;
// scripts/bench.sh uses the same file.
//
//go:embed postfix-master.cf
var postfixServices string

// Postfix is a private Postfix instance (its own main.cf and master.cf in
// a temporary directory, `postfix -c DIR`) that receives mail for one
// virtual mailbox domain on a loopback port: the "existing mail server"
// moat is put in front of. Unknown users get 550 5.1.1 at RCPT
// (reject_unlisted_recipient); the original client of relayed mail may
// be told with XFORWARD from 127.0.0.0/8.
type Postfix struct {
	t       testing.TB
	Addr    string // 127.0.0.1:port of its smtpd
	Dir     string // root of the instance: etc/, spool/, data/, mail/
	Mail    string // virtual_mailbox_base: Mail/<domain>/<local>/{new,cur,tmp}
	LogPath string // maillog_file
	bin     string
	running bool
}

// StartPostfix starts a private Postfix for domain with the given local
// parts as its mailboxes. Postfix must run as root (its master does).
func StartPostfix(t testing.TB, domain string, locals []string) *Postfix {
	t.Helper()
	bin := NeedBinary(t, "/usr/sbin/postfix")
	NeedBinary(t, "/usr/lib/postfix/sbin/virtual")
	if os.Geteuid() != 0 {
		t.Skip("the private Postfix instance runs as root (its master switches to the postfix user)")
	}
	pfUser, err := user.Lookup("postfix")
	if err != nil {
		Missing(t, "no user postfix: "+err.Error()+" (run: bash scripts/peers.sh)")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	dir := sharedTempDir(t, "moat-postfix-")
	p := &Postfix{
		t:       t,
		Addr:    "127.0.0.1:" + strconv.Itoa(FreePort(t)),
		Dir:     dir,
		Mail:    filepath.Join(dir, "mail"),
		LogPath: filepath.Join(dir, "maillog"),
		bin:     bin,
	}
	for _, sub := range []string{"etc", "spool", "data", "mail"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	chown := func(path string, u *user.User) {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(path, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	chown(filepath.Join(dir, "data"), pfUser)
	chown(p.Mail, nobody)

	var users strings.Builder
	for _, l := range locals {
		// A value ending in "/" is a Maildir (virtual(8)).
		fmt.Fprintf(&users, "%s@%s %s/%s/\n", l, domain, domain, l)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "vmailbox"), []byte(users.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/spool
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.corp.test
mydomain = corp.test
myorigin = postfix.corp.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains =
virtual_mailbox_domains = %[2]s
virtual_mailbox_maps = texthash:%[1]s/etc/vmailbox
virtual_mailbox_base = %[3]s
virtual_uid_maps = static:%[4]s
virtual_gid_maps = static:%[5]s
virtual_minimum_uid = 1
mynetworks = 127.0.0.0/8
smtpd_authorized_xforward_hosts = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = reject_unlisted_recipient, permit_mynetworks, reject_unauth_destination
unknown_virtual_mailbox_reject_code = 550
smtp_dns_support_level = disabled
disable_dns_lookups = yes
smtpd_peername_lookup = no
maillog_file = %[6]s
maillog_file_prefixes = %[1]s
biff = no
`, dir, domain, p.Mail, nobody.Uid, nobody.Gid, p.LogPath)
	if err := os.WriteFile(filepath.Join(dir, "etc", "main.cf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	master := p.Addr + " inet n - n - - smtpd\n" + postfixServices
	if err := os.WriteFile(filepath.Join(dir, "etc", "master.cf"), []byte(master), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.running {
			p.ctl("stop")
			p.running = false
		}
	})
	p.Start()
	return p
}

// ctl runs `postfix -c DIR cmd` with a deadline.
func (p *Postfix) ctl(cmd string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, p.bin, "-c", filepath.Join(p.Dir, "etc"), cmd).CombinedOutput()
}

// Start starts the instance and waits for its smtpd port.
func (p *Postfix) Start() {
	p.t.Helper()
	out, err := p.ctl("start")
	if err != nil {
		p.t.Fatalf("postfix start: %v\n%s\n%s", err, out, p.Log())
	}
	p.running = true
	if err := WaitPort(p.Addr, 20*time.Second); err != nil {
		p.t.Fatalf("postfix: %v\n%s", err, p.Log())
	}
}

// Stop stops the instance and waits until its port refuses connections.
func (p *Postfix) Stop() {
	p.t.Helper()
	out, err := p.ctl("stop")
	if err != nil {
		p.t.Fatalf("postfix stop: %v\n%s", err, out)
	}
	p.running = false
	if !WaitFor(20*time.Second, func() bool { return WaitPort(p.Addr, 0) != nil }) {
		p.t.Fatalf("postfix still listens on %s after stop", p.Addr)
	}
}

// Log returns Postfix's mail log so far.
func (p *Postfix) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Delivered lists the files in new/ of addr's Maildir, sorted.
func (p *Postfix) Delivered(addr string) []string {
	local, domain, _ := strings.Cut(addr, "@")
	m, _ := filepath.Glob(filepath.Join(p.Mail, domain, local, "new", "*"))
	sort.Strings(m)
	return m
}
