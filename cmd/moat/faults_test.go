package main

// Whole-app fault tests (issue "Proof under load and faults", item 3):
// the spool's disk full or read-only, the next hop down or hanging, DNS
// failing. Each runs the real app in process on loopback with a real DNS
// server (internal/dnstest). Waits are bounded; nothing asserts on time.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/miekg/dns"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"moat/internal/dnstest"
	"moat/relay/route"
	"moat/relay/smtpout"
	"moat/relay/spool"
)

// appConfig describes a test configuration; zero fields take the values
// of testConfig.
type appConfig struct {
	dataDir  string // default t.TempDir()
	dns      string // DNS server address; default a fresh dnstest server
	listener string // extra keys of the mx listener, e.g. "greet_delay: 2s"
	tls      string // the mx listener's tls mode; default none
	trusted  string // trusted_networks list; default []
	relay    string // domains.relay map; default {}
	extra    string // appended top-level keys (routes, queue, guard, ...)
}

// writeConfig writes c as a config file (outside the data directory, so
// that a full or read-only data directory does not touch it or the mail
// log) and returns its path.
func writeConfig(t testing.TB, c appConfig) string {
	t.Helper()
	side := t.TempDir()
	if c.dataDir == "" {
		c.dataDir = t.TempDir()
	}
	if c.dns == "" {
		c.dns = dnstest.NewServer(t).Addr()
	}
	if c.trusted == "" {
		c.trusted = "[]"
	}
	if c.relay == "" {
		c.relay = "{}"
	}
	if c.tls == "" {
		c.tls = "none"
	}
	listener := `{name: mx, address: "127.0.0.1:0", mode: mx, tls: ` + c.tls + `}`
	if c.listener != "" {
		listener = `{name: mx, address: "127.0.0.1:0", mode: mx, tls: ` + c.tls + `, ` + c.listener + `}`
	}
	cfg := `
hostname: mx.example.org
data_dir: ` + c.dataDir + `
log: {level: info, format: console, mail_log: "` + filepath.Join(side, "mail.log") + `"}
admin: {address: "127.0.0.1:0"}
listeners:
  - ` + listener + `
trusted_networks: ` + c.trusted + `
domains:
  local: [example.org]
  relay: ` + c.relay + `
dns:
  servers: ["` + c.dns + `"]
  timeout: 500ms
mailboxes:
  users:
    alice@example.org: {}
    bob@example.org: {}
` + c.extra
	path := filepath.Join(side, "moat.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runApp builds the app from path, lets prep adjust it before it starts
// (nil: nothing), starts it and returns it with an idempotent stop, also
// run at cleanup.
func runApp(t testing.TB, path string, log *zap.Logger, prep func(*app)) (*app, func()) {
	t.Helper()
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if prep != nil {
		prep(a)
	}
	if err := a.start(); err != nil {
		a.close()
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			a.shutdown(ctx)
		})
	}
	t.Cleanup(stop)
	return a, stop
}

func testLog(t *testing.T) *zap.Logger { return zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)) }

// trySend runs one transaction and returns the first error: an
// *gosmtp.SMTPError when the server refused a step.
func trySend(addr, from string, to []string, msg string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := gosmtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("client.far.example"); err != nil {
		return err
	}
	if err := c.SendMail(from, to, strings.NewReader(msg)); err != nil {
		return err
	}
	c.Quit()
	return nil
}

// smtpCode returns the reply code and enhanced code of err, or fails.
func smtpCode(t *testing.T, err error) (int, string) {
	t.Helper()
	var se *gosmtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("want an SMTP reply, got %v", err)
	}
	ec := se.EnhancedCode
	return se.Code, fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
}

// readyz returns the admin listener's /readyz status and body.
func readyz(t *testing.T, a *app) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + a.admin.Addr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b)
}

// waitFor polls cond (bounded) and fails with what when it never holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a loopback address with no listener, for a next hop
// the test starts later. The port is chosen below the kernel's ephemeral
// range: a port from that range can be taken, between this check and the
// test's own bind, as the source port of any outgoing connection (the
// test's clients, moat's delivery attempts): TestFaultDiskFull failed
// so in 2 of about 75 runs under load.
func freePort(t *testing.T) string {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	const from = 10000
	if low > from+100 {
		start := from + rand.IntN(low-from)
		for i := 0; i < 200; i++ {
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(from+(start-from+i)%(low-from)))
			if l, err := net.Listen("tcp", addr); err == nil {
				l.Close()
				return addr
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// sink is a go-smtp server that keeps every message it is given.
type sink struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (s *sink) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return &sinkSession{s: s}, nil }

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

type sinkSession struct{ s *sink }

func (*sinkSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (*sinkSession) Rcpt(string, *gosmtp.RcptOptions) error { return nil }
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, b)
	ss.s.mu.Unlock()
	return nil
}
func (*sinkSession) Reset()        {}
func (*sinkSession) Logout() error { return nil }

// startSink serves a sink on addr until the test ends.
func startSink(t *testing.T, addr string) *sink {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("sink on %s: %v", addr, err)
	}
	s := &sink{}
	srv := gosmtp.NewServer(s)
	srv.Domain = "backend.example"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory and returns
// it; it skips the test when not root or when mount is refused.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs (mount(2))")
	}
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("mount -t tmpfs refused (no CAP_SYS_ADMIN here?): %v", err)
	}
	// Registered before the app starts, so it runs after the app's stop.
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// mountExt4 mounts a fresh 16 MiB ext4 image (loop device,
// errors=remount-ro) on a new directory and returns it with a function
// that turns it read-only as an I/O error would. It skips when not root
// or when loop devices, mkfs.ext4 or mount are not available.
func mountExt4(t *testing.T) (string, func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount an ext4 image")
	}
	side := t.TempDir()
	img, dir := filepath.Join(side, "img"), filepath.Join(side, "data")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 16<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4: %v %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop,errors=remount-ro", img, dir).CombinedOutput(); err != nil {
		t.Skipf("mount -o loop: %v %s", err, out)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	src, err := exec.Command("findmnt", "-n", "-o", "SOURCE", dir).Output()
	if err != nil {
		t.Skipf("findmnt: %v", err)
	}
	trigger := filepath.Join("/sys/fs/ext4", filepath.Base(strings.TrimSpace(string(src))), "trigger_fs_error")
	if _, err := os.Stat(trigger); err != nil {
		t.Skipf("no %s: %v", trigger, err)
	}
	return dir, func() {
		if err := os.WriteFile(trigger, []byte("1"), 0o200); err != nil {
			t.Fatalf("trigger_fs_error: %v", err)
		}
	}
}

// fillDisk writes a file until the filesystem is full and returns its
// path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "fill")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for i := 0; i < 1<<14; i++ { // bounded: 1 GiB at most
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return path
			}
			t.Fatal(err)
		}
	}
	t.Fatal("the filesystem never filled")
	return ""
}

func relayMsg(n int) string {
	return fmt.Sprintf("From: Sender <sender@far.example>\r\nTo: user@relay.example\r\nSubject: %d\r\nMessage-ID: <%d@far.example>\r\n\r\nMessage number %d.\r\n", n, n, n)
}

// queuedEnvelopes returns the spool's envelopes by id.
func queuedEnvelopes(t *testing.T, a *app) map[string]*spool.Envelope {
	t.Helper()
	envs, err := a.spool.List()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*spool.Envelope{}
	for _, e := range envs {
		out[e.ID] = e
	}
	return out
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// The spool's disk fills: the client is told 452 4.3.1, nothing half
// written stays, and after space is freed and moat restarted the mail
// accepted before is intact and delivered, with nothing set aside.
func TestFaultDiskFull(t *testing.T) {
	dataDir := mountTmpfs(t, "2m")
	backend := freePort(t)
	path := writeConfig(t, appConfig{
		dataDir: dataDir,
		relay:   "{relay.example: backend}",
		extra: `routes: {backend: {type: smtp, address: "` + backend + `", tls: none}}
queue: {retry_min: 200ms, retry_max: 1s}
`,
	})
	a, stop := runApp(t, path, testLog(t), nil)
	addr := a.gw.Addr("mx").String()
	const before = 3
	for i := 0; i < before; i++ {
		if err := trySend(addr, "sender@far.example", []string{"user@relay.example"}, relayMsg(i)); err != nil {
			t.Fatalf("message %d before the disk filled: %v", i, err)
		}
	}
	// Keep the bytes the spool holds, to compare after the restart.
	bodies := map[string][]byte{}
	for id := range queuedEnvelopes(t, a) {
		r, err := a.spool.Open(id)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r)
		r.Close()
		bodies[id] = b
	}
	if len(bodies) != before {
		t.Fatalf("%d messages spooled, want %d", len(bodies), before)
	}

	fill := fillDisk(t, dataDir)
	// The spool keeps zeros written ahead of its records (relay/spool,
	// preallocate): messages of 4 KB fill that reserve, then one needs
	// pages the full filesystem no longer has.
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	c := gosmtp.NewClient(conn)
	if err = c.Hello("client.far.example"); err != nil {
		t.Fatal(err)
	}
	extra := 0
	for ; extra < 400 && err == nil; extra++ {
		msg := relayMsg(100+extra) + strings.Repeat(strings.Repeat("z", 78)+"\r\n", 50)
		err = c.SendMail("sender@far.example", []string{"user@relay.example"}, strings.NewReader(msg))
	}
	c.Close()
	extra-- // the refused one
	if code, ec := smtpCode(t, err); code != 452 || ec != "4.3.1" {
		t.Fatalf("disk full: got %d %s (%v), want 452 4.3.1", code, ec, err)
	}
	if code, body := readyz(t, a); code != http.StatusServiceUnavailable || !strings.Contains(body, "spool") {
		t.Errorf("/readyz with the disk full: %d %q", code, body)
	}
	if left := dirEntries(t, filepath.Join(dataDir, "spool", "tmp")); len(left) != 0 {
		t.Errorf("spool/tmp keeps %v after the refused write", left)
	}
	// Let delivery retries (backend down) meet the full disk: their
	// envelope updates use up what is left of the reserve, then fail with
	// ENOSPC, and must leave the records whole.
	time.Sleep(1500 * time.Millisecond)
	if n := len(queuedEnvelopes(t, a)); n != before+extra {
		t.Fatalf("%d messages spooled after the refused one, want %d + %d", n, before, extra)
	}

	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	stop()

	// Restart on the same data_dir with the backend up.
	sk := startSink(t, backend)
	a2, _ := runApp(t, path, testLog(t), nil)
	if bad := dirEntries(t, filepath.Join(dataDir, "spool", "corrupt")); len(bad) != 0 {
		t.Fatalf("recovery set aside %v", bad)
	}
	for id, want := range bodies {
		r, err := a2.spool.Open(id)
		if err != nil {
			if errors.Is(err, spool.ErrNotFound) {
				continue // already delivered
			}
			t.Fatal(err)
		}
		got, _ := io.ReadAll(r)
		r.Close()
		if !bytes.Equal(got, want) {
			t.Errorf("%s changed in the spool", id)
		}
	}
	waitFor(t, "the earlier messages at the backend", func() bool { return sk.count() >= before+extra })
	waitSpoolEmpty(t, a2)
	sk.mu.Lock()
	defer sk.mu.Unlock()
	for i := 0; i < before; i++ {
		found := false
		for _, m := range sk.msgs {
			found = found || bytes.Contains(m, []byte(fmt.Sprintf("Message number %d.\r\n", i)))
		}
		if !found {
			t.Errorf("message %d not delivered", i)
		}
	}
	if len(sk.msgs) != before+extra {
		t.Errorf("backend got %d messages, want %d", len(sk.msgs), before+extra)
	}
}

// The spool's filesystem turns read-only under moat (as ext4 does with
// errors=remount-ro after an I/O error): /readyz says 503 naming the
// spool and DATA is answered 451 4.3.0, never 250. The data directory is
// a small ext4 image on a loop device, made read-only with ext4's
// trigger_fs_error; files already open for writing fail too, which a
// read-only bind mount or chmod (nothing for root) would not give.
func TestFaultSpoolReadOnly(t *testing.T) {
	dataDir, breakIt := mountExt4(t)
	path := writeConfig(t, appConfig{dataDir: dataDir})
	a, _ := runApp(t, path, testLog(t), nil)
	addr := a.gw.Addr("mx").String()
	if code, body := readyz(t, a); code != http.StatusOK {
		t.Fatalf("/readyz before: %d %s", code, body)
	}
	// One message through first, so the spool has its files open.
	if err := trySend(addr, "sender@far.example", []string{"alice@example.org"}, e2eMsg); err != nil {
		t.Fatal(err)
	}
	waitMaildir(t, dataDir, "alice@example.org", 1)
	waitSpoolEmpty(t, a)

	breakIt()
	code, body := readyz(t, a)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "spool") {
		t.Errorf("/readyz with the spool read-only: %d %q, want 503 naming spool", code, body)
	}
	err := trySend(addr, "sender@far.example", []string{"alice@example.org"}, e2eMsg)
	if err == nil {
		t.Fatal("DATA accepted (250) with the spool read-only")
	}
	if c, ec := smtpCode(t, err); c != 451 || ec != "4.3.0" {
		t.Errorf("read-only spool: got %d %s (%v), want 451 4.3.0", c, ec, err)
	}
}

// The next hop refuses connections: the message is accepted, stays
// queued with the error recorded, and goes out once the hop comes up.
func TestFaultNextHopDown(t *testing.T) {
	backend := freePort(t)
	path := writeConfig(t, appConfig{
		relay: "{relay.example: backend}",
		extra: `routes: {backend: {type: smtp, address: "` + backend + `", tls: none}}
queue: {retry_min: 200ms, retry_max: 1s}
`,
	})
	a, _ := runApp(t, path, testLog(t), nil)
	if err := trySend(a.gw.Addr("mx").String(), "sender@far.example", []string{"user@relay.example"}, relayMsg(1)); err != nil {
		t.Fatalf("with the next hop down the gateway still accepts: %v", err)
	}
	var env *spool.Envelope
	waitFor(t, "a failed attempt recorded", func() bool {
		for _, e := range queuedEnvelopes(t, a) {
			if e.Attempts >= 1 && e.Recipients[0].LastError != "" {
				env = e
				return true
			}
		}
		return false
	})
	if r := env.Recipients[0]; r.Status != spool.StatusPending || !strings.Contains(r.LastError, "refused") {
		t.Errorf("recipient %+v, want pending with a connection-refused error", r)
	}
	if st := a.queue.Stats(); st.Messages != 1 || st.Recipients != 1 {
		t.Errorf("queue stats %+v", st)
	}
	sk := startSink(t, backend)
	waitFor(t, "delivery once the next hop is up", func() bool { return sk.count() == 1 })
	waitSpoolEmpty(t, a)
}

// hangingServer accepts connections and never says anything; drop
// closes the ones it holds.
type hangingServer struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startHanging(t *testing.T) *hangingServer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hangingServer{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.conns = append(h.conns, c)
			h.mu.Unlock()
		}
	}()
	t.Cleanup(func() { l.Close(); h.drop() })
	return h
}

func (h *hangingServer) accepted() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

func (h *hangingServer) drop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		c.Close()
	}
	h.conns = nil
}

// The next hop accepts and never answers. Its timeouts (relay/smtpout
// Timeouts, queue DeliveryTimeout) are not settable from the config file;
// "default timeouts" shows the attempt pending while the peer hangs and
// recorded as failed once the peer drops, and "short timeout" swaps in
// the route's transport with a 300 ms greeting timeout to show the
// timeout path itself. Either way the message stays queued and the
// gateway keeps accepting and delivering other mail.
func TestFaultNextHopHangs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		short bool
	}{
		{"default timeouts", false},
		{"short timeout", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHanging(t)
			path := writeConfig(t, appConfig{
				relay: "{relay.example: backend}",
				extra: `routes: {backend: {type: smtp, address: "` + h.l.Addr().String() + `", tls: none}}
queue: {retry_min: 200ms, retry_max: 1s}
`,
			})
			prep := func(a *app) {
				if !tc.short {
					return
				}
				r := a.routing.Load()
				raw := smtpout.NewSMTP(smtpout.Options{
					Hostname: a.cfg.Load().Hostname, Address: h.l.Addr().String(), TLS: route.TLSNone,
					Timeouts: smtpout.Timeouts{Connect: 2 * time.Second, Greeting: 300 * time.Millisecond},
				})
				r.raw["backend"].(io.Closer).Close()
				r.raw["backend"] = raw
				r.transports["backend"] = a.metrics.WrapTransport("backend", raw)
			}
			a, _ := runApp(t, path, testLog(t), prep)
			addr := a.gw.Addr("mx").String()
			if err := trySend(addr, "sender@far.example", []string{"user@relay.example"}, relayMsg(1)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the next hop to be dialled", func() bool { return h.accepted() > 0 })
			if !tc.short {
				if st := a.queue.Stats(); st.Messages != 1 {
					t.Errorf("queue stats while the hop hangs: %+v", st)
				}
			}
			// The gateway is not held up by the hanging delivery.
			if err := trySend(addr, "sender@far.example", []string{"alice@example.org"}, e2eMsg); err != nil {
				t.Fatalf("local mail while the next hop hangs: %v", err)
			}
			waitMaildir(t, a.cfg.Load().DataDir, "alice@example.org", 1)
			if !tc.short {
				h.drop()
			}
			var rc spool.Recipient
			waitFor(t, "a failed attempt recorded", func() bool {
				for _, e := range queuedEnvelopes(t, a) {
					if e.Attempts >= 1 && e.Recipients[0].LastError != "" {
						rc = e.Recipients[0]
						return true
					}
				}
				return false
			})
			if rc.Status != spool.StatusPending {
				t.Errorf("recipient %+v, want pending", rc)
			}
			if tc.short && !strings.Contains(strings.ToLower(rc.LastError), "timeout") {
				t.Errorf("last error %q does not say timeout", rc.LastError)
			}
			// Release the attempts still hanging so shutdown is quick.
			h.l.Close()
			h.drop()
		})
	}
}

// DNS failures while checking an inbound sender are temporary: 4xx,
// never 250 (a pass) and never 5xx.
func TestFaultDNSInbound(t *testing.T) {
	for _, tc := range []struct {
		name  string
		zone  []string
		fails map[string]dnstest.Failure // TXT lookups that fail
	}{
		{"spf and dmarc servfail", nil, map[string]dnstest.Failure{"far.example": dnstest.ServFail, "_dmarc.far.example": dnstest.ServFail}},
		{"spf and dmarc timeout", nil, map[string]dnstest.Failure{"far.example": dnstest.Timeout, "_dmarc.far.example": dnstest.Timeout}},
		{"dmarc servfail", []string{`far.example. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"`}, map[string]dnstest.Failure{"_dmarc.far.example": dnstest.ServFail}},
		{"dmarc timeout, spf none", nil, map[string]dnstest.Failure{"_dmarc.far.example": dnstest.Timeout}},
		{"spf servfail, dmarc p=reject", []string{`_dmarc.far.example. 300 IN TXT "v=DMARC1; p=reject"`}, map[string]dnstest.Failure{"far.example": dnstest.ServFail}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := dnstest.NewServer(t)
			srv.Add(tc.zone...)
			for name, f := range tc.fails {
				srv.Fail(name, dns.TypeTXT, f)
			}
			path := writeConfig(t, appConfig{dns: srv.Addr()})
			a, _ := runApp(t, path, testLog(t), nil)
			err := trySend(a.gw.Addr("mx").String(), "sender@far.example", []string{"alice@example.org"}, e2eMsg)
			if err == nil {
				t.Fatal("accepted (250) while the sender's DNS fails")
			}
			code, ec := smtpCode(t, err)
			if code/100 != 4 {
				t.Fatalf("got %d %s (%v), want a temporary 4xx", code, ec, err)
			}
			if n := len(queuedEnvelopes(t, a)); n != 0 {
				t.Errorf("%d messages spooled", n)
			}
		})
	}
}

// An MX lookup that fails for a trusted client's outbound message: the
// message is accepted and deferred, never bounced.
func TestFaultDNSOutboundMX(t *testing.T) {
	for _, f := range []dnstest.Failure{dnstest.ServFail, dnstest.Timeout} {
		t.Run(f.String(), func(t *testing.T) {
			srv := dnstest.NewServer(t)
			srv.Fail("remote.example", dns.TypeMX, f)
			srv.Add("remote.example. 300 IN A 127.0.0.1") // must not be used: RFC 5321 §5.1
			path := writeConfig(t, appConfig{
				dns:     srv.Addr(),
				trusted: `["127.0.0.1/32"]`,
				extra:   "queue: {retry_min: 200ms, retry_max: 1s}\n",
			})
			a, _ := runApp(t, path, testLog(t), nil)
			msg := "From: alice@example.org\r\nTo: carol@remote.example\r\nSubject: out\r\n\r\nHi.\r\n"
			if err := trySend(a.gw.Addr("mx").String(), "alice@example.org", []string{"carol@remote.example"}, msg); err != nil {
				t.Fatalf("outbound with MX lookups failing: %v", err)
			}
			var env *spool.Envelope
			waitFor(t, "two failed attempts", func() bool {
				for _, e := range queuedEnvelopes(t, a) {
					if e.Attempts >= 2 {
						env = e
						return true
					}
				}
				return false
			})
			r := env.Recipients[0]
			if r.Status != spool.StatusPending || r.Bounced || r.LastError == "" {
				t.Errorf("recipient %+v, want pending with an error, not bounced", r)
			}
			if n := len(dirEntries(t, filepath.Join(a.cfg.Load().DataDir, "mailboxes", "example.org", "alice", "new"))); n != 0 {
				t.Errorf("alice got %d notices for a DNS failure", n)
			}
		})
	}
}
