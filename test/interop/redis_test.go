//go:build interop

package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/smtptest"
	"moat/test/testenv"
)

// fleetRules are the rule files of TestRedisFleet. Each rule fires for
// its own sender local part (or recipient) so that the parts of the test
// do not count in each other's limits.
const fleetRules = `rules:
  - name: burst-per-ip
    stage: mail
    when: sender.local == "burst" && ratelimit("ip:" + ip, 5, "1m")
    action: tempfail
  - name: after-per-ip
    stage: mail
    when: sender.local == "after" && ratelimit("after:" + ip, 2, "1m")
    action: tempfail
  - name: count-plain
    stage: mail
    when: sender.local == "plain" && ratelimit("plain:" + ip, 100000, "1h")
    action: tempfail
  - name: grey
    stage: rcpt
    when: rcpt.local == "grey"
    action: greylist
`

// TestRedisFleet: three moat nodes share one real redis-server
// (cluster.redis, policy/cluster):
//
//	(a) a rule's ratelimit() per client IP holds across the fleet: 3
//	    messages to each node from 127.0.0.1 against a limit of 5, so
//	    exactly the first 5 pass and the 6th onward get 4xx at MAIL, on
//	    whichever node they arrive;
//	(b) greylisting (RFC 6647 §2): a first attempt at node A gets 4xx at
//	    RCPT, the retry after the delay at node B, which never saw the
//	    triplet itself, is accepted;
//	(c) with redis-server killed the nodes keep accepting mail on local
//	    state, and once it is back they share state again: a limit of 2
//	    counted over A, B and C refuses the 3rd.
func TestRedisFleet(t *testing.T) {
	rdb := testenv.StartRedis(t)
	sink := smtptest.StartSink(t)
	ruleDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(ruleDir, "10-fleet.yaml"), []byte(fleetRules), 0o644); err != nil {
		t.Fatal(err)
	}
	const delay = 2 * time.Second
	extra := fmt.Sprintf(`cluster:
  redis: {address: %q, key_prefix: "moat-it:", timeout: 1s, backoff: 300ms}
rules:
  paths: [%q]
  greylist: {delay: %s, expiry: 1h}
`, rdb.Addr, filepath.Join(ruleDir, "*.yaml"), delay)
	bin := testenv.MoatBinary(t)
	nodes := make([]*testenv.Moat, 3)
	for i := range nodes {
		nodes[i] = testenv.NewMoat(t, bin, testenv.MoatOptions{
			Relay:  map[string]string{"relay.test": "sink"},
			Routes: map[string]string{"sink": "smtp " + sink.Addr},
			Extra:  extra,
		})
		nodes[i].Start()
	}
	names := []string{"A", "B", "C"}
	logs := func() string {
		var b strings.Builder
		for i, m := range nodes {
			fmt.Fprintf(&b, "\nmoat %s log:\n%s", names[i], m.LogTail(15))
		}
		return b.String()
	}
	seq := 0
	send := func(node int, from, to string) error {
		seq++
		id := fmt.Sprintf("fleet-%d-%d@client.test", seq, time.Now().UnixNano())
		return smtptest.Send(nodes[node].Addr, from, []string{to}, smtptest.Message(from, to, id, "fleet\r\n"))
	}

	// limited sends one message through node and names the outcome
	// ("A:ok", or "A:4xx" when the rate limit deferred MAIL).
	limited := func(step string, node int, from string) string {
		t.Helper()
		err := send(node, from, "r@relay.test")
		switch {
		case err == nil:
			return names[node] + ":ok"
		case smtptest.ReplyCode(err)/100 == 4 && strings.HasPrefix(err.Error(), "MAIL"):
			return names[node] + ":4xx"
		}
		t.Fatalf("(%s) node %s: %v%s", step, names[node], err, logs())
		return ""
	}

	// (a) One per-IP limit over the fleet.
	var got []string
	for node := range nodes {
		for range 3 {
			got = append(got, limited("a", node, "burst@client.test"))
		}
	}
	want := "A:ok A:ok A:ok B:ok B:ok B:4xx C:4xx C:4xx C:4xx"
	if strings.Join(got, " ") != want {
		t.Fatalf("(a) shared limit of 5: got %v, want %s%s", got, want, logs())
	}
	if keys := rdb.Keys("moat-it:rl:*"); len(keys) == 0 {
		t.Errorf("(a) no rate-limit key in Redis")
	}

	// (b) Greylisting across nodes.
	err := send(0, "gl@client.test", "grey@relay.test")
	if smtptest.ReplyCode(err)/100 != 4 || !strings.HasPrefix(err.Error(), "RCPT") {
		t.Fatalf("(b) first attempt at A: got %v, want 4xx at RCPT%s", err, logs())
	}
	if keys := rdb.Keys("moat-it:gl:*"); len(keys) != 1 {
		t.Fatalf("(b) greylist keys in Redis: %v, want 1", keys)
	}
	// One retry only, after the delay: B must pass it from the shared
	// triplet (its own local greylist has never seen it).
	time.Sleep(delay + 500*time.Millisecond)
	if err := send(1, "gl@client.test", "grey@relay.test"); err != nil {
		t.Fatalf("(b) retry at B after %s: %v, want accepted%s", delay, err, logs())
	}

	// (c) Redis goes away: every node still accepts mail.
	rdb.Kill()
	for node := range nodes {
		for range 2 {
			if err := send(node, "plain@client.test", "r@relay.test"); err != nil {
				t.Fatalf("(c) node %s with Redis down: %v%s", names[node], err, logs())
			}
		}
		if !strings.Contains(nodes[node].LogTail(200), "redis unavailable") {
			t.Errorf("(c) node %s did not log that Redis is unavailable%s", names[node], logs())
		}
	}
	// Redis is back (empty: no persistence): each node probes it again
	// after its back-off; mail keeps flowing meanwhile.
	rdb.Start()
	back := func(node int) bool { return strings.Contains(nodes[node].LogTail(200), "redis answers again") }
	if !testenv.WaitFor(20*time.Second, func() bool {
		all := true
		for node := range nodes {
			if !back(node) {
				if err := send(node, "plain@client.test", "r@relay.test"); err != nil {
					t.Fatalf("(c) node %s while Redis comes back: %v%s", names[node], err, logs())
				}
				all = all && back(node)
			}
		}
		if !all {
			time.Sleep(200 * time.Millisecond)
		}
		return all
	}) {
		t.Fatalf("(c) not every node uses Redis again%s", logs())
	}
	if keys := rdb.Keys("moat-it:rl:*"); len(keys) == 0 {
		t.Errorf("(c) the restarted Redis holds no rate-limit key")
	}
	got = got[:0]
	for node := range nodes {
		got = append(got, limited("c", node, "after@client.test"))
	}
	if want := "A:ok B:ok C:4xx"; strings.Join(got, " ") != want {
		t.Errorf("(c) shared limit of 2 after Redis came back: got %v, want %s%s", got, want, logs())
	}

	// Everything accepted was relayed: 5 (a) + 1 (b) + 6 (c) at least,
	// plus the probes while Redis came back and 2 of (c)'s last step.
	if !testenv.WaitFor(30*time.Second, func() bool { return sink.Count() >= 14 }) {
		t.Errorf("sink received %d messages, want at least 14%s", sink.Count(), logs())
	}
}
