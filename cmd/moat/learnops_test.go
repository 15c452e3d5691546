package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"moat/gateway"
	"moat/internal/reply"
	"moat/policy/bayes"
	"moat/policy/content"
	"moat/relay/quarantine"
	"moat/relay/spool"
	"moat/rules"
)

// trapConfig is testConfig with trap@example.org as a local mailbox and
// a spam trap, the classifier on.
func trapConfig(t *testing.T, extra string) (string, string) {
	t.Helper()
	path, dir := testConfig(t, `
bayes:
  enabled: true
  min_spam: 1
  min_ham: 1
  learn:
    spam_traps: [Trap@example.org]
    junk_scan_interval: 0s
`+extra)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "    bob@example.org: {}\n", "    bob@example.org: {}\n    trap@example.org: {}\n", 1)
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, dir
}

// waitLearned waits (bounded) until the store holds spam and ham
// messages.
func waitLearned(t *testing.T, a *app, spam, ham int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		tot, err := a.content.store.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if tot.Spam == spam && tot.Ham == ham {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("store holds %d spam %d ham, want %d and %d", tot.Spam, tot.Ham, spam, ham)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEndToEndSpamTrap(t *testing.T) {
	path, dataDir := trapConfig(t, "")
	a := startApp(t, path)
	addr := a.gw.Addr("mx").String()
	// To the trap alone: accepted, learned as spam, not delivered.
	send(t, addr, "spammer@far.example", []string{"trap@example.org"}, "Message-ID: <t1@far.example>\r\nSubject: cheap pills\r\n\r\nbuy now\r\n")
	waitLearned(t, a, 1, 0)
	// To the trap and alice: learned, delivered to alice only.
	send(t, addr, "spammer@far.example", []string{"trap@example.org", "alice@example.org"}, "Message-ID: <t2@far.example>\r\nSubject: cheap pills\r\n\r\nbuy more\r\n")
	waitMaildir(t, dataDir, "alice@example.org", 1)
	waitLearned(t, a, 2, 0)
	waitSpoolEmpty(t, a)
	// The trap's mailbox holds the mixed message only (samples for the
	// operator); the one to the trap alone was discarded.
	if ents, _ := os.ReadDir(filepath.Join(dataDir, "mailboxes", "example.org", "trap", "new")); len(ents) != 1 {
		t.Fatalf("the trap received %d messages, want 1", len(ents))
	}

	// A release through the daemon's hook is learned as ham.
	q := quarantine.New(a.quarantine, a.spool, a.queue.Notify)
	q.OnRelease(a.learn.released(), 0)
	env := &spool.Envelope{ID: a.quarantine.NewID(), Sender: "friend@far.example",
		Recipients: []spool.Recipient{{Address: "alice@example.org", Route: "local", Status: spool.StatusPending}}, Received: time.Now()}
	if err := a.quarantine.Put(context.Background(), env, strings.NewReader("Message-ID: <q1@far.example>\r\nSubject: minutes\r\n\r\nthe minutes of the meeting\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Release(context.Background(), env.ID); err != nil {
		t.Fatal(err)
	}
	waitLearned(t, a, 2, 1)
}

func TestSpamTrapOutsideOurDomainsRefused(t *testing.T) {
	path, _ := testConfig(t, "bayes: {enabled: true, learn: {spam_traps: [trap@far.example, \"not an address\"]}}\n")
	_, err := loadConfig(path)
	if err == nil || !strings.Contains(err.Error(), `bayes.learn.spam_traps[0]: "trap@far.example" is in no local or relay domain`) ||
		!strings.Contains(err.Error(), "bayes.learn.spam_traps[1]") {
		t.Fatalf("config error: %v", err)
	}
}

func TestAutolearnClass(t *testing.T) {
	m, err := content.Parse([]byte("Message-ID: <a@x>\r\nSubject: s\r\n\r\nbody\r\n"), content.Options{})
	if err != nil {
		t.Fatal(err)
	}
	on := bayes.DefaultConfig().Autolearn
	on.Enabled = true
	bayesHit := rules.Hit{Rule: "bayes_high", Action: rules.Score, Note: "+4", Facts: map[string]any{"bayes.probability": 0.99}}
	otherHit := rules.Hit{Rule: "bad_helo", Action: rules.Score, Note: "+9", Facts: map[string]any{"helo": "x"}}
	traps := map[string]bool{"trap@example.org": true}
	for _, tc := range []struct {
		name    string
		cfg     bayes.AutolearnConfig
		score   float64
		hits    []rules.Hit
		action  rules.Action
		refusal error
		trusted bool
		rcpt    string
		discard bool
		want    bayes.Class
	}{
		{name: "off", cfg: bayes.DefaultConfig().Autolearn, score: 20, want: bayes.ClassNone},
		{name: "clear spam", cfg: on, score: 13, hits: []rules.Hit{otherHit}, want: bayes.ClassSpam},
		{name: "spam only by the classifier's own rule", cfg: on, score: 13, hits: []rules.Hit{bayesHit, otherHit}, want: bayes.ClassNone},
		{name: "rejected spam", cfg: on, score: 16, action: rules.Reject, refusal: reply.TempLocal, want: bayes.ClassSpam},
		{name: "greylisted", cfg: on, score: 16, action: rules.Greylist, refusal: reply.TempLocal, want: bayes.ClassNone},
		{name: "clear ham", cfg: on, score: 0, want: bayes.ClassHam},
		{name: "ham discarded", cfg: on, score: 0, discard: true, want: bayes.ClassNone},
		{name: "unsure", cfg: on, score: 5, want: bayes.ClassNone},
		{name: "our own user", cfg: on, score: 0, trusted: true, want: bayes.ClassNone},
		{name: "to a trap", cfg: on, score: 0, rcpt: "Trap@example.org", want: bayes.ClassNone},
	} {
		tx := gateway.NewTxn(gateway.TxnOptions{Logger: zap.NewNop()})
		tx.Facts.Conn.Trusted = tc.trusted
		tx.Facts.Message = m
		tx.Score, tx.Discard = tc.score, tc.discard
		tx.Verdict = rules.Verdict{Action: tc.action, Explain: tc.hits}
		rc := tc.rcpt
		if rc == "" {
			rc = "alice@example.org"
		}
		tx.Rcpts = []gateway.Rcpt{{Addr: rc, Route: "local"}}
		if got := autolearnClass(tc.cfg, traps, tx, tc.refusal); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestOfflineReleaseLearnsHam(t *testing.T) {
	path, dataDir := trapConfig(t, "")
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	var notes strings.Builder
	fn, closeStore := offlineReleased(cfg, &notes)
	fn(context.Background(), &spool.Envelope{ID: "x"}, []byte("Message-ID: <r@x>\r\nSubject: hi\r\n\r\nhello\r\n"))
	closeStore()
	s, err := bayes.OpenBolt(filepath.Join(dataDir, "bayes.db"), bayes.BoltOptions{LockTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tot, err := s.Stats(context.Background())
	if err != nil || tot.Ham != 1 {
		t.Fatalf("store: %+v %v; notes: %s", tot, err, notes.String())
	}
	// Off: no hook.
	cfg.Bayes.Learn.ReleasedAsHam = false
	if fn, _ := offlineReleased(cfg, &notes); fn != nil {
		t.Fatal("hook although released_as_ham is off")
	}
}

func TestEndToEndJunkFolder(t *testing.T) {
	path, dataDir := trapConfig(t, "")
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), "junk_scan_interval: 0s", "junk_scan_interval: 1s", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startApp(t, path)
	send(t, a.gw.Addr("mx").String(), "sender@far.example", []string{"alice@example.org"}, e2eMsg)
	waitMaildir(t, dataDir, "alice@example.org", 1)
	mb := filepath.Join(dataDir, "mailboxes", "example.org", "alice")
	ents, err := os.ReadDir(filepath.Join(mb, "new"))
	if err != nil || len(ents) != 1 {
		t.Fatalf("inbox: %v %v", ents, err)
	}
	if err := os.MkdirAll(filepath.Join(mb, ".Junk", "cur"), 0o750); err != nil {
		t.Fatal(err)
	}
	name := ents[0].Name()
	if err := os.Rename(filepath.Join(mb, "new", name), filepath.Join(mb, ".Junk", "cur", name+":2,S")); err != nil {
		t.Fatal(err)
	}
	waitLearned(t, a, 1, 0)
	if err := os.Rename(filepath.Join(mb, ".Junk", "cur", name+":2,S"), filepath.Join(mb, "cur", name+":2,S")); err != nil {
		t.Fatal(err)
	}
	waitLearned(t, a, 0, 1)
}
