package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"moat/internal/reply"
	"moat/internal/smtptest"
	"moat/policy/scanner"
	"moat/rules"
)

// fakeScanner is a scanner.Scanner whose answers the test chooses.
type fakeScanner struct {
	name  string
	scan  func(ctx context.Context, req *scanner.Request) (*scanner.Result, error)
	ping  func(ctx context.Context) error
	calls atomic.Int64
}

func (f *fakeScanner) Name() string { return f.name }

func (f *fakeScanner) Scan(ctx context.Context, req *scanner.Request) (*scanner.Result, error) {
	f.calls.Add(1)
	return f.scan(ctx, req)
}

func (f *fakeScanner) Ping(ctx context.Context) error {
	if f.ping == nil {
		return nil
	}
	return f.ping(ctx)
}

var _ scanner.Scanner = (*fakeScanner)(nil)

func answer(r scanner.Result) func(context.Context, *scanner.Request) (*scanner.Result, error) {
	return func(context.Context, *scanner.Request) (*scanner.Result, error) { c := r; return &c, nil }
}

func failWith(kind scanner.ErrorKind) func(context.Context, *scanner.Request) (*scanner.Result, error) {
	return func(context.Context, *scanner.Request) (*scanner.Result, error) {
		return nil, &scanner.Error{Scanner: "x", Kind: kind, Err: errors.New("test failure")}
	}
}

// spec is one fake scanner with its configuration.
func spec(name, typ string, f *fakeScanner, mutate ...func(*scanner.Config)) ScannerSpec {
	f.name = name
	c := scanner.Config{Name: name, Type: typ, Address: "127.0.0.1:1", Timeout: 5 * time.Second}
	for _, m := range mutate {
		m(&c)
	}
	return ScannerSpec{Config: c, Scanner: f}
}

// scanRunOffline runs the offline pipeline with the scanners and rules.
func scanRunOffline(t *testing.T, opt ScannersOptions, ruleText string, msg string) *OfflineResult {
	t.Helper()
	checks := &Checks{
		Rules:    loadRules(t, ruleText, rules.LoadOptions{FactGroups: ScannerFactGroups()}),
		Scanners: NewScanners(opt),
		Timeout:  5 * time.Second,
	}
	s := offlineSession(msg)
	return RunOffline(context.Background(), PipelineOptions{Hostname: "mx.example.org", Checks: checks}, s)
}

// TestScannerFactsReachRules: each scanner's answer is readable as
// scanner.NAME.*, a scanner that is not configured reads as zero, and the
// request carries the envelope and the message.
func TestScannerFactsReachRules(t *testing.T) {
	var got *scanner.Request
	var mu sync.Mutex
	rsp := &fakeScanner{scan: func(_ context.Context, r *scanner.Request) (*scanner.Result, error) {
		mu.Lock()
		got = r
		mu.Unlock()
		return &scanner.Result{Score: 12.5, Threshold: 15, HasScore: true, Action: "add header", Symbols: []string{"R_SPF_FAIL", "BAYES_SPAM"}}, nil
	}}
	spd := &fakeScanner{scan: answer(scanner.Result{Score: 6, Threshold: 5, Action: "spam", Symbols: []string{"BAYES_99"}})}
	clam := &fakeScanner{scan: answer(scanner.Result{Action: "clean"})}
	const ruleText = `rules:
  - name: rspamd-high
    stage: data
    when: scanner.rspamd.score > 10 && scanner.rspamd.ok && scanner.rspamd.action == "add header" && "BAYES_SPAM" in scanner.rspamd.symbols
    action: score
    score: 3
  - name: clam-clean
    stage: data
    when: scanner.clam.ok && !virus.found && virus.policy == "reject" && scanner.unknown.score == 0 && !scanner.unknown.ok
    action: score
    score: 1
  - name: spamd-bayes
    stage: data
    when: '"BAYES_99" in scanner.spamd.symbols && scanner.spamd.score >= scanner.spamd.threshold'
    action: reject
    reply: "550 5.7.1 SpamAssassin says spam"
`
	res := scanRunOffline(t, ScannersOptions{Hostname: "mx.example.org", Scanners: []ScannerSpec{
		spec("rspamd", scanner.TypeRspamd, rsp), spec("spamd", scanner.TypeSpamd, spd), spec("clam", scanner.TypeClamd, clam),
	}}, ruleText, "hello")
	if res.Final.Code != 550 || !strings.HasPrefix(res.Final.Text, "SpamAssassin says spam") {
		t.Fatalf("final %v, want the spamd rule's 550", res.Final)
	}
	if h := strings.Join(hitNames(res), ","); h != "rspamd-high,clam-clean,spamd-bayes" {
		t.Errorf("hits %s", h)
	}
	mu.Lock()
	defer mu.Unlock()
	if got == nil || got.Sender != "a@far.example" || len(got.Recipients) != 1 || got.Recipients[0] != "alice@example.org" ||
		got.HELO != "client.example" || got.Hostname != "mx.example.org" || !strings.Contains(string(got.Message), "hello") {
		t.Errorf("request %+v", got)
	}
}

// TestScannersRunInParallel: two scanners that each wait for the other
// to have started both answer: they run at the same time, not one after
// the other (counted, not timed).
func TestScannersRunInParallel(t *testing.T) {
	var running, most atomic.Int32
	both := make(chan struct{})
	var once sync.Once
	slow := func(ctx context.Context, _ *scanner.Request) (*scanner.Result, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		if n == 2 {
			once.Do(func() { close(both) })
		}
		select {
		case <-both:
			return &scanner.Result{Action: "clean"}, nil
		case <-ctx.Done():
			return nil, &scanner.Error{Kind: scanner.KindTimeout, Err: ctx.Err()}
		}
	}
	a, b := &fakeScanner{scan: slow}, &fakeScanner{scan: slow}
	res := scanRunOffline(t, ScannersOptions{Scanners: []ScannerSpec{spec("a", scanner.TypeClamd, a), spec("b", scanner.TypeClamd, b)}}, "", "x")
	if res.Final.Code != 250 {
		t.Fatalf("final %v: the scanners did not run side by side", res.Final)
	}
	if most.Load() != 2 {
		t.Errorf("at most %d scans at once, want 2", most.Load())
	}
}

// TestScannerTimeoutTempfails: a scanner that hangs is cut at its timeout
// (it sees its context end) and, with on_error tempfail, the message gets
// 451 4.7.0.
func TestScannerTimeoutTempfails(t *testing.T) {
	saw := make(chan error, 1)
	hang := &fakeScanner{scan: func(ctx context.Context, _ *scanner.Request) (*scanner.Result, error) {
		<-ctx.Done()
		saw <- ctx.Err()
		return nil, &scanner.Error{Kind: scanner.KindTimeout, Err: ctx.Err()}
	}}
	res := scanRunOffline(t, ScannersOptions{Scanners: []ScannerSpec{
		spec("rspamd", scanner.TypeRspamd, hang, func(c *scanner.Config) { c.Timeout = 20 * time.Millisecond }),
	}}, "", "x")
	if res.Final.Code != 451 || res.Final.Enhanced != (reply.Enhanced{4, 7, 0}) {
		t.Fatalf("final %v, want 451 4.7.0", res.Final)
	}
	if err := <-saw; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("scanner saw %v, want its deadline", err)
	}
	if res.Rule != "scanner:rspamd" {
		t.Errorf("rule %q", res.Rule)
	}
}

// TestScannerDownTempfailsEveryMessage: 1,000 messages through a scanner
// that is down, on_error tempfail: every one gets 451, none is spooled,
// and the failure is logged once, not once per message.
func TestScannerDownTempfailsEveryMessage(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	down := &fakeScanner{scan: failWith(scanner.KindConnect)}
	var errs atomic.Int64
	sc := NewScanners(ScannersOptions{
		Scanners: []ScannerSpec{spec("clamd", scanner.TypeClamd, down)},
		Logger:   zap.New(core),
		Error:    func(string, string) { errs.Add(1) },
	})
	ts := startServer(t, func(o *Options) { o.Checks = &Checks{Scanners: sc} })
	const conns, perConn = 10, 100
	var wg sync.WaitGroup
	var tempfailed atomic.Int64
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc := smtptest.DialRaw(t, ts.addr)
			rc.Expect("EHLO client.far.example", 250, "")
			for i := 0; i < perConn; i++ {
				rc.Expect("MAIL FROM:<a@far.example>", 250, "")
				rc.Expect("RCPT TO:<alice@example.org>", 250, "")
				rc.Expect("DATA", 354, "")
				rc.Send(fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i))
				if code, text := rc.Cmd("."); code == 451 && strings.Contains(text, " 4.7.0 ") {
					tempfailed.Add(1)
				} else {
					t.Errorf("message %d: %d %s", i, code, text)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := tempfailed.Load(); n != conns*perConn {
		t.Errorf("%d of %d tempfailed", n, conns*perConn)
	}
	if n := len(ts.spool.all()); n != 0 {
		t.Errorf("%d messages spooled, want none", n)
	}
	if n := errs.Load(); n != conns*perConn {
		t.Errorf("%d errors counted", n)
	}
	if n := logs.FilterMessage("scanner failing").Len(); n != 1 {
		t.Errorf("%d 'scanner failing' lines, want 1", n)
	}
}

// TestScannerOnErrorAccept: with on_error accept, a scanner that is down
// costs nothing; its error is a fact the rules can read.
func TestScannerOnErrorAccept(t *testing.T) {
	down := &fakeScanner{scan: failWith(scanner.KindConnect)}
	const ruleText = `rules:
  - name: rspamd-down
    stage: data
    when: scanner.rspamd.error == "connect" && !scanner.rspamd.ok
    action: add_header
    header: {name: X-Scan-Failed, value: rspamd}
`
	res := scanRunOffline(t, ScannersOptions{Scanners: []ScannerSpec{
		spec("rspamd", scanner.TypeRspamd, down, func(c *scanner.Config) { c.OnError = scanner.OnErrorAccept }),
	}}, ruleText, "x")
	if res.Final.Code != 250 || res.Action != "accept" {
		t.Fatalf("final %v %s, want accepted", res.Final, res.Action)
	}
	if h := strings.Join(hitNames(res), ","); h != "rspamd-down" {
		t.Errorf("hits %q", h)
	}
}

// TestVirusPolicy: a virus found is refused with 554 5.7.1 without any
// rule, or quarantined with virus_action quarantine; the facts name it.
func TestVirusPolicy(t *testing.T) {
	infected := func() *fakeScanner {
		return &fakeScanner{scan: answer(scanner.Result{Action: "infected", Virus: true, VirusNames: []string{"Eicar-Signature"}})}
	}
	t.Run("reject", func(t *testing.T) {
		sc := NewScanners(ScannersOptions{Scanners: []ScannerSpec{spec("clamd", scanner.TypeClamd, infected())}})
		q := &memSpool{}
		ts := startServer(t, func(o *Options) { o.Checks = &Checks{Scanners: sc, Quarantine: q} })
		code, text := sendRaw(t, ts.addr, "a@far.example", "alice@example.org", "Subject: x\r\n\r\nX5O!P%@AP\r\n")
		if code != 554 || !strings.Contains(text, " 5.7.1 ") {
			t.Fatalf("%d %s, want 554 5.7.1", code, text)
		}
		if len(ts.spool.all())+len(q.all()) != 0 {
			t.Error("a message with a virus was spooled")
		}
	})
	t.Run("quarantine", func(t *testing.T) {
		sc := NewScanners(ScannersOptions{VirusAction: VirusQuarantine, Scanners: []ScannerSpec{spec("clamd", scanner.TypeClamd, infected())}})
		q := &memSpool{}
		ts := startServer(t, func(o *Options) { o.Checks = &Checks{Scanners: sc, Quarantine: q} })
		code, text := sendRaw(t, ts.addr, "a@far.example", "alice@example.org", "Subject: x\r\n\r\nX5O!P%@AP\r\n")
		if code != 250 {
			t.Fatalf("%d %s, want 250 (quarantined)", code, text)
		}
		if len(ts.spool.all()) != 0 || len(q.all()) != 1 {
			t.Errorf("spool %d quarantine %d, want 0 and 1", len(ts.spool.all()), len(q.all()))
		}
	})
	t.Run("rule first", func(t *testing.T) {
		const ruleText = `rules:
  - name: virus
    stage: data
    when: virus.found && virus.policy == "reject" && virus.scanner == "clamd" && "Eicar-Signature" in virus.names
    action: reject
    reply: "554 5.7.1 Virus found: rule"
`
		res := scanRunOffline(t, ScannersOptions{Scanners: []ScannerSpec{spec("clamd", scanner.TypeClamd, infected())}}, ruleText, "x")
		if res.Final.Code != 554 || !strings.HasPrefix(res.Final.Text, "Virus found: rule") || res.Rule != "virus" {
			t.Fatalf("final %v rule %s", res.Final, res.Rule)
		}
	})
	t.Run("accept rule does not let it through", func(t *testing.T) {
		const ruleText = `rules:
  - name: friends
    stage: data
    when: sender.domain == "far.example"
    action: accept
`
		res := scanRunOffline(t, ScannersOptions{Scanners: []ScannerSpec{spec("clamd", scanner.TypeClamd, infected())}}, ruleText, "x")
		if res.Final.Code != 554 || res.Rule != "scanner:virus" {
			t.Fatalf("final %v rule %s, want the virus policy's 554", res.Final, res.Rule)
		}
	})
}

// TestMilterHeaderChangesSpooled: a milter's header changes are in the
// spooled message, after moat's own fields.
func TestMilterHeaderChangesSpooled(t *testing.T) {
	m := &fakeScanner{scan: answer(scanner.Result{Action: "accept", Changes: []scanner.HeaderChange{
		{Op: scanner.HeaderAdd, Name: "X-Milter", Value: "scanned"},
		{Op: scanner.HeaderReplace, Name: "Subject", Index: 1, Value: "[SPAM] x"},
		{Op: scanner.HeaderReplace, Name: "X-Drop", Index: 1},
	}})}
	sc := NewScanners(ScannersOptions{Scanners: []ScannerSpec{spec("milter", scanner.TypeMilter, m)}})
	ts := startServer(t, func(o *Options) { o.Checks = &Checks{Scanners: sc} })
	code, text := sendRaw(t, ts.addr, "a@far.example", "alice@example.org", "Subject: x\r\nX-Drop: me\r\nFrom: <a@far.example>\r\n\r\nbody\r\n")
	if code != 250 {
		t.Fatalf("%d %s", code, text)
	}
	msgs := ts.spool.all()
	if len(msgs) != 1 {
		t.Fatalf("%d spooled", len(msgs))
	}
	d := string(msgs[0].data)
	_, after, _ := strings.Cut(d, "\tid ") // past our Received field
	if !strings.HasSuffix(after, "Subject: [SPAM] x\r\nFrom: <a@far.example>\r\nX-Milter: scanned\r\n\r\nbody\r\n") || strings.Contains(d, "X-Drop") {
		t.Errorf("spooled:\n%s", d)
	}
}

// TestMilterBodyReplacementSpooled: a milter's new body is the spooled
// message's body, after the header changes; of two milters that replace
// the body, the first in scanners: order wins; a replacement that would
// make the message larger than smtp.max_message_size is not applied.
func TestMilterBodyReplacementSpooled(t *testing.T) {
	const msg = "Subject: x\r\nFrom: <a@far.example>\r\n\r\noriginal body\r\n"
	for _, tt := range []struct {
		name    string
		max     int64
		bodies  [][]byte // one milter per entry
		want    string   // the spooled body
		changes bool
	}{
		{"replaced", 0, [][]byte{[]byte("new body\r\n-- \r\ndisclaimer\r\n")}, "new body\r\n-- \r\ndisclaimer\r\n", true},
		{"emptied", 0, [][]byte{{}}, "", false},
		{"first of two wins", 0, [][]byte{[]byte("first\r\n"), []byte("second\r\n")}, "first\r\n", false},
		{"kept by one, replaced by the other", 0, [][]byte{nil, []byte("second\r\n")}, "second\r\n", false},
		{"too large for max_message_size", 400, [][]byte{[]byte(strings.Repeat("x", 500) + "\r\n")}, "original body\r\n", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var specs []ScannerSpec
			for i, b := range tt.bodies {
				res := scanner.Result{Action: "accept", Body: b}
				if tt.changes {
					res.Changes = []scanner.HeaderChange{{Op: scanner.HeaderAdd, Name: "X-Disclaimer", Value: "added"}}
				}
				specs = append(specs, spec(fmt.Sprintf("milter%d", i), scanner.TypeMilter, &fakeScanner{scan: answer(res)}))
			}
			sc := NewScanners(ScannersOptions{Scanners: specs, MaxMessageSize: tt.max})
			ts := startServer(t, func(o *Options) { o.Checks = &Checks{Scanners: sc} })
			code, text := sendRaw(t, ts.addr, "a@far.example", "alice@example.org", msg)
			if code != 250 {
				t.Fatalf("%d %s", code, text)
			}
			msgs := ts.spool.all()
			if len(msgs) != 1 {
				t.Fatalf("%d spooled", len(msgs))
			}
			d := string(msgs[0].data)
			head, body, ok := strings.Cut(d, "\r\n\r\n")
			if !ok || body != tt.want {
				t.Errorf("body %q, want %q; spooled:\n%s", body, tt.want, d)
			}
			if !strings.HasSuffix(head, "From: <a@far.example>"+map[bool]string{true: "\r\nX-Disclaimer: added", false: ""}[tt.changes]) {
				t.Errorf("header:\n%s", head)
			}
		})
	}
}

// TestScannerQueueID: a scanner is told the id the message is then
// spooled under (milter macro i, rspamd's Queue-Id), a new one for each
// message.
func TestScannerQueueID(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	m := &fakeScanner{scan: func(_ context.Context, req *scanner.Request) (*scanner.Result, error) {
		mu.Lock()
		seen = append(seen, req.QueueID)
		mu.Unlock()
		return &scanner.Result{Action: "accept"}, nil
	}}
	sc := NewScanners(ScannersOptions{Scanners: []ScannerSpec{spec("milter", scanner.TypeMilter, m)}})
	ts := startServer(t, func(o *Options) { o.Checks = &Checks{Scanners: sc} })
	for i := 0; i < 2; i++ {
		if code, text := sendRaw(t, ts.addr, "a@far.example", "alice@example.org", "Subject: x\r\n\r\nbody\r\n"); code != 250 {
			t.Fatalf("%d %s", code, text)
		}
	}
	msgs := ts.spool.all()
	mu.Lock()
	defer mu.Unlock()
	if len(msgs) != 2 || len(seen) != 2 || seen[0] == "" || seen[0] == seen[1] ||
		seen[0] != msgs[0].env.ID || seen[1] != msgs[1].env.ID {
		t.Fatalf("scanner saw ids %q, spooled %d messages", seen, len(msgs))
	}
}

// TestReplaceBody: the header is kept as it is, and a message without a
// body gets the empty line before the new one.
func TestReplaceBody(t *testing.T) {
	for _, tt := range []struct{ raw, body, want string }{
		{"A: 1\r\n\r\nold\r\n", "new\r\n", "A: 1\r\n\r\nnew\r\n"},
		{"A: 1\r\n\tfolded\r\n\r\n", "new\r\n", "A: 1\r\n\tfolded\r\n\r\nnew\r\n"},
		{"A: 1\r\n", "new\r\n", "A: 1\r\n\r\nnew\r\n"},
		{"A: 1", "new\r\n", "A: 1\r\n\r\nnew\r\n"},
		{"\r\nold", "", "\r\n"},
	} {
		raw := []byte(tt.raw)
		if got := string(ReplaceBody(raw, []byte(tt.body))); got != tt.want {
			t.Errorf("ReplaceBody(%q, %q) = %q, want %q", tt.raw, tt.body, got, tt.want)
		}
		if string(raw) != tt.raw {
			t.Errorf("raw modified: %q", raw)
		}
	}
}

// TestMilterVerdicts: a milter's reject (with its own reply or the
// default), tempfail, discard and quarantine become the verdict.
func TestMilterVerdicts(t *testing.T) {
	own := reply.New(550, 7, 0, "Go away, says the milter")
	for _, tt := range []struct {
		name   string
		res    scanner.Result
		code   int
		text   string
		action string
	}{
		{"reject own reply", scanner.Result{Action: "reject", Reply: own}, 550, own.Text, "reject"},
		{"reject default", scanner.Result{Action: "reject"}, 550, replyMilterReject.Text, "reject"},
		{"reject with a 4xx reply", scanner.Result{Action: "reject", Reply: reply.New(451, 0, 0, "odd")}, 550, replyMilterReject.Text, "reject"},
		{"tempfail", scanner.Result{Action: "tempfail"}, 451, replyMilterTempful.Text, "tempfail"},
		{"discard", scanner.Result{Action: "discard"}, 250, "", "discard"},
		{"quarantine", scanner.Result{Action: "quarantine"}, 250, "", "quarantine"},
		{"accept", scanner.Result{Action: "accept"}, 250, "", "accept"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := &fakeScanner{scan: answer(tt.res)}
			res := scanRunOffline(t, ScannersOptions{Scanners: []ScannerSpec{spec("milter", scanner.TypeMilter, m)}}, "", "x")
			if res.Final.Code != tt.code || (tt.text != "" && res.Final.Text != tt.text) || res.Action != tt.action {
				t.Fatalf("final %v action %s, want %d %q %s", res.Final, res.Action, tt.code, tt.text, tt.action)
			}
		})
	}
}

// TestScannerMaxSizeSkips: a message over max_size is not sent; the fact
// says skipped.
func TestScannerMaxSizeSkips(t *testing.T) {
	clam := &fakeScanner{scan: answer(scanner.Result{Action: "clean"})}
	const ruleText = `rules:
  - name: skipped
    stage: data
    when: scanner.clamd.skipped && !scanner.clamd.ok
    action: add_header
    header: {name: X-Not-Scanned, value: clamd}
`
	res := scanRunOffline(t, ScannersOptions{Scanners: []ScannerSpec{
		spec("clamd", scanner.TypeClamd, clam, func(c *scanner.Config) { c.MaxSize = 10 }),
	}}, ruleText, strings.Repeat("x", 100))
	if res.Final.Code != 250 || strings.Join(hitNames(res), ",") != "skipped" {
		t.Fatalf("final %v hits %v", res.Final, hitNames(res))
	}
	if n := clam.calls.Load(); n != 0 {
		t.Errorf("scanner called %d times", n)
	}
}

// TestScannerOffline: ScannersOptions.Offline skips every scanner.
func TestScannerOffline(t *testing.T) {
	clam := &fakeScanner{scan: answer(scanner.Result{Virus: true})}
	res := scanRunOffline(t, ScannersOptions{Offline: true, Scanners: []ScannerSpec{spec("clamd", scanner.TypeClamd, clam)}},
		"rules:\n  - name: s\n    stage: data\n    when: scanner.clamd.skipped\n    action: score\n    score: 1\n", "x")
	if res.Final.Code != 250 || clam.calls.Load() != 0 || len(res.Hits) != 1 {
		t.Fatalf("final %v calls %d hits %v", res.Final, clam.calls.Load(), hitNames(res))
	}
}

// TestScannerPanicIsTemporary: a client that panics costs the message
// 451 4.3.0, not the process.
func TestScannerPanicIsTemporary(t *testing.T) {
	p := &fakeScanner{scan: func(context.Context, *scanner.Request) (*scanner.Result, error) { panic("client bug") }}
	res := scanRunOffline(t, ScannersOptions{Scanners: []ScannerSpec{
		spec("rspamd", scanner.TypeRspamd, p, func(c *scanner.Config) { c.OnError = scanner.OnErrorAccept }),
	}}, "", "x")
	if res.Final.Code != 451 || res.Final.Enhanced != (reply.Enhanced{4, 3, 0}) {
		t.Fatalf("final %v, want 451 4.3.0", res.Final)
	}
}

// TestScannerStateLogging: one line per change of state (ok -> failing,
// failing -> ok), not one per message.
func TestScannerStateLogging(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	var fail atomic.Bool
	f := &fakeScanner{scan: func(ctx context.Context, r *scanner.Request) (*scanner.Result, error) {
		if fail.Load() {
			return failWith(scanner.KindIO)(ctx, r)
		}
		return &scanner.Result{Action: "clean"}, nil
	}}
	opt := ScannersOptions{Logger: zap.New(core), Scanners: []ScannerSpec{
		spec("clamd", scanner.TypeClamd, f, func(c *scanner.Config) { c.OnError = scanner.OnErrorAccept }),
	}}
	checks := &Checks{Scanners: NewScanners(opt)}
	for _, failing := range []bool{false, true, true, true, false, false, true} {
		fail.Store(failing)
		res := RunOffline(context.Background(), PipelineOptions{Checks: checks}, offlineSession("x"))
		if res.Final.Code != 250 {
			t.Fatalf("final %v", res.Final)
		}
	}
	var got []string
	for _, e := range logs.All() {
		got = append(got, e.Message)
	}
	want := "scanner failing,scanner answering again,scanner failing"
	if strings.Join(got, ",") != want {
		t.Errorf("log lines %q, want %s", got, want)
	}
}

// TestScannersReady: /readyz fails until every required scanner has
// answered a ping, and while one does not; optional ones do not count.
func TestScannersReady(t *testing.T) {
	var down atomic.Bool
	req := &fakeScanner{ping: func(context.Context) error {
		if down.Load() {
			return &scanner.Error{Kind: scanner.KindConnect, Err: errors.New("refused")}
		}
		return nil
	}}
	opt := &fakeScanner{ping: func(context.Context) error { return errors.New("always down") }}
	sc := NewScanners(ScannersOptions{Scanners: []ScannerSpec{
		spec("clamd", scanner.TypeClamd, req, func(c *scanner.Config) { c.Required = true }),
		spec("spamd", scanner.TypeSpamd, opt),
	}})
	if err := sc.Ready(context.Background()); err == nil {
		t.Fatal("ready before the first ping")
	}
	sc.pingAll(context.Background())
	if err := sc.Ready(context.Background()); err != nil {
		t.Fatalf("not ready: %v", err)
	}
	down.Store(true)
	sc.pingAll(context.Background())
	if err := sc.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "clamd") {
		t.Fatalf("ready while the required scanner is down: %v", err)
	}
	// Run stops with its context.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sc.Run(ctx); close(done) }()
	cancel()
	<-done
	var none *Scanners
	if none.Ready(context.Background()) != nil {
		t.Error("no scanners: not ready")
	}
}

// TestScannerOwnTimeout: a scan is bounded by its scanner's timeout, not
// by the authentication checks' (Checks.Timeout).
func TestScannerOwnTimeout(t *testing.T) {
	left := make(chan time.Duration, 1)
	f := &fakeScanner{scan: func(ctx context.Context, _ *scanner.Request) (*scanner.Result, error) {
		dl, _ := ctx.Deadline()
		left <- time.Until(dl)
		return &scanner.Result{Action: "clean"}, nil
	}}
	checks := &Checks{Timeout: time.Millisecond, Scanners: NewScanners(ScannersOptions{Scanners: []ScannerSpec{
		spec("clamd", scanner.TypeClamd, f, func(c *scanner.Config) { c.Timeout = time.Minute }),
	}})}
	res := RunOffline(context.Background(), PipelineOptions{Checks: checks}, offlineSession("x"))
	if res.Final.Code != 250 {
		t.Fatalf("final %v", res.Final)
	}
	if d := <-left; d < 30*time.Second {
		t.Errorf("scan had %v left, want about its own minute", d)
	}
}

// BenchmarkScannersOverhead: what running four scanners that answer at
// once adds to the data stage (goroutines, facts), against none.
func BenchmarkScannersOverhead(b *testing.B) {
	msg := offlineSession("hello")
	for _, n := range []int{0, 4} {
		b.Run(fmt.Sprintf("scanners=%d", n), func(b *testing.B) {
			var specs []ScannerSpec
			for i := 0; i < n; i++ {
				specs = append(specs, ScannerSpec{
					Config:  scanner.Config{Name: fmt.Sprintf("s%d", i), Type: scanner.TypeRspamd, Timeout: time.Second},
					Scanner: &fakeScanner{scan: answer(scanner.Result{Score: 1, Action: "no action", Symbols: []string{"A", "B"}})},
				})
			}
			checks := &Checks{Scanners: NewScanners(ScannersOptions{Scanners: specs})}
			opt := PipelineOptions{Checks: checks}
			b.ReportAllocs()
			for b.Loop() {
				if res := RunOffline(context.Background(), opt, msg); res.Final.Code != 250 {
					b.Fatal(res.Final)
				}
			}
		})
	}
}

// TestScannerRefusalPrecedence: a permanent answer (a virus, a milter's
// reject) wins over another scanner's failure, so the client is not told
// to come back for a message that will be refused.
func TestScannerRefusalPrecedence(t *testing.T) {
	down := func() *fakeScanner { return &fakeScanner{scan: failWith(scanner.KindTimeout)} }
	t.Run("virus", func(t *testing.T) {
		clam := &fakeScanner{scan: answer(scanner.Result{Virus: true, VirusNames: []string{"Eicar-Signature"}})}
		res := scanRunOffline(t, ScannersOptions{Scanners: []ScannerSpec{
			spec("rspamd", scanner.TypeRspamd, down()), spec("clamd", scanner.TypeClamd, clam),
		}}, "", "x")
		if res.Final.Code != 554 || res.Rule != "scanner:virus" {
			t.Fatalf("final %v rule %s", res.Final, res.Rule)
		}
	})
	t.Run("milter reject", func(t *testing.T) {
		m := &fakeScanner{scan: answer(scanner.Result{Action: "reject"})}
		res := scanRunOffline(t, ScannersOptions{Scanners: []ScannerSpec{
			spec("rspamd", scanner.TypeRspamd, down()), spec("milter", scanner.TypeMilter, m),
		}}, "", "x")
		if res.Final.Code != 550 || res.Rule != "scanner:milter" {
			t.Fatalf("final %v rule %s", res.Final, res.Rule)
		}
	})
	t.Run("virus quarantine waits", func(t *testing.T) {
		clam := &fakeScanner{scan: answer(scanner.Result{Virus: true})}
		res := scanRunOffline(t, ScannersOptions{VirusAction: VirusQuarantine, Scanners: []ScannerSpec{
			spec("rspamd", scanner.TypeRspamd, down()), spec("clamd", scanner.TypeClamd, clam),
		}}, "", "x")
		if res.Final.Code != 451 {
			t.Fatalf("final %v, want the failing scanner's 451", res.Final)
		}
	})
}
