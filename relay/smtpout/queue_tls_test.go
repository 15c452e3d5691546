package smtpout

import (
	"context"
	"strings"
	"testing"
	"time"

	"moat/internal/smtptest"
	"moat/relay/mtasts"
	"moat/relay/queue"
	"moat/relay/spool"
	"moat/relay/transport"
)

// TestQueueKeepsMTASTSReason: through the real queue manager and spool,
// mail for a domain whose enforced MTA-STS policy the exchanger fails
// (a certificate for another name) stays queued, pending, with the
// policy's reason as its last error; nothing is sent and no bounce is
// queued.
func TestQueueKeepsMTASTSReason(t *testing.T) {
	ca := smtptest.NewCA(t)
	other := ca.IssueNow(t, "other.example.test")
	e := newTLSEnv(t, ca, &other)
	c := e.client(t, Options{MTASTS: e.sts(t, mtasts.ModeEnforce)})
	sp, err := spool.Open(t.TempDir(), spool.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	m := queue.New(sp, func(route string) (transport.Transport, bool) { return c, route == "mx" },
		queue.Options{Hostname: "moat.test", DelayWarning: -1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()

	env := &spool.Envelope{ID: sp.NewID(), Sender: "a@moat.test", Received: time.Now(),
		Recipients: []spool.Recipient{{Address: "b@example.test", Route: "mx", Status: spool.StatusPending}}}
	if err := sp.Put(ctx, env, strings.NewReader("Subject: x\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	m.Notify(env.ID)
	var got *spool.Envelope
	for range 200 { // bounded: at most 20 s
		if got, err = sp.Get(env.ID); err == nil && got.Recipients[0].Attempts > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got == nil || got.Recipients[0].Attempts == 0 {
		t.Fatalf("no attempt made: %+v, %v", got, err)
	}
	r := got.Recipients[0]
	if r.Status != spool.StatusPending || !strings.Contains(r.LastError, "MTA-STS policy of example.test") ||
		!strings.Contains(r.LastError, "certificate-host-mismatch") {
		t.Errorf("recipient %+v", r)
	}
	if n := len(e.b.received()); n != 0 {
		t.Errorf("%d messages sent", n)
	}
	list, err := sp.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Errorf("%d messages in the spool, want 1 (no bounce)", len(list))
	}
}
