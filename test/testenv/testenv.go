// Package testenv starts moat and its peers as real processes on
// 127.0.0.1 for the interop and chaos tests (test/interop, test/chaos):
// the moat binary itself, Postfix's smtp-sink, a throw-away Dovecot LMTP
// server, a private Postfix instance with virtual mailboxes (postfix -c
// DIR), a redis-server that can be killed and restarted on its port
// and headless Chromium, and a DNSSEC-signed zone behind a validating
// unbound (StartDNSSEC). The in-process helpers that unit tests share
// too (the raw client, the go-smtp client, the recording sink that
// outlives moat restarts, certificates) are in internal/smtptest.
//
// Every peer listens on a free loopback port, is stopped in t.Cleanup,
// and a test whose peer binary is missing is skipped with the reason
// (scripts/peers.sh installs them). Nothing here sends traffic to any
// address outside 127.0.0.0/8.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"moat/internal/dnstest"
	"moat/internal/smtptest"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitPort waits until addr accepts a TCP connection or d passes.
func WaitPort(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %s: %w", addr, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// NeedBinary returns path when it is an executable file. Otherwise it
// skips the test, or fails it when MOAT_PEERS_REQUIRED=1 (set by the
// scripts that installed the peers: a missing peer there is a broken
// install step, not a reason to skip).
func NeedBinary(t testing.TB, path string) string {
	t.Helper()
	if st, err := os.Stat(path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		Missing(t, path+" is not installed (run: bash scripts/peers.sh)")
	}
	return path
}

// Missing skips, or fails under MOAT_PEERS_REQUIRED=1, for a missing peer.
func Missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("MOAT_PEERS_REQUIRED") == "1" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// RepoRoot is the module root: the directory holding go.mod above this file.
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("testenv: no caller information")
	}
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// MoatBinary returns $MOAT_BIN when set (the scripts build once with
// `make build`; a relative path is taken from the module root) and otherwise builds ./cmd/moat into a temporary directory.
func MoatBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("MOAT_BIN"); p != "" {
		if !filepath.IsAbs(p) {
			p = filepath.Join(RepoRoot(t), p)
		}
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("MOAT_BIN: %v", err)
		}
		return p
	}
	out := filepath.Join(t.TempDir(), "moat")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/moat")
	cmd.Dir = RepoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/moat: %v\n%s", err, b)
	}
	return out
}

// Moat is one moat process, restartable on the same configuration and
// data directory.
type Moat struct {
	t       testing.TB
	Bin     string
	Config  string // path of the YAML file
	DataDir string
	Addr    string // 127.0.0.1:port of the mx listener
	Admin   string // 127.0.0.1:port of the admin listener, "" when off
	// Submission is 127.0.0.1:port of the submission listener, "" when off.
	Submission string
	UsersFile  string // with Submission
	LogPath    string
	cmd        *exec.Cmd
	done       chan struct{}
}

// MoatOptions is what varies between the tests' moat configurations.
type MoatOptions struct {
	LocalDomain string            // e.g. "moat.test"
	Users       []string          // local mailboxes, full addresses
	Relay       map[string]string // relay domain -> route name
	Routes      map[string]string // route name -> "type address", e.g. "smtp 127.0.0.1:2525"
	// RouteExtra adds flow-mapping fields to a route, e.g.
	// "backend" -> "verify_recipients: callahead".
	RouteExtra map[string]string
	Admin      bool // listen for the admin API and status page on a free port
	// Submission adds a submission listener (STARTTLS with a self-signed
	// certificate) on a free port, users from a users_file (add them with
	// Moat.User before Start), and DKIM signing for LocalDomain.
	Submission bool
	Extra      string // appended YAML
}

// NewMoat writes a configuration for moat on a free loopback port with
// its data in a temporary directory. Start starts it.
func NewMoat(t testing.TB, bin string, o MoatOptions) *Moat {
	t.Helper()
	dir := t.TempDir()
	m := &Moat{
		t:       t,
		Bin:     bin,
		DataDir: filepath.Join(dir, "data"),
		Addr:    "127.0.0.1:" + strconv.Itoa(FreePort(t)),
		Config:  filepath.Join(dir, "moat.yaml"),
		LogPath: filepath.Join(dir, "moat.log"),
	}
	var b strings.Builder
	fmt.Fprintf(&b, "hostname: moat.test\ndata_dir: %s\n", m.DataDir)
	b.WriteString("log: {level: info, format: json}\n")
	fmt.Fprintf(&b, "listeners:\n  - {name: mx, address: %q, mode: mx, tls: none}\n", m.Addr)
	if o.Submission {
		m.Submission = "127.0.0.1:" + strconv.Itoa(FreePort(t))
		fmt.Fprintf(&b, "  - {name: submission, address: %q, mode: submission, tls: starttls, require_tls: true}\n", m.Submission)
		cert, key := smtptest.SelfSigned(t, dir, "moat.test")
		fmt.Fprintf(&b, "tls: {cert_file: %q, key_file: %q}\n", cert, key)
		m.UsersFile = filepath.Join(dir, "users")
		if err := os.WriteFile(m.UsersFile, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if o.LocalDomain != "" {
			keyFile := filepath.Join(dir, "dkim.key")
			m.run(t, "", "dkim", "keygen", "--domain", o.LocalDomain, "--selector", "test", "--out", keyFile)
			fmt.Fprintf(&b, "dkim: {sign: [{domain: %s, selector: test, key_file: %q}]}\n", o.LocalDomain, keyFile)
		}
	}
	b.WriteString("trusted_networks: []\n")
	if o.Admin {
		m.Admin = "127.0.0.1:" + strconv.Itoa(FreePort(t))
	}
	fmt.Fprintf(&b, "admin: {address: %q}\n", m.Admin)
	// The session's checks (SPF, DMARC, iprev) ask DNS: a local
	// authoritative server answers, so no query leaves the machine and no
	// check ends in a temporary error (which moat answers with 451).
	fmt.Fprintf(&b, "dns: {servers: [%q], timeout: 1s}\n", StartDNS(t).Addr())
	b.WriteString("queue: {retry_min: 1s, retry_max: 2s}\n")
	// Every test client is 127.0.0.1: the per-address and per-network
	// connection limits (0 = off) would refuse the parallel senders.
	b.WriteString("guard:\n  per_ip: {rate_per_minute: 0, burst: 0, max_concurrent: 0}\n" +
		"  per_prefix: {rate_per_minute: 0, burst: 0, max_concurrent: 0}\n")
	b.WriteString("domains:\n")
	if o.LocalDomain != "" {
		fmt.Fprintf(&b, "  local: [%s]\n", o.LocalDomain)
	} else {
		b.WriteString("  local: []\n")
	}
	b.WriteString("  relay:\n")
	for d, r := range o.Relay {
		fmt.Fprintf(&b, "    %s: %s\n", d, r)
	}
	b.WriteString("routes:\n")
	for name, spec := range o.Routes {
		typ, addr, _ := strings.Cut(spec, " ")
		extra := ""
		if e := o.RouteExtra[name]; e != "" {
			extra = ", " + e
		}
		fmt.Fprintf(&b, "  %s: {type: %s, address: %q, tls: none%s}\n", name, typ, addr, extra)
	}
	b.WriteString("mailboxes:\n")
	if m.UsersFile != "" {
		fmt.Fprintf(&b, "  users_file: %q\n", m.UsersFile)
	}
	b.WriteString("  users:\n")
	for _, u := range o.Users {
		fmt.Fprintf(&b, "    %s: {}\n", u)
	}
	b.WriteString(o.Extra)
	if err := os.WriteFile(m.Config, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return m
}

// User adds a submission user with `moat user add`, the password on
// standard input, as an operator would.
func (m *Moat) User(addr, password string) {
	m.t.Helper()
	m.run(m.t, password+"\n", "user", "add", addr, "--config", m.Config)
}

// run runs the moat binary with args and stdin, failing the test on error.
func (m *Moat) run(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(m.Bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("moat %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Start starts moat and waits until it accepts connections; it fails the
// test otherwise. Call it from the test goroutine.
func (m *Moat) Start() {
	m.t.Helper()
	if err := m.TryStart(); err != nil {
		m.t.Fatal(err)
	}
}

// TryStart is Start returning the error instead; safe from any goroutine.
func (m *Moat) TryStart() error {
	logf, err := os.OpenFile(m.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(m.Bin, "serve", "--config", m.Config)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	m.cmd, m.done = cmd, make(chan struct{})
	done := m.done
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	if err := WaitPort(m.Addr, 20*time.Second); err != nil {
		m.Kill()
		return fmt.Errorf("moat did not start: %v\n%s", err, m.LogTail(40))
	}
	return nil
}

// Running reports whether the process is alive.
func (m *Moat) Running() bool {
	if m.done == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (m *Moat) Kill() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.done
	m.cmd = nil
}

// Stop sends SIGTERM, and SIGKILL after 10 s.
func (m *Moat) Stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		m.cmd.Process.Signal(syscall.SIGKILL)
		<-m.done
	}
	m.cmd = nil
}

// Queue runs `moat queue ARGS... --config` (list, flush ...) against the
// running daemon's admin API (NewMoat with Admin) and returns its output.
func (m *Moat) Queue(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args = append(append([]string{"queue"}, args...), "--config", m.Config)
	out, err := exec.CommandContext(ctx, m.Bin, args...).CombinedOutput()
	return string(out), err
}

// PID is the process id of the running moat, 0 when none.
func (m *Moat) PID() int {
	if m.cmd == nil || m.cmd.Process == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// LogTail returns the last n lines moat wrote.
func (m *Moat) LogTail(n int) string {
	b, _ := os.ReadFile(m.LogPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// MaildirNew lists the files in <data_dir>/mailboxes/<domain>/<local>/new.
func (m *Moat) MaildirNew(addr string) []string {
	local, domain, _ := strings.Cut(addr, "@")
	matches, _ := filepath.Glob(filepath.Join(m.DataDir, "mailboxes", domain, local, "new", "*"))
	return matches
}

// SmtpSink is Postfix's smtp-sink counting what it receives.
type SmtpSink struct {
	Addr string
	out  string
	cmd  *exec.Cmd
}

// StartSmtpSink starts /usr/sbin/smtp-sink -c on a free port; extra are
// more flags (e.g. "-L" for LMTP).
func StartSmtpSink(t testing.TB, extra ...string) *SmtpSink {
	t.Helper()
	bin := NeedBinary(t, "/usr/sbin/smtp-sink")
	s := &SmtpSink{Addr: "127.0.0.1:" + strconv.Itoa(FreePort(t)), out: filepath.Join(t.TempDir(), "sink.out")}
	f, err := os.Create(s.out)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-c"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody") // smtp-sink refuses to run as root
	}
	args = append(args, extra...)
	args = append(args, s.Addr, "256")
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = f, f
	if err := s.cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.cmd.Wait(); f.Close(); close(done) }()
	t.Cleanup(func() { s.cmd.Process.Signal(syscall.SIGTERM); <-done })
	if err := WaitPort(s.Addr, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return s
}

// Messages is smtp-sink's count of messages received ("mesg=" of -c).
func (s *SmtpSink) Messages() int {
	b, _ := os.ReadFile(s.out)
	return LastCounter(b, "mesg=")
}

// LastCounter returns the number after the last occurrence of key in
// smtp-sink's -c output, 0 when there is none.
func LastCounter(out []byte, key string) int {
	i := bytes.LastIndex(out, []byte(key))
	if i < 0 {
		return 0
	}
	rest := out[i+len(key):]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	n, _ := strconv.Atoi(string(rest[:j]))
	return n
}

// StartDNS starts an authoritative DNS server on 127.0.0.1 that knows the
// loopback client (PTR 127.0.0.1 -> client.test, client.test A 127.0.0.1)
// and answers NXDOMAIN for every other name: no SPF, no DMARC record.
func StartDNS(t testing.TB) *dnstest.Server {
	t.Helper()
	srv := dnstest.NewServer(t)
	srv.Add("1.0.0.127.in-addr.arpa. 300 IN PTR client.test.",
		"client.test. 300 IN A 127.0.0.1")
	return srv
}

// WaitFor polls cond every 50 ms until it holds or d passes.
func WaitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// sharedTempDir makes a temporary directory, removed at the end of the
// test, that every user can traverse, for peers that drop privileges
// (Postfix, Dovecot): t.TempDir is 0700 and owned by root.
func sharedTempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
