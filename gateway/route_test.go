package gateway

import (
	"fmt"
	"testing"

	"moat/internal/smtptest"
	"moat/rules"
)

// Issue 23 item 13: the route action acts at every stage the rules
// README lists ("all"): at connect and helo for every recipient of the
// connection, at mail for every recipient of the transaction, at rcpt for
// that recipient, at data for every accepted recipient. Last match wins:
// a later stage's route replaces an earlier one's.
func TestRouteActionAtEveryStage(t *testing.T) {
	cases := []struct {
		stage, when string
		want        [2]string // routes of alice@example.org, then bob@example.org
	}{
		{"connect", "true", [2]string{"backend", "backend"}},
		{"helo", `helo == "c.example"`, [2]string{"backend", "backend"}},
		{"mail", `sender.domain == "far.example"`, [2]string{"backend", "backend"}},
		{"rcpt", `rcpt.local == "bob"`, [2]string{"local", "backend"}},
		{"data", `subject == "route me"`, [2]string{"backend", "backend"}},
		{"data", `subject == "something else"`, [2]string{"local", "local"}},
	}
	for _, tc := range cases {
		t.Run(tc.stage+" "+tc.when, func(t *testing.T) {
			text := fmt.Sprintf("rules:\n  - name: rt\n    stage: %s\n    when: '%s'\n    action: route\n    route: backend\n", tc.stage, tc.when)
			ts := startServer(t, func(o *Options) {
				o.Checks = &Checks{Rules: loadRules(t, text, rules.LoadOptions{})}
			})
			rc := smtptest.DialRaw(t, ts.addr)
			rc.Expect("EHLO c.example", 250, "")
			for i := 0; i < 2; i++ { // the second transaction starts afresh, but for connection routes
				rc.Expect("MAIL FROM:<s@far.example>", 250, "")
				rc.Expect("RCPT TO:<alice@example.org>", 250, "")
				rc.Expect("RCPT TO:<bob@example.org>", 250, "")
				rc.Expect("DATA", 354, "")
				rc.Send("From: s@far.example\r\nSubject: route me\r\n\r\nhi\r\n")
				rc.Expect(".", 250, "")
				env := ts.spool.all()[i].env
				if len(env.Recipients) != 2 {
					t.Fatalf("recipients %+v", env.Recipients)
				}
				for j, r := range env.Recipients {
					if r.Route != tc.want[j] {
						t.Errorf("message %d: %s by route %q, want %q", i, r.Address, r.Route, tc.want[j])
					}
				}
			}
		})
	}
}
