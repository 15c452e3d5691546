package testenv

// The content scanners of issue 22, from Debian's packages, offline:
// clamd on a signature database the test writes (freshclam never runs),
// clamav-milter in front of it, SpamAssassin's spamd with local tests
// only, and rspamd with its stock rules but its DNS pointed at the
// testenv DNS stub (NXDOMAIN for everything), so that the maps and
// lookups it would fetch from the internet fail at once, on loopback.

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
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

// EICAR is the anti-virus test file of EICAR (eicar.org): every scanner
// reports it as a virus, and it is harmless. It is spelled in two parts
// so that this source file is not itself flagged by a scanner.
const EICAR = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD` + `-ANTIVIRUS-TEST-FILE!$H+H*`

// GTUBE is SpamAssassin's and rspamd's test string for spam: a message
// containing it is spam whatever else it says.
const GTUBE = `XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD` + `-ANTI-UBE-TEST-EMAIL*C.34X`

// EICARSignature is the name clamd reports for EICAR with the database
// StartClamd writes (.UNOFFICIAL is clamd's suffix for a signature
// outside the official databases).
const EICARSignature = "Moat-Test-EICAR.UNOFFICIAL"

// scannerStartTimeout bounds each scanner's start-up; rspamd and spamd
// compile their rules first, slowly on a busy machine.
const scannerStartTimeout = 90 * time.Second

// daemon is one scanner process, started in its own process group so
// that Stop ends its workers too (spamd's children, rspamd's workers).
type daemon struct {
	name string
	// kill: Stop sends SIGKILL at once (a daemon without state that
	// takes seconds over SIGTERM: clamav-milter).
	kill    bool
	started time.Time
	log     string
	cmd     *exec.Cmd
	done    chan struct{}
}

// startDaemon starts bin with args, its output to dir/NAME.log, and
// registers Stop with t.Cleanup.
func startDaemon(t testing.TB, dir, name, bin string, args ...string) *daemon {
	t.Helper()
	d := &daemon{name: name, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	f, err := os.OpenFile(d.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(bin, args...)
	d.cmd.Stdout, d.cmd.Stderr = f, f
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	d.started = time.Now()
	if err := d.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("%s: %v", name, err)
	}
	go func() { d.cmd.Wait(); f.Close(); close(d.done) }()
	t.Cleanup(d.Stop)
	return d
}

// Stop sends SIGTERM to the daemon's process group, SIGKILL after 10 s,
// and waits for the process it started.
func (d *daemon) Stop() {
	if d == nil || d.cmd == nil || d.cmd.Process == nil {
		return
	}
	pgid := -d.cmd.Process.Pid
	sig := syscall.SIGTERM
	if d.kill {
		sig = syscall.SIGKILL
	}
	syscall.Kill(pgid, sig)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(pgid, syscall.SIGKILL)
		<-d.done
	}
	// Workers that outlived their parent (they should not).
	syscall.Kill(pgid, syscall.SIGKILL)
}

// exited reports whether the process has ended.
func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// tail is the end of the daemon's log, for failure messages.
func (d *daemon) tail() string {
	b, _ := os.ReadFile(d.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// waitReady polls ready every 100 ms until it returns nil, the process
// exits or scannerStartTimeout passes (it fails the test then), and
// returns the time since the process started.
func (d *daemon) waitReady(t testing.TB, ready func() error) time.Duration {
	t.Helper()
	deadline := time.Now().Add(scannerStartTimeout)
	for {
		err := ready()
		if err == nil {
			return time.Since(d.started)
		}
		if d.exited() {
			t.Fatalf("%s exited during start-up (%v)\n%s", d.name, err, d.tail())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %s: %v\n%s", d.name, scannerStartTimeout, err, d.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// exchange dials addr, writes req and reads the answer until the peer
// closes, at most 64 KiB, all within 5 s.
func exchange(addr string, req []byte) ([]byte, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(req); err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	return io.ReadAll(io.LimitReader(c, 64<<10))
}

// dropTo returns clamd's and clamav-milter's "User NAME" line and gives
// dir to that user when the test runs as root and the user exists; ""
// otherwise (the daemon keeps the test's user).
func dropTo(t testing.TB, dir, name string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		return ""
	}
	u, err := user.Lookup(name)
	if err != nil {
		return ""
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	return "User " + name + "\n"
}

// Clamd is a clamd on a loopback port with a one-signature database.
type Clamd struct {
	Addr    string // 127.0.0.1:port (clamd's TCPSocket)
	Socket  string // its unix socket (LocalSocket), the same clamd
	Dir     string // config, database and log
	Startup time.Duration
	d       *daemon
}

// StartClamd writes a database with one body signature, for EICAR
// (ClamAV's extended .ndb format, "Name:TargetType:Offset:HexSignature",
// target 0 = any file, offset * = anywhere), and starts clamd on it in
// the foreground. clamd scans a mail's decoded parts (ScanMail, on by
// default), so EICAR is found in a plain body and in a base64
// attachment alike. It is ready when it answers PING with PONG.
func StartClamd(t testing.TB) *Clamd {
	t.Helper()
	bin := NeedBinary(t, "/usr/sbin/clamd")
	dir := sharedTempDir(t, "moat-clamd-")
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o755); err != nil {
		t.Fatal(err)
	}
	sig := "Moat-Test-EICAR:0:*:" + hex.EncodeToString([]byte(EICAR)) + "\n"
	if err := os.WriteFile(filepath.Join(db, "moat-test.ndb"), []byte(sig), 0o644); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	c := &Clamd{Addr: "127.0.0.1:" + strconv.Itoa(port), Socket: filepath.Join(dir, "clamd.sock"), Dir: dir}
	conf := fmt.Sprintf(`# clamd for moat's interop tests: loopback only, no updates.
DatabaseDirectory %s
TCPAddr 127.0.0.1
TCPSocket %d
LocalSocket %s
LocalSocketMode 666
Foreground yes
LogFile %s
LogTime yes
MaxConnectionQueueLength 200
MaxThreads 8
StreamMaxLength 25M
`, db, port, c.Socket, filepath.Join(dir, "clamd.file.log"))
	// As root, clamd drops to clamav (the database is world-readable;
	// its log file is in a directory clamav owns).
	conf += dropTo(t, dir, "clamav")
	confPath := filepath.Join(dir, "clamd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	c.d = startDaemon(t, dir, "clamd", bin, "--config-file="+confPath, "--foreground")
	c.Startup = c.d.waitReady(t, c.Ping)
	return c
}

// Ping sends clamd's zPING and wants zero-terminated PONG.
func (c *Clamd) Ping() error {
	b, err := exchange(c.Addr, []byte("zPING\x00"))
	if err != nil {
		return err
	}
	if string(b) != "PONG\x00" {
		return fmt.Errorf("clamd answered %q to PING", b)
	}
	return nil
}

// Stop stops clamd (also done at the end of the test).
func (c *Clamd) Stop() { c.d.Stop() }

// Log is clamd's own log file and its output.
func (c *Clamd) Log() string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, "clamd.file.log"))
	return string(b) + c.d.tail()
}

// ClamavMilter is clamav-milter on a loopback port in front of a Clamd.
type ClamavMilter struct {
	Addr    string // 127.0.0.1:port (MilterSocket inet:port@127.0.0.1)
	Dir     string
	Startup time.Duration
	d       *daemon
}

// StartClamavMilter starts clamav-milter in the foreground asking
// clamd at clamdAddr, rejecting infected mail (OnInfected Reject with a
// RejectMsg: the milter answers SMFIR_REPLYCODE "550 5.7.1 Rejecting
// harmful e-mail: NAME found." at the end of the message) and
// accepting clean mail without adding headers (AddHeader No, so that
// the clean case shows no header changes).
func StartClamavMilter(t testing.TB, clamdAddr string) *ClamavMilter {
	t.Helper()
	bin := NeedBinary(t, "/usr/sbin/clamav-milter")
	dir := sharedTempDir(t, "moat-clamav-milter-")
	port := FreePort(t)
	m := &ClamavMilter{Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: dir}
	conf := fmt.Sprintf(`# clamav-milter for moat's interop tests.
MilterSocket inet:%d@127.0.0.1
ClamdSocket tcp:%s
Foreground yes
OnClean Accept
OnInfected Reject
OnFail Defer
AddHeader No
RejectMsg "Rejecting harmful e-mail: %%v found."
LogFile %s
LogInfected Basic
ReadTimeout 30
`, port, clamdAddr, filepath.Join(dir, "milter.file.log"))
	conf += dropTo(t, dir, "clamav")
	confPath := filepath.Join(dir, "clamav-milter.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	m.d = startDaemon(t, dir, "clamav-milter", bin, "--config-file="+confPath)
	m.d.kill = true
	m.Startup = m.d.waitReady(t, func() error { return WaitPort(m.Addr, 100*time.Millisecond) })
	return m
}

// Stop stops the milter.
func (m *ClamavMilter) Stop() { m.d.Stop() }

// Log is the milter's log file and its output.
func (m *ClamavMilter) Log() string {
	b, _ := os.ReadFile(filepath.Join(m.Dir, "milter.file.log"))
	return string(b) + m.d.tail()
}

// Spamd is SpamAssassin's spamd on a loopback port.
type Spamd struct {
	Addr    string // 127.0.0.1:port
	Dir     string
	Startup time.Duration
	d       *daemon
}

// StartSpamd starts spamd in the foreground with local tests only (-L:
// no DNS blocklists, no Razor/Pyzor), no per-user configuration (-x),
// two children, logging to its standard error. As root it runs its
// children as nobody (spamd refuses to scan as root).
func StartSpamd(t testing.TB) *Spamd {
	t.Helper()
	s := launchSpamd(t)
	s.Startup = s.d.waitReady(t, s.Ping)
	return s
}

// launchSpamd starts spamd without waiting for it.
func launchSpamd(t testing.TB) *Spamd {
	t.Helper()
	bin := NeedBinary(t, "/usr/sbin/spamd")
	dir := sharedTempDir(t, "moat-spamd-")
	port := FreePort(t)
	s := &Spamd{Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: dir}
	args := []string{"--listen", s.Addr, "-x", "-L", "--syslog", "stderr",
		"--max-children", "2", "--min-children", "1", "--allowed-ips", "127.0.0.1"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody")
	}
	s.d = startDaemon(t, dir, "spamd", bin, args...)
	return s
}

// Ping is the SPAMC PING (SPAMC/SPAMD protocol 1.5): spamd answers
// "SPAMD/1.5 0 PONG".
func (s *Spamd) Ping() error {
	b, err := exchange(s.Addr, []byte("PING SPAMC/1.5\r\n\r\n"))
	if err != nil {
		return err
	}
	if !bytes.Contains(b, []byte(" PONG")) {
		return fmt.Errorf("spamd answered %q to PING", b)
	}
	return nil
}

// Stop stops spamd and its children.
func (s *Spamd) Stop() { s.d.Stop() }

// Log is spamd's output.
func (s *Spamd) Log() string { return s.d.tail() }

// Rspamd is rspamd with a normal worker and a controller on loopback.
type Rspamd struct {
	URL        string // http://127.0.0.1:port of the normal worker (/checkv2, /ping)
	Addr       string // 127.0.0.1:port of the normal worker
	Controller string // 127.0.0.1:port of the controller
	Dir        string
	Startup    time.Duration
	d          *daemon
}

// RspamdOptions tunes StartRspamd.
type RspamdOptions struct {
	// DNS is the nameserver rspamd asks (host:port), normally the
	// testenv DNS stub: NXDOMAIN for the names rspamd looks up (its
	// remote maps, fuzzy servers, RBLs), so nothing leaves the machine
	// and nothing waits for a timeout. Empty: StartDNS(t).
	DNS string
	// Workers is the count of normal workers (default 1).
	Workers int
}

// StartRspamd starts rspamd in the foreground on Debian's stock
// configuration (/etc/rspamd/rspamd.conf, all its rules) with the
// local overrides written here: LOCAL_CONFDIR, DBDIR, RUNDIR and LOGDIR
// point into a temporary directory, the normal, controller and proxy
// workers listen on free loopback ports (the fuzzy storage worker stays
// off, as in the stock file), the remote fuzzy_check servers are off,
// DNS goes to o.DNS, logging to the console. No redis: the modules that
// need it disable themselves. As root the workers run as _rspamd.
// Ready when the normal worker answers /ping with pong.
func StartRspamd(t testing.TB, o RspamdOptions) *Rspamd {
	t.Helper()
	r := launchRspamd(t, o)
	r.Startup = r.d.waitReady(t, r.Ping)
	return r
}

// launchRspamd starts rspamd without waiting for it.
func launchRspamd(t testing.TB, o RspamdOptions) *Rspamd {
	t.Helper()
	bin := NeedBinary(t, "/usr/bin/rspamd")
	if _, err := os.Stat("/etc/rspamd/rspamd.conf"); err != nil {
		Missing(t, "rspamd's stock configuration /etc/rspamd/rspamd.conf is missing (run: bash scripts/peers.sh)")
	}
	if o.DNS == "" {
		o.DNS = StartDNS(t).Addr()
	}
	if o.Workers <= 0 {
		o.Workers = 1
	}
	dir := sharedTempDir(t, "moat-rspamd-")
	for _, sub := range []string{"local.d", "override.d", "db", "run", "log"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r := &Rspamd{Dir: dir}
	normal, controller, proxy := FreePort(t), FreePort(t), FreePort(t)
	r.Addr = "127.0.0.1:" + strconv.Itoa(normal)
	r.URL = "http://" + r.Addr
	r.Controller = "127.0.0.1:" + strconv.Itoa(controller)
	files := map[string]string{
		"override.d/worker-normal.inc":     fmt.Sprintf("bind_socket = \"127.0.0.1:%d\";\ncount = %d;\n", normal, o.Workers),
		"override.d/worker-controller.inc": fmt.Sprintf("bind_socket = \"127.0.0.1:%d\";\ncount = 1;\n", controller),
		// The proxy is not used; it must not take the stock port 11332.
		"override.d/worker-proxy.inc": fmt.Sprintf("bind_socket = \"127.0.0.1:%d\";\ncount = 1;\n", proxy),
		"override.d/logging.inc":      "type = \"console\";\nlevel = \"warning\";\n",
		"local.d/options.inc": fmt.Sprintf("dns {\n  nameserver = [%q];\n  timeout = 1s;\n  retransmits = 1;\n}\n"+
			"hs_cache_dir = %q;\n", o.DNS, rspamdCache(t)+"/"),
		// The stock fuzzy_check asks rspamd.com's servers.
		"override.d/fuzzy_check.conf": "enabled = false;\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"-f", "-c", "/etc/rspamd/rspamd.conf",
		"--var", "LOCAL_CONFDIR=" + dir,
		"--var", "DBDIR=" + filepath.Join(dir, "db"),
		"--var", "RUNDIR=" + filepath.Join(dir, "run"),
		"--var", "LOGDIR=" + filepath.Join(dir, "log")}
	if os.Geteuid() == 0 {
		if u, err := user.Lookup("_rspamd"); err == nil {
			g, gerr := user.LookupGroupId(u.Gid)
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			for _, sub := range []string{"db", "run", "log"} {
				os.Chown(filepath.Join(dir, sub), uid, gid)
			}
			group := u.Gid
			if gerr == nil {
				group = g.Name
			}
			args = append(args, "-u", u.Username, "-g", group)
		} else {
			args = append(args, "-i") // workers as root: a test machine only
		}
	}
	r.d = startDaemon(t, dir, "rspamd", bin, args...)
	return r
}

// rspamdCache is the hyperscan cache shared by every rspamd the tests
// start, in the system's temporary directory: compiling the stock rules
// and the TLD list takes rspamd 10-15 s of CPU the first time, a second
// with the cache.
func rspamdCache(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "moat-rspamd-hs-cache")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if u, err := user.Lookup("_rspamd"); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			os.Chown(dir, uid, gid)
		}
	}
	return dir
}

// Ping asks the normal worker's /ping; it answers "pong".
func (r *Rspamd) Ping() error {
	cl := &http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get(r.URL + "/ping")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != 200 || !strings.HasPrefix(strings.TrimSpace(string(b)), "pong") {
		return fmt.Errorf("rspamd /ping: %s %q", resp.Status, b)
	}
	return nil
}

// Stop stops rspamd's main process and its workers.
func (r *Rspamd) Stop() { r.d.Stop() }

// Log is rspamd's console output (warnings and errors).
func (r *Rspamd) Log() string { return r.d.tail() }

// Scanners are the four scanners of issue 22 started together.
type Scanners struct {
	Clamd  *Clamd
	Milter *ClamavMilter
	Spamd  *Spamd
	Rspamd *Rspamd
}

// StartScanners starts clamd, clamav-milter, spamd and rspamd (DNS:
// dnsAddr, or a new stub when empty). spamd and rspamd, which take
// seconds to load their rules, start first and load while the ClamAV
// pair starts.
func StartScanners(t testing.TB, dnsAddr string) *Scanners {
	t.Helper()
	s := &Scanners{}
	s.Spamd = launchSpamd(t)
	s.Rspamd = launchRspamd(t, RspamdOptions{DNS: dnsAddr})
	s.Clamd = StartClamd(t)
	s.Milter = StartClamavMilter(t, s.Clamd.Addr)
	s.Spamd.Startup = s.Spamd.d.waitReady(t, s.Spamd.Ping)
	s.Rspamd.Startup = s.Rspamd.d.waitReady(t, s.Rspamd.Ping)
	return s
}
