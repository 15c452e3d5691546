package gateway

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"moat/gateway/guard"
	"moat/internal/smtptest"
)

// Issue 27 item 2, as the tester ran it: clients on port 25 take every
// place they can; logins on 465 must still work, and the port 25 client
// that finds no place gets 421 4.7.0, not a silent close. The listeners'
// guard options come from GuardOptions, as cmd/moat wires them.
func TestPort25CannotStarveSubmission(t *testing.T) {
	gcfg := guard.DefaultConfig()
	gcfg.MaxConnections = 4
	gcfg.SubmissionReserve = 0.5 // port 25 gets 2
	gcfg.PerIP.MaxConcurrent = 0
	gcfg.PerPrefix.MaxConcurrent = 0
	g, err := guard.New(gcfg, guard.Options{Hostname: "mx.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	tlsConf := smtptest.ServerTLS(t, "mx.example.org")
	opt := Options{
		Hostname: "mx.example.org",
		Listeners: []Listener{
			{Name: "mx", Address: "127.0.0.1:0", Mode: "mx", TLS: "none"},
			{Name: "submissions", Address: "127.0.0.1:0", Mode: "submission", TLS: "implicit"},
		},
		SMTP:   DefaultSMTP(),
		TLS:    tlsConf,
		State:  testState(),
		Spool:  &memSpool{},
		Checks: &Checks{AuthLimits: &fakeLimiter{}},
		Wrap: func(l net.Listener, c Listener) net.Listener {
			return g.Listen(l, c.GuardOptions(tlsConf))
		},
	}
	opt.State.Users = fakeUsers{"alice@example.org": "correct horse"}
	s, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[string]string{}
	for _, l := range opt.Listeners {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[l.Name] = ln.Addr().String()
		s.Serve(l, ln)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})

	// Port 25 clients take places until one is refused (bounded).
	admitted := 0
	for i := 0; i < 10; i++ {
		c, err := net.Dial("tcp", addrs["mx"])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		rc := smtptest.NewRaw(t, c)
		code, text := rc.Reply()
		if code == 220 {
			admitted++
			continue
		}
		if code != 421 || !strings.HasPrefix(text, "421 4.7.0 mx.example.org Too many connections") {
			t.Fatalf("port 25 client %d: %q", i, text)
		}
		break
	}
	if admitted != 2 {
		t.Errorf("port 25 took %d places, want 2", admitted)
	}

	// A login on 465 still works.
	c, err := gosmtp.DialTLS(addrs["submissions"], &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("465: %v", err)
	}
	defer c.Close()
	if err := c.Hello("laptop.example.org"); err != nil {
		t.Fatalf("465 EHLO: %v", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "alice@example.org", "correct horse")); err != nil {
		t.Fatalf("465 AUTH: %v", err)
	}
}

// The new keys are checked, and each error names its key.
func TestSMTPAndListenerLimitsValidate(t *testing.T) {
	if err := DefaultSMTP().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	s := DefaultSMTP()
	s.MinDataRate, s.DataTimeout = -1, -time.Second
	err := s.Validate()
	for _, key := range []string{"smtp.min_data_rate", "smtp.data_timeout"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: error %v", key, err)
		}
	}
	err = ValidateListeners([]Listener{{Name: "mx", Address: ":25", Mode: "mx", TLS: "none", MaxConnections: -1}}, false)
	if err == nil || !strings.Contains(err.Error(), "listeners[0].max_connections") {
		t.Errorf("listener cap: %v", err)
	}
	o := Listener{Name: "smtps", Mode: "submission", TLS: "implicit", MaxConnections: 7}.GuardOptions(&tls.Config{})
	if !o.Submission || !o.ImplicitTLS || o.TLS == nil || o.MaxConnections != 7 {
		t.Errorf("guard options %+v", o)
	}
}
