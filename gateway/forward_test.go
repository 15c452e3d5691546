package gateway

import (
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/smtptest"
	"moat/relay/srs"
)

func srsRewriter(t *testing.T) *srs.Rewriter {
	t.Helper()
	r, err := srs.New(srs.Options{Domain: "srs.example.org", Secrets: []string{"k1"}, Now: func() time.Time { return time.Unix(20000*86400, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// An alias that points off-site: the forwarded copy is a record of its
// own with the SRS sender; the local copy keeps the original sender.
func TestForwardedCopyGetsSRSSender(t *testing.T) {
	r := srsRewriter(t)
	for _, c := range []struct {
		sender, want string
	}{
		{"s@far.example", "SRS0="},          // rewritten
		{"alice@example.org", "alice@"},     // our own domain: kept
		{"", ""},                            // <> never rewritten
		{"x@srs.example.org", "x@srs.exam"}, // the SRS domain itself: kept
	} {
		ts := startServer(t, func(o *Options) { o.Checks = &Checks{SRS: r} })
		rc := smtptest.DialRaw(t, ts.addr)
		rc.Expect("EHLO c.example", 250, "")
		rc.Expect("MAIL FROM:<"+c.sender+">", 250, "")
		rc.Expect("RCPT TO:<ext@example.org>", 250, "")
		rc.Expect("RCPT TO:<alice@example.org>", 250, "")
		rc.Expect("DATA", 354, "")
		rc.Send("From: s@far.example\r\nSubject: fwd\r\n\r\nhi\r\n")
		rc.Expect(".", 250, "")
		all := ts.spool.all()
		if c.want != "SRS0=" {
			// The sender stays: one record for all, as without SRS.
			if len(all) != 1 || all[0].env.Sender != c.sender || len(all[0].env.Recipients) != 2 {
				t.Errorf("%q: %d records, want 1 with both recipients", c.sender, len(all))
			}
			continue
		}
		if len(all) != 2 {
			t.Fatalf("%q: %d records, want 2 (forwarded and local)", c.sender, len(all))
		}
		fwd, local := all[0].env, all[1].env
		if len(fwd.Recipients) != 1 || fwd.Recipients[0].Address != "carol@far.example" {
			t.Errorf("forwarded recipients %+v", fwd.Recipients)
		}
		if len(local.Recipients) != 1 || local.Recipients[0].Address != "alice@example.org" || local.Sender != c.sender {
			t.Errorf("local copy %q %+v", local.Sender, local.Recipients)
		}
		if !strings.HasPrefix(fwd.Sender, c.want) || (c.want == "") != (fwd.Sender == "") {
			t.Errorf("sender %q: forwarded with %q, want prefix %q", c.sender, fwd.Sender, c.want)
		}
		if c.want == "SRS0=" {
			if back, err := r.Reverse(fwd.Sender); err != nil || back != c.sender {
				t.Errorf("SRS sender %q reverses to %q, %v", fwd.Sender, back, err)
			}
		}
		if string(all[0].data) != string(all[1].data) {
			t.Error("forwarded copy differs from the local one with no sealer")
		}
	}
}

// Without SRS and ARC, a forwarded recipient stays in the one record.
func TestForwardWithoutSRSOneRecord(t *testing.T) {
	ts := startServer(t, nil)
	rc := smtptest.DialRaw(t, ts.addr)
	rc.Expect("EHLO c.example", 250, "")
	rc.Expect("MAIL FROM:<s@far.example>", 250, "")
	rc.Expect("RCPT TO:<ext@example.org>", 250, "")
	rc.Expect("RCPT TO:<alice@example.org>", 250, "")
	rc.Expect("DATA", 354, "")
	rc.Send("Subject: fwd\r\n\r\nhi\r\n")
	rc.Expect(".", 250, "")
	if all := ts.spool.all(); len(all) != 1 || len(all[0].env.Recipients) != 2 || all[0].env.Sender != "s@far.example" {
		t.Fatalf("records %+v", all)
	}
}

// A bounce to a valid SRS address is accepted from anyone and goes to the
// original sender; an invalid or expired one is refused at RCPT.
func TestSRSBounceReversed(t *testing.T) {
	r := srsRewriter(t)
	good, _ := r.Forward("s@far.example")
	var mu sync.Mutex
	events := map[string]int{}
	ts := startServer(t, func(o *Options) {
		o.Checks = &Checks{SRS: r, Forwarding: func(e string) { mu.Lock(); events[e]++; mu.Unlock() }}
	})
	rc := smtptest.DialRaw(t, ts.addr) // 127.0.0.1 is not trusted here
	rc.Expect("EHLO mx.far2.example", 250, "")
	rc.Expect("MAIL FROM:<>", 250, "")
	rc.Expect("RCPT TO:<"+strings.Replace(good, "SRS0=", "SRS0=x", 1)+">", 550, "5.1.1")
	rc.Expect("RCPT TO:<SRS0=AAAA=RA=far.example=s@srs.example.org>", 550, "5.1.1")
	rc.Expect("RCPT TO:<someone@srs.example.org>", 554, "5.7.1") // not ours, not SRS: relay denied
	rc.Expect("RCPT TO:<"+strings.ToLower(good)+">", 250, "")
	rc.Expect("DATA", 354, "")
	rc.Send("Subject: Undelivered Mail Returned to Sender\r\n\r\nbounce\r\n")
	rc.Expect(".", 250, "")
	all := ts.spool.all()
	if len(all) != 1 || all[0].env.Sender != "" || len(all[0].env.Recipients) != 1 || all[0].env.Recipients[0].Address != "s@far.example" {
		t.Fatalf("bounce spooled as %+v", all[0].env)
	}
	if rt := all[0].env.Recipients[0].Route; rt == "local" {
		t.Errorf("bounce for a remote sender routed %q", rt)
	}
	mu.Lock()
	if events["srs_refused"] != 2 || events["srs_reversed"] != 1 || len(events) != 2 {
		t.Errorf("forwarding events %v, want 2 srs_refused and 1 srs_reversed", events)
	}
	mu.Unlock()

	// Expired: the same address 30 days later.
	late, _ := srs.New(srs.Options{Domain: "srs.example.org", Secrets: []string{"k1"}, Now: func() time.Time { return time.Unix((20000+30)*86400, 0) }})
	ts2 := startServer(t, func(o *Options) { o.Checks = &Checks{SRS: late} })
	rc2 := smtptest.DialRaw(t, ts2.addr)
	rc2.Expect("EHLO mx.far2.example", 250, "")
	rc2.Expect("MAIL FROM:<>", 250, "")
	rc2.Expect("RCPT TO:<"+good+">", 550, "5.1.1")
}
