package gateway

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"moat/gateway/guard"
	"moat/internal/dnsres"
	"moat/internal/dnstest"
	"moat/internal/smtptest"
	"moat/policy"
	"moat/policy/dnsbl"
	"moat/relay/route"
	"moat/relay/verify"
	"moat/rules"
)

// backendSession is a backend mail server that knows the recipients
// whose local part starts with "known" (the callahead's other end).
type backendSession struct{}

func (backendSession) Reset()        {}
func (backendSession) Logout() error { return nil }
func (backendSession) Mail(string, *smtp.MailOptions) error {
	return nil
}
func (backendSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if strings.HasPrefix(to, "known") {
		return nil
	}
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown in backend"}
}
func (backendSession) Data(r io.Reader) error { _, err := io.Copy(io.Discard, r); return err }

type backend struct{}

func (backend) NewSession(*smtp.Conn) (smtp.Session, error) { return backendSession{}, nil }

// startBackend runs the backend on 127.0.0.1:0.
func startBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := smtp.NewServer(backend{})
	s.Domain = "backend.corp.example"
	s.ReadTimeout, s.WriteTimeout = 5*time.Second, 5*time.Second
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

const parityRules = `rules:
  - name: spf-fail
    stage: mail
    when: spf.result == "fail"
    action: reject
    reply: "550 5.7.23 SPF check failed for the sender domain"
  - name: corp-rcpt
    stage: rcpt
    when: rcpt.domain == "corp.example"
    action: score
    score: 1
  - name: content
    stage: data
    when: subject == "reject me"
    action: reject
    reply: "550 5.7.1 Content refused"
  - name: meta
    stage: data
    when: '"corp-rcpt" in hits && subject == "meta"'
    action: reject
    reply: "550 5.7.1 Corp mail with that subject refused"
`

// parityEnv is one configuration, run live and offline.
type parityEnv struct {
	opt   PipelineOptions
	state *State
	addr  string // the live server
	mu    sync.Mutex
	hits  []string // rule hits the live server reported
}

func newParityEnv(t *testing.T, hostname string, dnsSrv *dnstest.Server, backendAddr string) *parityEnv {
	t.Helper()
	res, err := dnsres.New(dnsres.Config{Servers: []string{dnsSrv.Addr()}, Timeout: time.Second, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]route.Route{"backend": {Type: "smtp", Address: backendAddr, TLS: "none", VerifyRecipients: "callahead"}}
	v, err := verify.New(verify.DefaultConfig(), routes, verify.Options{Hostname: hostname, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	rcfg := route.Config{
		LocalDomains: []string{"example.org"},
		RelayDomains: map[string]string{"corp.example": "backend"},
		Routes:       routes,
	}
	state := &State{
		Router:     route.NewRouter(rcfg),
		Directory:  testDir(),
		Verifier:   v,
		Postmaster: DefaultPostmaster(rcfg),
	}
	gcfg := guard.DefaultConfig()
	gcfg.DNSBL.Zones = []dnsbl.Zone{{Zone: "bl.test"}}
	g, err := guard.New(gcfg, guard.Options{Hostname: hostname, Resolver: res})
	if err != nil {
		t.Fatal(err)
	}
	pe := &parityEnv{state: state}
	checks := func() *Checks {
		return &Checks{Resolver: res, Rules: loadRules(t, parityRules, rules.LoadOptions{}), AuthservID: hostname, Timeout: 2 * time.Second}
	}
	ts := startServer(t, func(o *Options) {
		o.Hostname = hostname
		o.State = state
		o.Checks = checks()
		o.Checks.RuleHits = func(hs []rules.Hit) {
			pe.mu.Lock()
			defer pe.mu.Unlock()
			for _, h := range hs {
				pe.hits = append(pe.hits, h.Rule)
			}
		}
		o.Wrap = func(l net.Listener, c Listener) net.Listener {
			return unwrapListener{g.Listen(l, guard.ListenerOptions{Name: c.Name})}
		}
	})
	pe.addr = ts.addr
	pe.opt = PipelineOptions{Hostname: hostname, MaxMessageSize: 64 << 10, Checks: checks(), Screen: GuardScreen(g)}
	return pe
}

type paritySession struct {
	name    string
	env     int    // which configuration
	client  string // the client's loopback address
	from    string
	to      []string
	subject string
}

func (ps paritySession) message() []byte {
	return []byte("From: <" + ps.from + ">\r\nTo: <x@example.org>\r\nSubject: " + ps.subject +
		"\r\nMessage-ID: <" + strings.ReplaceAll(ps.name, " ", "-") + "@test>\r\n\r\nHello.\r\n")
}

// normal hides what differs by nature: incident ids and queue ids.
var (
	incidentRE = regexp.MustCompile(`\[incident [A-Z0-9]{10}\]`)
	queuedRE   = regexp.MustCompile(`queued as \S+`)
)

func normal(s string) string {
	s = incidentRE.ReplaceAllString(s, "[incident X]")
	return queuedRE.ReplaceAllString(s, "queued as ID")
}

// live runs the session through the real server and returns the replies
// to MAIL, each RCPT and the end of DATA ("250" alone for an accepted
// MAIL or RCPT: go-smtp's texts for those are not ours), or the refusal
// in place of the greeting.
func (pe *parityEnv) live(t *testing.T, ps paritySession) []string {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ps.client)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", pe.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc := smtptest.NewRaw(t, c)
	code, text := rc.Reply()
	if code != 220 {
		return []string{normal(text)}
	}
	rc.Expect("EHLO client.example", 250, "")
	var out []string
	reply := func(line string) (int, string) {
		code, text := rc.Cmd(line)
		if code == 250 && !strings.HasPrefix(line, ".") {
			text = "250"
		}
		out = append(out, normal(text))
		return code, text
	}
	if code, _ := reply(fmt.Sprintf("MAIL FROM:<%s> SIZE=%d", ps.from, len(ps.message()))); code != 250 {
		return out
	}
	accepted := 0
	for _, to := range ps.to {
		if code, _ := reply("RCPT TO:<" + to + ">"); code == 250 {
			accepted++
		}
	}
	if accepted == 0 {
		return out
	}
	rc.Expect("DATA", 354, "")
	rc.Send(string(ps.message()))
	reply(".")
	rc.Cmd("QUIT")
	return out
}

// offline runs the session through the rules test's code path.
func (pe *parityEnv) offline(ps paritySession) ([]string, *OfflineResult) {
	res := RunOffline(context.Background(), pe.opt, OfflineSession{
		Conn:     policyConn(ps.client),
		Listener: Listener{Name: "mx", Mode: "mx"},
		State:    pe.state,
		From:     ps.from, To: ps.to, Message: ps.message(), DeclaredSize: int64(len(ps.message())),
	})
	var out []string
	for _, st := range res.Steps {
		switch {
		case st.Reply != nil:
			out = append(out, normal(fmt.Sprintf("%d %s %s", st.Reply.Code, st.Reply.Enhanced, st.Reply.Text)))
		case st.Stage == rules.StageMail || st.Stage == rules.StageRcpt:
			out = append(out, "250")
		}
	}
	if res.Final.Code == 250 {
		out = append(out, normal(fmt.Sprintf("%d %s %s", res.Final.Code, res.Final.Enhanced, res.Final.Text)))
	}
	return out, res
}

// TestLiveAndRulesTestAgree runs the same sessions through the live
// server (a real client on loopback, the guard with a real DNS list, a
// real backend answering the callahead) and through the offline path of
// `moat rules test`, and compares every reply and the rules that matched.
func TestLiveAndRulesTestAgree(t *testing.T) {
	dnsSrv := dnstest.NewServer(t)
	dnsSrv.Add(
		`good.example. 300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"`,
		`far.example. 300 IN TXT "v=spf1 -all"`,
		`2.0.0.127.bl.test. 300 IN A 127.0.0.2`,
	)
	backendAddr := startBackend(t)
	envs := []*parityEnv{
		newParityEnv(t, "mx.example.org", dnsSrv, backendAddr),  // postmaster@example.org is local
		newParityEnv(t, "mx.nowhere.test", dnsSrv, backendAddr), // the host name is in no local domain
	}
	sessions := []paritySession{
		{name: "clean accept", client: "127.0.0.1", from: "a@good.example", to: []string{"alice@example.org"}, subject: "hello"},
		{name: "bare postmaster", client: "127.0.0.1", from: "a@good.example", to: []string{"Postmaster"}, subject: "hi"},
		{name: "bare postmaster, none local", env: 1, client: "127.0.0.1", from: "a@good.example", to: []string{"postmaster"}, subject: "hi"},
		{name: "percent hack", client: "127.0.0.1", from: "a@good.example", to: []string{"bob%far.example@example.org"}, subject: "hi"},
		{name: "relay attempt", client: "127.0.0.1", from: "a@good.example", to: []string{"x@far.example", "alice@example.org"}, subject: "hi"},
		{name: "unknown local user", client: "127.0.0.1", from: "a@good.example", to: []string{"nobody@example.org"}, subject: "hi"},
		{name: "recipient verification", client: "127.0.0.1", from: "a@good.example", to: []string{"nobody@corp.example", "known1@corp.example"}, subject: "hi"},
		{name: "meta rule on hits", client: "127.0.0.1", from: "a@good.example", to: []string{"known2@corp.example"}, subject: "meta"},
		{name: "dnsbl listed", client: "127.0.0.2", from: "a@good.example", to: []string{"alice@example.org"}, subject: "hi"},
		{name: "spf fail rule", client: "127.0.0.1", from: "x@far.example", to: []string{"alice@example.org"}, subject: "hi"},
		{name: "data reject rule", client: "127.0.0.1", from: "a@good.example", to: []string{"alice@example.org"}, subject: "reject me"},
	}
	want := map[string]string{ // what each session must come to (the last reply)
		"clean accept":                "250 2.0.0 Ok: queued as ID",
		"bare postmaster":             "250 2.0.0 Ok: queued as ID",
		"bare postmaster, none local": "250 2.0.0 Ok: queued as ID",
		"percent hack":                `554 5.7.1 Relay access denied: "bob%far.example" is not a plain mailbox`,
		"relay attempt":               "250 2.0.0 Ok: queued as ID",
		"unknown local user":          "550 5.1.1 No such user here",
		"recipient verification":      "250 2.0.0 Ok: queued as ID",
		"meta rule on hits":           "550 5.7.1 Corp mail with that subject refused [incident X]",
		"dnsbl listed":                "550 5.7.1 mx.example.org Service unavailable; client [127.0.0.2] blocked using bl.test",
		"spf fail rule":               "550 5.7.23 SPF check failed for the sender domain [incident X]",
		"data reject rule":            "550 5.7.1 Content refused [incident X]",
	}
	for _, ps := range sessions {
		t.Run(ps.name, func(t *testing.T) {
			pe := envs[ps.env]
			pe.mu.Lock()
			pe.hits = nil
			pe.mu.Unlock()
			live := pe.live(t, ps)
			pe.mu.Lock()
			liveHits := strings.Join(pe.hits, ",")
			pe.mu.Unlock()
			off, res := pe.offline(ps)
			if strings.Join(live, "\n") != strings.Join(off, "\n") {
				t.Fatalf("replies differ\nlive:\n  %s\noffline:\n  %s", strings.Join(live, "\n  "), strings.Join(off, "\n  "))
			}
			t.Logf("replies: %q; hits %q", live, liveHits)
			var offHits []string
			for _, h := range res.Hits {
				offHits = append(offHits, h.Rule)
			}
			if liveHits != strings.Join(offHits, ",") {
				t.Errorf("rule hits differ: live %q, offline %q", liveHits, strings.Join(offHits, ","))
			}
			if got := live[len(live)-1]; got != want[ps.name] {
				t.Errorf("ends with %q, want %q", got, want[ps.name])
			}
			if accepted := res.Final.Code == 250; accepted != (res.Action == string(rules.Accept)) {
				t.Errorf("offline action %q with final reply %d", res.Action, res.Final.Code)
			}
		})
	}
}

func policyConn(ip string) (c policy.Conn) {
	c.ID = "offline"
	c.IP = netip.MustParseAddr(ip)
	c.HELO = "client.example"
	return c
}
