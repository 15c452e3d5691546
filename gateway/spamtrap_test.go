package gateway

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"moat/policy/bayes"
	"moat/policy/bayes/learner"
	"moat/policy/content"
	"moat/rules"
)

func TestSpamTrap(t *testing.T) {
	const ruleText = `rules:
  - name: trap-and-people
    stage: data
    when: spamtrap.hit && spamtrap.count < len(recipients)
    action: reject
    reply: "550 5.7.1 Trapped"
`
	opt := rules.LoadOptions{FactGroups: []rules.FactGroup{SpamTrapFactGroup()}}
	for _, tc := range []struct {
		name      string
		to        []string
		want      string
		discard   bool
		learned   int64
		afterData bool
	}{
		{name: "no trap", to: []string{"alice@example.org"}, want: "250 2.0.0", afterData: true},
		{name: "trap only: discarded, learned", to: []string{"Trap@Corp.example"}, want: "250 2.0.0", discard: true, learned: 1, afterData: true},
		{name: "trap and a person: the rules see it", to: []string{"alice@example.org", "trap@corp.example"}, want: "550 5.7.1 Trapped", learned: 1, afterData: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := bayes.NewMemStore()
			l := learner.New(learner.Options{Classifier: bayes.New(store, bayes.Options{}), Input: ClassifierInput})
			l.Start()
			after := 0
			checks := &Checks{
				Rules:     loadRules(t, ruleText, opt),
				Extra:     []Check{NewSpamTrap([]string{"trap@corp.example"}, l)},
				AfterData: func(*Txn, error) { after++ },
			}
			s := offlineSession("buy cheap pills")
			s.To = tc.to
			res := RunOffline(context.Background(), PipelineOptions{Hostname: "mx.example.org", Checks: checks}, s)
			l.Close()
			if line := fmt.Sprintf("%d %s %s", res.Final.Code, res.Final.Enhanced, res.Final.Text); !strings.HasPrefix(line, tc.want) {
				t.Errorf("final %q, want %q", line, tc.want)
			}
			if res.Txn.Discard != tc.discard {
				t.Errorf("discard %v, want %v", res.Txn.Discard, tc.discard)
			}
			tot, _ := store.Stats(context.Background())
			if tot.Spam != tc.learned || tot.Ham != 0 {
				t.Errorf("learned %d spam %d ham, want %d spam", tot.Spam, tot.Ham, tc.learned)
			}
			if (after == 1) != tc.afterData {
				t.Errorf("AfterData called %d times", after)
			}
		})
	}
	// A nil learner: facts and discard only, no panic.
	tx := NewTxn(TxnOptions{})
	m, _ := content.Parse([]byte("Subject: x\r\n\r\ny\r\n"), content.Options{})
	tx.Facts.Message = m
	tx.Rcpts = []Rcpt{{Addr: "trap@corp.example"}}
	if err := NewSpamTrap([]string{"trap@corp.example"}, nil).CheckData(context.Background(), tx); err != nil || !tx.Discard {
		t.Fatalf("nil learner: %v discard %v", err, tx.Discard)
	}
	// Our own users' mail to a trap is not learned.
	store := bayes.NewMemStore()
	l := learner.New(learner.Options{Classifier: bayes.New(store, bayes.Options{}), Input: ClassifierInput})
	l.Start()
	tx.Facts.Conn.AuthUser = "alice@example.org"
	if err := NewSpamTrap([]string{"trap@example.org"}, l).CheckData(context.Background(), tx); err != nil || !tx.Discard {
		t.Fatalf("own user: %v discard %v", err, tx.Discard)
	}
	l.Close()
	if tot, _ := store.Stats(context.Background()); tot.Spam != 0 {
		t.Fatalf("own user's mail learned: %+v", tot)
	}
}
