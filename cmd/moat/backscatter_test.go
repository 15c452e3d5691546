package main

// Issue 27 item 1, backscatter: recipient verification in the shipped
// configs, a warning for relay domains without it, small notices, and no
// notice to a sender that was not verified.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"gopkg.in/yaml.v3"

	"moat/internal/dnstest"
	"moat/relay/dsn"
)

// backend is a go-smtp next hop that knows one user per domain: it
// refuses any other recipient at RCPT (550 5.1.1), as a real mail store
// does, and keeps what it accepts.
type backend struct {
	known string // the one address it accepts
	mu    sync.Mutex
	msgs  [][]byte
	rcpts int
}

func (b *backend) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return &backendSession{b: b}, nil }

func (b *backend) got() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([][]byte(nil), b.msgs...)
}

type backendSession struct{ b *backend }

func (*backendSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (s *backendSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	s.b.mu.Lock()
	s.b.rcpts++
	s.b.mu.Unlock()
	if s.b.known != "" && !strings.EqualFold(to, s.b.known) {
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user here"}
	}
	return nil
}
func (s *backendSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, b)
	s.b.mu.Unlock()
	return nil
}
func (*backendSession) Reset()        {}
func (*backendSession) Logout() error { return nil }

func startBackend(t *testing.T, known string) (*backend, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{known: known}
	srv := gosmtp.NewServer(b)
	srv.Domain = "backend.example"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return b, l.Addr().String()
}

// attackMessage is the message: 1,036 header lines from the
// attacker, then a body.
func attackMessage(from string) string {
	var b strings.Builder
	b.WriteString("From: <" + from + ">\r\nTo: <nobody@corp.example>\r\nSubject: hello\r\nMessage-ID: <attack@victim.example>\r\n")
	for i := 4; i < 1036; i++ {
		fmt.Fprintf(&b, "X-Payload-%04d: %s\r\n", i, strings.Repeat("reflect me ", 4))
	}
	b.WriteString("\r\nThe attacker's body, which must never come back.\r\n")
	return b.String()
}

// backscatterApp runs moat with corp.example relayed to a backend that
// knows only user@corp.example (verify is the route's
// verify_recipients), and a "default" route to a sink, where the
// notices to senders outside our domains go.
func backscatterApp(t *testing.T, verify string) (*app, *backend, *backend) {
	t.Helper()
	dnsSrv := dnstest.NewServer(t)
	// far.example lists us (SPF pass); victim.example has no SPF record.
	dnsSrv.Add(`far.example. 300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"`)
	corp, corpAddr := startBackend(t, "user@corp.example")
	out, outAddr := startBackend(t, "")
	path := writeConfig(t, appConfig{
		dns:   dnsSrv.Addr(),
		relay: "{corp.example: backend}",
		extra: `routes:
  backend: {type: smtp, address: "` + corpAddr + `", tls: none, verify_recipients: ` + verify + `}
  default: {type: smtp, address: "` + outAddr + `", tls: none}
queue: {retry_min: 200ms, retry_max: 1s}
`,
	})
	a, _ := runApp(t, path, testLog(t), nil)
	return a, corp, out
}

func suppressedCount(t *testing.T, a *app) float64 {
	t.Helper()
	mfs, err := a.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "moat_bounces_suppressed_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// With verify_recipients: none, mail for an unknown backend user from a
// forged (unverified) sender is accepted, refused by the backend, and
// NOT bounced: the dropped notice is counted. From a sender whose SPF
// passes, the bounce goes out, headers only, under 6 KB.
func TestBackscatterEndToEnd(t *testing.T) {
	a, corp, out := backscatterApp(t, "none")
	addr := a.gw.Addr("mx").String()

	if err := trySend(addr, "forged@victim.example", []string{"nobody@corp.example"}, attackMessage("forged@victim.example")); err != nil {
		t.Fatalf("without verification the gateway accepts: %v", err)
	}
	waitSpoolEmpty(t, a)
	if len(corp.got()) != 0 {
		t.Fatal("the backend took the message")
	}
	if n := len(out.got()); n != 0 {
		t.Fatalf("%d notice(s) sent to the forged sender: %d bytes", n, len(out.got()[0]))
	}
	if n := suppressedCount(t, a); n != 1 {
		t.Errorf("moat_bounces_suppressed_total = %v, want 1", n)
	}

	// A sender whose domain's SPF lists the client gets its bounce, small.
	if err := trySend(addr, "real@far.example", []string{"nobody@corp.example"}, attackMessage("real@far.example")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the bounce to the verified sender", func() bool { return len(out.got()) == 1 })
	notice := out.got()[0]
	if len(notice) >= 6000 {
		t.Errorf("notice is %d bytes, want under 6000", len(notice))
	}
	if bytes.Contains(notice, []byte("must never come back")) {
		t.Error("the notice carries the original body")
	}
	r, err := dsn.Parse(notice)
	if err != nil {
		t.Fatalf("notice does not parse: %v\n%s", err, notice)
	}
	if len(r.Recipients) != 1 || r.Recipients[0].Status != "5.1.1" || r.To != "<real@far.example>" || !bytes.Contains(r.Headers, []byte("Subject: hello")) {
		t.Errorf("notice %+v", r)
	}
}

// With verify_recipients: callahead (what the shipped configs say), the
// unknown user is refused at RCPT and nothing is accepted or bounced.
func TestBackscatterCallaheadRefusesAtRcpt(t *testing.T) {
	a, corp, out := backscatterApp(t, "callahead")
	addr := a.gw.Addr("mx").String()
	err := trySend(addr, "forged@victim.example", []string{"nobody@corp.example"}, attackMessage("forged@victim.example"))
	if code, enh := smtpCode(t, err); code != 550 || enh != "5.1.1" {
		t.Fatalf("RCPT of an unknown user: %d %s, want 550 5.1.1", code, enh)
	}
	if err := trySend(addr, "forged@victim.example", []string{"user@corp.example"}, attackMessage("forged@victim.example")); err != nil {
		t.Fatalf("a known user: %v", err)
	}
	waitFor(t, "delivery to the known user", func() bool { return len(corp.got()) == 1 })
	waitSpoolEmpty(t, a)
	if len(out.got()) != 0 {
		t.Error("a notice was sent")
	}
}

// The shipped configurations verify the recipients of every relay
// domain, so check-config has nothing to warn about.
func TestShippedConfigsVerifyRecipients(t *testing.T) {
	paths := []string{"../../deploy/moat.example.yaml", "../../deploy/moat.full.yaml.example"}
	for _, cm := range []string{"../../deploy/kubernetes/configmap.yaml", "../../deploy/kubernetes/fleet/configmap.yaml"} {
		b, err := os.ReadFile(cm)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Data map[string]string `yaml:"data"`
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", cm, err)
		}
		p := filepath.Join(t.TempDir(), "moat.yaml")
		if err := os.WriteFile(p, []byte(doc.Data["moat.yaml"]), 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	for _, p := range append(paths, "") { // "": the built-in default
		cfg, err := decodeConfig(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if p != "" && len(cfg.Domains.Relay) == 0 {
			t.Errorf("%s: no relay domain (the test reads the wrong file?)", p)
		}
		if w := cfg.Warnings(); len(w) != 0 {
			t.Errorf("%s: %q", p, w)
		}
		if cfg.Queue.BounceUnverifiedSenders {
			t.Errorf("%s: queue.bounce_unverified_senders is on", p)
		}
	}
}

// check-config warns (exit 0) about each relay domain without
// verification, naming the key; serve logs the same line once.
func TestCheckConfigWarnsAboutUnverifiedRelayDomains(t *testing.T) {
	path := writeFile(t, `hostname: mx.example.org
domains:
  relay: {corp.example: backend, other.example: backend, lists.example: checked}
routes:
  backend: {type: smtp, address: "127.0.0.1:25"}
  checked: {type: smtp, address: "127.0.0.1:25", verify_recipients: callahead}
`)
	root := rootCommand()
	var out, errOut strings.Builder
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"check-config", path})
	if err := root.Execute(); err != nil {
		t.Fatalf("exit: %v\n%s", err, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
	if len(lines) != 2 || !strings.Contains(out.String(), ": ok") {
		t.Fatalf("stdout %q, stderr:\n%s", out.String(), errOut.String())
	}
	for i, d := range []string{"corp.example", "other.example"} {
		if l := lines[i]; !strings.HasPrefix(l, "warning: routes.backend.verify_recipients") || !strings.Contains(l, d) {
			t.Errorf("warning %d: %q", i, l)
		}
	}

	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.Admin.Address = ""
	core, logs := observer.New(zap.WarnLevel)
	a, err := newApp(cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	a.close()
	var logged []string
	for _, e := range logs.FilterMessage("configuration").All() {
		logged = append(logged, "warning: "+e.ContextMap()["warning"].(string))
	}
	if strings.Join(logged, "\n") != strings.Join(lines, "\n") {
		t.Errorf("serve logged %q, check-config printed %q", logged, lines)
	}
}

func TestWarningsOtherCases(t *testing.T) {
	cfg, err := decodeConfig(writeFile(t, `hostname: mx.example.org
domains:
  relay: {byname.example: mx, listed.example: withlist}
routes:
  withlist: {type: mx, verify_recipients: list, recipients_file: /dev/null}
auth: {enabled: false}
`))
	if err != nil {
		t.Fatal(err)
	}
	w := cfg.Warnings()
	if len(w) != 2 || !strings.HasPrefix(w[0], "domains.relay.byname.example:") || !strings.HasPrefix(w[1], "auth.enabled: false") {
		t.Fatalf("warnings %q", w)
	}
	cfg.Queue.BounceUnverifiedSenders = true
	if w := cfg.Warnings(); len(w) != 1 {
		t.Errorf("with bounce_unverified_senders: %q", w)
	}
}
