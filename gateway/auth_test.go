package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"moat/internal/dnstest"
	"moat/internal/mailname"
	"moat/internal/reply"
	"moat/internal/smtptest"
	"moat/policy"
	"moat/policy/dkim"
	"moat/policy/dkimsign"
)

type fakeUsers map[string]string // user -> password

func (f fakeUsers) LoginName(u string) (string, bool) {
	u = mailname.Fold(u)
	return u, strings.Contains(u, "@")
}
func (f fakeUsers) Authenticate(u, p string) (bool, error) { pw, ok := f[u]; return ok && pw == p, nil }
func (f fakeUsers) SendAs(u string) []string {
	if u == "alice@example.org" {
		return []string{"alice@example.org", "sales@example.org"}
	}
	return []string{u}
}

type fakeLimiter struct {
	mu       sync.Mutex
	failures int
	locked   bool
	msgs     int
	maxMsgs  int
}

func (l *fakeLimiter) BeforeAuth(netip.Addr, string) (time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.locked {
		return 0, reply.New(454, 7, 0, "Too many failures, try later")
	}
	return 0, nil
}
func (l *fakeLimiter) AuthFailed(netip.Addr, string)    { l.mu.Lock(); l.failures++; l.mu.Unlock() }
func (l *fakeLimiter) AuthSucceeded(netip.Addr, string) {}
func (l *fakeLimiter) AllowMessage(string, int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs++
	if l.maxMsgs > 0 && l.msgs > l.maxMsgs {
		return reply.New(450, 7, 1, "Sending rate exceeded")
	}
	return nil
}

func startSubmission(t *testing.T, lim *fakeLimiter) *testServer {
	return startServer(t, func(o *Options) {
		o.Listeners = []Listener{{Name: "sub", Address: "127.0.0.1:0", Mode: "submission", TLS: "starttls"}}
		o.TLS = smtptest.ServerTLS(t, "mx.example.org")
		o.State.Users = fakeUsers{"alice@example.org": "correct horse"}
		o.Checks = &Checks{AuthLimits: lim}
	})
}

func dialTLS(t *testing.T, addr string) *gosmtp.Client {
	t.Helper()
	c, err := gosmtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestSubmissionNeedsTLSAndAuth(t *testing.T) {
	ts := startSubmission(t, &fakeLimiter{})
	rc := smtptest.DialRaw(t, ts.addr)
	text := rc.Expect("EHLO laptop.example.org", 250, "STARTTLS")
	if strings.Contains(text, "AUTH") {
		t.Fatalf("AUTH advertised before TLS:\n%s", text)
	}
	rc.Expect("AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAGNvcnJlY3QgaG9yc2U=", 523, "5.7.10")
	rc.Expect("MAIL FROM:<alice@example.org>", 530, "5.7.0")
}

func TestSubmissionWrongPasswordCounted(t *testing.T) {
	lim := &fakeLimiter{}
	ts := startSubmission(t, lim)
	c := dialTLS(t, ts.addr)
	if ok, mechs := c.Extension("AUTH"); !ok || !strings.Contains(mechs, "PLAIN") || !strings.Contains(mechs, "LOGIN") {
		t.Fatalf("AUTH after TLS: %v %q", ok, mechs)
	}
	err := c.Auth(sasl.NewPlainClient("", "alice@example.org", "wrong"))
	var se *gosmtp.SMTPError
	if !asSMTP(err, &se) || se.Code != 535 {
		t.Fatalf("wrong password: %v", err)
	}
	if lim.failures != 1 {
		t.Fatalf("failures counted: %d", lim.failures)
	}
	lim.locked = true
	err = c.Auth(sasl.NewPlainClient("", "alice@example.org", "correct horse"))
	if !asSMTP(err, &se) || se.Code != 454 {
		t.Fatalf("locked out: %v", err)
	}
}

func isReply(err error, code int, enh string) bool {
	var se *gosmtp.SMTPError
	if !asSMTP(err, &se) {
		return false
	}
	e := se.EnhancedCode
	return se.Code == code && fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2]) == enh
}

func asSMTP(err error, se **gosmtp.SMTPError) bool {
	e, ok := err.(*gosmtp.SMTPError)
	*se = e
	return ok
}

func TestSubmissionSenderOwnership(t *testing.T) {
	ts := startSubmission(t, &fakeLimiter{})
	c := dialTLS(t, ts.addr)
	if err := c.Auth(sasl.NewLoginClient("alice@example.org", "correct horse")); err != nil {
		t.Fatalf("LOGIN: %v", err)
	}
	if err := c.Mail("bob@example.org", nil); !isReply(err, 550, "5.7.1") {
		t.Fatalf("MAIL as bob: %v", err)
	}
	// An alias of alice's is hers to send as; any destination is fine.
	send := func(from, header string) error {
		if err := c.Mail(from, nil); err != nil {
			return err
		}
		if err := c.Rcpt("friend@far.example", nil); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		w.Write([]byte("From: " + header + "\r\nTo: friend@far.example\r\nSubject: s\r\n\r\nhi\r\n"))
		return w.Close()
	}
	if err := send("sales@example.org", "Bob <bob@example.org>"); !isReply(err, 550, "5.7.1") {
		t.Fatalf("From: bob accepted: %v", err)
	}
	if err := send("sales@example.org", "Sales <sales@example.org>"); err != nil {
		t.Fatalf("good message: %v", err)
	}
	msgs := ts.spool.all()
	if len(msgs) != 1 || msgs[0].env.Recipients[0].Route != "mx" || !strings.Contains(string(msgs[0].data), "with ESMTPSA") {
		t.Fatalf("spooled %+v", msgs)
	}
}

func TestSubmissionRateLimit(t *testing.T) {
	lim := &fakeLimiter{maxMsgs: 1}
	ts := startSubmission(t, lim)
	c := dialTLS(t, ts.addr)
	if err := c.Auth(sasl.NewPlainClient("", "alice@example.org", "correct horse")); err != nil {
		t.Fatal(err)
	}
	msg := "From: alice@example.org\r\nSubject: s\r\n\r\nhi\r\n"
	if err := c.SendMail("alice@example.org", []string{"x@far.example"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	err := c.SendMail("alice@example.org", []string{"x@far.example"}, strings.NewReader(msg))
	if !isReply(err, 450, "4.7.1") {
		t.Fatalf("second message: %v", err)
	}
}

func TestNoAuthOnMXListener(t *testing.T) {
	ts := startServer(t, func(o *Options) {
		o.Listeners[0].TLS = "starttls"
		o.TLS = smtptest.ServerTLS(t, "mx.example.org")
		o.State.Users = fakeUsers{"alice@example.org": "pw"}
	})
	c := dialTLS(t, ts.addr)
	if ok, _ := c.Extension("AUTH"); ok {
		t.Fatal("AUTH offered on an mx listener")
	}
}

// A message submitted by an authenticated user leaves DKIM-signed for the
// user's domain, and the signature verifies with moat's own verifier
// against the published public key.
func TestSubmissionIsDKIMSigned(t *testing.T) {
	dnsSrv := dnstest.NewServer(t)
	priv, txt, err := dkimsign.GenerateKey("rsa-2048")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "k.pem")
	if err := os.WriteFile(keyFile, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := dkimsign.NewSigner([]dkimsign.Key{{Domain: "example.org", Selector: "sub", KeyFile: keyFile}})
	if err != nil {
		t.Fatal(err)
	}
	dnsSrv.Add(`sub._domainkey.example.org. 300 IN TXT "` + txt + `"`)
	ts := startServer(t, func(o *Options) {
		o.Listeners = []Listener{{Name: "sub", Address: "127.0.0.1:0", Mode: "submission", TLS: "starttls"}}
		o.TLS = smtptest.ServerTLS(t, "mx.example.org")
		o.State.Users = fakeUsers{"alice@example.org": "correct horse"}
		o.Checks = &Checks{Signer: signer, AuthLimits: &fakeLimiter{}}
	})
	c := dialTLS(t, ts.addr)
	if err := c.Auth(sasl.NewPlainClient("", "alice@example.org", "correct horse")); err != nil {
		t.Fatal(err)
	}
	msg := "From: Alice <alice@example.org>\r\nTo: friend@far.example\r\nSubject: signed\r\n\r\nHello.\r\n"
	if err := c.SendMail("alice@example.org", []string{"friend@far.example"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	data := ts.spool.all()[0].data
	res := dkim.Verify(context.Background(), dnsresFor(t, dnsSrv), bytes.NewReader(data), dkim.Options{})
	if res.Result != policy.ResultPass || len(res.Signatures) != 1 || res.Signatures[0].Domain != "example.org" ||
		res.Signatures[0].Selector != "sub" || res.Signatures[0].Algorithm != "rsa-sha256" {
		t.Fatalf("signature: %+v\n%s", res, data)
	}
}
