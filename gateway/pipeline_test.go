package gateway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/reply"
	"moat/policy"
	"moat/rules"
)

func TestPipelineOrder(t *testing.T) {
	p := NewPipeline(PipelineOptions{
		Screen: func(context.Context, *Txn) error { return nil },
		Checks: &Checks{Extra: []Check{&dataCheck{name: "urls"}}},
	})
	tests := []struct {
		stage rules.Stage
		want  []string
	}{
		{rules.StageConnect, []string{"guard", "iprev"}},
		{rules.StageHelo, nil},
		{rules.StageMail, []string{"mail_policy", "spf"}},
		{rules.StageRcpt, []string{"postmaster", "address", "srs", "route", "verify"}},
		{rules.StageData, []string{"message", "dkim", "arc", "dmarc", "submission", "urls"}},
	}
	for _, tc := range tests {
		if got := p.Checks(tc.stage); !slices.Equal(got, tc.want) {
			t.Errorf("%s: checks %q, want %q", tc.stage, got, tc.want)
		}
	}
}

// dataCheck is an extra data-stage check: it counts the "http" in the
// message and contributes the "urls" fact group.
type dataCheck struct {
	name  string
	panic bool
	err   error
	calls int
}

type urlFacts struct {
	Count int      `expr:"count"`
	Hosts []string `expr:"hosts"`
}

func (c *dataCheck) Name() string { return c.name }

func (c *dataCheck) CheckData(_ context.Context, t *Txn) error {
	c.calls++
	if c.panic {
		panic("boom")
	}
	if c.err != nil {
		return c.err
	}
	t.Facts.SetGroup("urls", urlFacts{Count: strings.Count(string(t.Raw), "http"), Hosts: []string{"a.example"}})
	return nil
}

func loadRules(t *testing.T, text string, opt rules.LoadOptions) *rules.Engine {
	t.Helper()
	cfg := rules.DefaultConfig()
	if text != "" {
		p := filepath.Join(t.TempDir(), "rules.yaml")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.Paths = []string{p}
	}
	set, err := rules.Load(cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	return rules.NewEngine(set, rules.EngineOptions{})
}

func offlineSession(msg string) OfflineSession {
	return OfflineSession{
		Conn:     policy.Conn{ID: "t", HELO: "client.example"},
		Listener: Listener{Name: "mx", Mode: "mx"},
		State:    testState(),
		From:     "a@far.example", To: []string{"alice@example.org"},
		Message: []byte("From: <a@far.example>\r\nSubject: x\r\n\r\n" + msg + "\r\n"),
	}
}

func TestPipelineExtraCheck(t *testing.T) {
	const ruleText = `rules:
  - name: many-urls
    stage: data
    when: urls.count >= 2 && "a.example" in urls.hosts
    action: reject
    reply: "550 5.7.1 Too many links"
`
	groups := []rules.FactGroup{{Name: "urls", Stage: rules.StageData, Zero: urlFacts{}}}
	var mu sync.Mutex
	observed := map[string]int{}
	tests := []struct {
		name  string
		check *dataCheck
		msg   string
		want  string
	}{
		{"facts reach the rules", &dataCheck{name: "urls"}, "http://a http://b", "550 5.7.1 Too many links"},
		{"below the rule", &dataCheck{name: "urls"}, "http://a", "250 2.0.0 Ok: queued as (offline)"},
		{"a refusal is the reply", &dataCheck{name: "urls", err: reply.New(554, 7, 1, "No")}, "", "554 5.7.1 No"},
		{"an unknown error is 451 4.3.0", &dataCheck{name: "urls", err: errors.New("internal detail")}, "", "451 4.3.0"},
		{"a panic is 451 4.3.0", &dataCheck{name: "urls", panic: true}, "", "451 4.3.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checks := &Checks{
				Rules: loadRules(t, ruleText, rules.LoadOptions{FactGroups: groups}),
				Extra: []Check{tc.check},
				Observe: func(name string, _ time.Duration) {
					mu.Lock()
					observed[name]++
					mu.Unlock()
				},
			}
			res := RunOffline(context.Background(), PipelineOptions{Hostname: "mx.example.org", Checks: checks}, offlineSession(tc.msg))
			if line := fmt.Sprintf("%d %s %s", res.Final.Code, res.Final.Enhanced, res.Final.Text); !strings.HasPrefix(line, tc.want) {
				t.Errorf("final %q, want %q", line, tc.want)
			}
			if strings.Contains(res.Final.Text, "internal detail") || strings.Contains(res.Final.Text, "boom") {
				t.Errorf("internal text reaches the client: %q", res.Final.Text)
			}
			if tc.check.calls != 1 {
				t.Errorf("check ran %d times", tc.check.calls)
			}
			if res.Final.Code != 250 && res.Txn.Refusal.Check == "" {
				t.Errorf("refusal names no check: %+v", res.Txn.Refusal)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	for _, name := range []string{"iprev", "mail_policy", "spf", "postmaster", "address", "route", "verify", "message", "dkim", "dmarc", "submission", "urls"} {
		if observed[name] == 0 {
			t.Errorf("no latency observed for %s", name)
		}
	}
}

// TestPipelineHitsAcrossStages: the hits fact carries the rules matched at
// connect and rcpt into the data stage of the transaction, and not into
// the next transaction.
func TestPipelineHitsAcrossStages(t *testing.T) {
	eng := loadRules(t, `rules:
  - name: conn-seen
    stage: connect
    when: "true"
    action: log
  - name: rcpt-seen
    stage: rcpt
    when: rcpt.local == "alice"
    action: score
    score: 0.5
  - name: both
    stage: data
    when: '"conn-seen" in hits && "rcpt-seen" in hits'
    action: add_header
    header: {name: X-Both, value: "yes"}
`, rules.LoadOptions{})
	p := NewPipeline(PipelineOptions{Checks: &Checks{Rules: eng}})
	s := offlineSession("")
	txn := NewTxn(TxnOptions{Conn: s.Conn, Listener: s.Listener, State: s.State})
	ctx := context.Background()
	for _, st := range []rules.Stage{rules.StageConnect, rules.StageHelo} {
		if err := p.Run(ctx, st, txn); err != nil {
			t.Fatal(err)
		}
	}
	for round := 0; round < 2; round++ {
		txn.Reset()
		txn.Sender = "a@far.example"
		if err := p.Run(ctx, rules.StageMail, txn); err != nil {
			t.Fatal(err)
		}
		txn.Rcpt = &Rcpt{Addr: "alice@example.org"}
		if err := p.Run(ctx, rules.StageRcpt, txn); err != nil {
			t.Fatal(err)
		}
		txn.Rcpts, txn.Rcpt = append(txn.Rcpts, *txn.Rcpt), nil
		txn.Raw = s.Message
		if err := p.Run(ctx, rules.StageData, txn); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(txn.Facts.Hits, ","); got != "conn-seen,rcpt-seen,both" {
			t.Errorf("round %d: hits %q", round, got)
		}
		// X-Both, then moat's X-Spam-* fields (the score rule of the
		// rcpt stage is a test).
		if len(txn.Headers) != 3 || txn.Headers[0].Name != "X-Both" || txn.Headers[2].Value != "No, score=0.5 required=5.0 tests=rcpt-seen" {
			t.Errorf("round %d: headers %v", round, txn.Headers)
		}
	}
}
