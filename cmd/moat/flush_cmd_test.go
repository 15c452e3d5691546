package main

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"moat/internal/smtptest"
	"moat/ops/admin"
	"moat/relay/queue"
	"moat/relay/route"
	"moat/relay/smtpout"
	"moat/relay/spool"
	"moat/relay/transport"
)

// verdictHop is a next hop that answers each recipient by its local
// part: ok@ 250, bad@ 550, later@ 451.
type verdictHop struct{}

func (verdictHop) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return verdictSession{}, nil }

type verdictSession struct{}

func (verdictSession) Reset()                                 {}
func (verdictSession) Logout() error                          { return nil }
func (verdictSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (verdictSession) Data(r io.Reader) error                 { _, err := io.Copy(io.Discard, r); return err }
func (verdictSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "bad@"):
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	case strings.HasPrefix(to, "later@"):
		return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	}
	return nil
}

// `moat queue flush` waits for the attempts and counts what became of
// each recipient, with a real queue manager delivering over SMTP to a
// real next hop on loopback.
func TestQueueFlushWaitCounts(t *testing.T) {
	srv := gosmtp.NewServer(verdictHop{})
	srv.Domain = "hop.test"
	srv.AllowInsecureAuth = true
	hopAddr, _ := smtptest.Serve(t, srv)

	dataDir := t.TempDir()
	sp, err := spool.Open(filepath.Join(dataDir, "spool"), spool.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	later := time.Now().Add(time.Hour) // nothing is attempted before the flush
	put := func(held bool) string {
		env := &spool.Envelope{
			ID: sp.NewID(), Sender: "", Received: time.Now(), NextAttempt: later, Held: held,
			Recipients: []spool.Recipient{
				{Address: "ok@hop.test", Route: "hop", Status: spool.StatusPending},
				{Address: "bad@hop.test", Route: "hop", Status: spool.StatusPending},
				{Address: "later@hop.test", Route: "hop", Status: spool.StatusPending},
			},
		}
		if err := sp.Put(context.Background(), env, strings.NewReader("Subject: flush\r\n\r\nx\r\n")); err != nil {
			t.Fatal(err)
		}
		return env.ID
	}
	for range 3 {
		put(false)
	}
	heldID := put(true)

	tr := smtpout.NewSMTP(smtpout.Options{Hostname: "moat.test", Address: hopAddr, TLS: route.TLSNone})
	t.Cleanup(func() { tr.Close() })
	q := queue.New(sp, func(string) (transport.Transport, bool) { return tr, true },
		queue.Options{RetryMin: time.Hour, DelayWarning: -1, ScanInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); q.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	f := &queueFixture{dataDir: dataDir, sp: sp, q: q}
	cfg := f.config(t, f.serve(t, ""), "")

	out, errOut, err := runQueue("--config", cfg, "flush", "--wait", "2m")
	if err != nil {
		t.Fatalf("flush: %v\n%s", err, errOut)
	}
	want := "done: flushed 3/4, 1 held, 0 failed; attempted 3/3: 3 delivered, 3 deferred, 3 bounced (recipients)\n"
	if out != want {
		t.Errorf("flush printed\n%q\nwant\n%q\nstderr %q", out, want, errOut)
	}
	if !strings.Contains(errOut, "scheduled 3/4, waiting up to 2m0s") {
		t.Errorf("stderr %q", errOut)
	}
	// The queue agrees: the deferred recipient is all that is left of each.
	envs, _ := sp.List()
	for _, env := range envs {
		if env.ID == heldID {
			continue
		}
		if env.Attempts != 1 || env.Recipients[2].Status != spool.StatusPending || env.Recipients[0].Status != spool.StatusDelivered {
			t.Errorf("after the flush: %+v", env)
		}
	}

	// --wait 0: only scheduled, as before.
	out, _, err = runQueue("--config", cfg, "flush", "--wait", "0")
	if err != nil || !strings.HasPrefix(out, "done: flushed 3/4, 1 held, 0 failed\n") {
		t.Errorf("flush --wait 0: %v %q", err, out)
	}
	if _, _, err := runQueue("--config", cfg, "flush", "--wait", "11m"); err == nil {
		t.Error("flush --wait 11m accepted")
	}
}

// The API refuses a wait out of range, and answers an empty queue at once.
func TestFlushWaitAPI(t *testing.T) {
	f := newQueueFixture(t, 0)
	c, err := admin.NewClient(f.serve(t, ""), "")
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.FlushAllWait(context.Background(), time.Minute, nil)
	if err != nil || !st.Done || st.Total != 0 || st.Wait.Messages != 0 || st.TimedOut {
		t.Errorf("empty queue: %v %+v", err, st)
	}
	var se *admin.StatusError
	if _, err := c.FlushAllWait(context.Background(), time.Hour, nil); !errors.As(err, &se) || se.Code != 400 {
		t.Errorf("wait 1h: %v", err)
	}
}
