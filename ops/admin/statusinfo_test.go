package admin

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"moat/ops/metrics"
	"moat/relay/spool"
)

func TestStatusAPIAndPage(t *testing.T) {
	const evil = `<script>alert("x")</script>`
	now := time.Now()
	m := metrics.NewWithOptions(metrics.Options{NoRuntimeCollectors: true})
	soon := &x509.Certificate{NotAfter: now.Add(5*24*time.Hour + time.Hour), Subject: pkix.Name{CommonName: "mx.example.org"}}
	later := &x509.Certificate{NotAfter: now.Add(90*24*time.Hour + time.Hour), DNSNames: []string{"smtp.example.org"}}
	m.TLSCertificate("/etc/moat/soon.pem", func() *x509.Certificate { return soon })
	m.TLSCertificate("/etc/moat/later.pem", func() *x509.Certificate { return later })
	m.TLSCertificate("/etc/moat/none.pem", func() *x509.Certificate { return nil })
	m.Refusal("rcpt", "relay_denied", "rejected", "203.0.113.5")
	h := newHarness(t, 2)
	_, base := startServer(t, Options{
		Metrics: m, Queue: h.queueAPI(), Version: "1.2.3" + evil, Started: now.Add(-(26*time.Hour + 5*time.Minute)),
		Listeners: []ListenerInfo{{Name: "mx" + evil, Address: "0.0.0.0:25", Mode: "mx", TLS: "starttls"}, {Name: "sub", Address: "0.0.0.0:587", Mode: "submission", TLS: "starttls"}},
	})

	code, hdr, body := request(t, "GET", base+"/api/status", "", nil)
	if code != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("/api/status: %d %s", code, hdr.Get("Content-Type"))
	}
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st.Version != "1.2.3"+evil || st.UptimeSeconds < 26*3600 || st.Started.IsZero() || len(st.Listeners) != 2 || st.Listeners[1].Mode != "submission" {
		t.Errorf("daemon: %+v", st)
	}
	wantCerts := []struct {
		name, subject, state string
		days                 int
	}{
		{"/etc/moat/later.pem", "smtp.example.org", "ok", 90},
		{"/etc/moat/none.pem", "", "missing", 0},
		{"/etc/moat/soon.pem", "mx.example.org", "warn", 5},
	}
	if len(st.Certificates) != len(wantCerts) {
		t.Fatalf("certificates %+v", st.Certificates)
	}
	for i, w := range wantCerts {
		c := st.Certificates[i]
		if c.Name != w.name || c.Subject != w.subject || c.State != w.state || c.DaysLeft != w.days {
			t.Errorf("certificate %d: %+v, want %+v", i, c, w)
		}
	}
	if st.Queue == nil || st.Queue.Messages != 2 || st.Queue.Deferred != 2 {
		t.Errorf("queue %+v", st.Queue)
	}
	if len(st.Refusals) != 1 || st.Refusals[0].Reason != "relay_denied" || st.Refusals[0].Client != "203.0.113.5" {
		t.Errorf("refusals %+v", st.Refusals)
	}
	want := DeferralGroup{Destination: "route backend", Error: "451 4.4.0 try later", Recipients: 2, Messages: 2}
	if d := st.Deferrals; d == nil || len(d.Groups) != 1 || d.Groups[0] != want || d.Recipients != 2 || d.Scanned != 2 || d.Partial {
		t.Errorf("deferrals %+v", st.Deferrals)
	}

	code, _, body = request(t, "GET", base+"/", "", nil)
	if code != 200 {
		t.Fatalf("status page: %d", code)
	}
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{
		"version":      "1.2.3" + evil,
		"uptime":       "1d2h",
		"listeners":    "mx" + evil,
		"certificates": "smtp.example.org",
		"deferrals":    "451 4.4.0 try later",
	} {
		if got := text(findByID(doc, id)); !strings.Contains(got, want) {
			t.Errorf("%s text %q does not show %q", id, got, want)
		}
	}
	var scripts int
	walk(doc, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "script" {
			scripts++
		}
	})
	if scripts != 0 {
		t.Errorf("%d script elements: input was not escaped", scripts)
	}
	// The certificate with 5 days left is marked; the one with 90 is not.
	var classes []string
	walk(findByID(doc, "certificates"), func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "tr" {
			for _, a := range n.Attr {
				if a.Key == "class" {
					classes = append(classes, a.Val)
				}
			}
		}
	})
	if strings.Join(classes, ",") != "ok,missing,warn" {
		t.Errorf("certificate rows classes %q", classes)
	}
}

func TestCertStatus(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		notAfter time.Time
		state    string
		days     int
	}{
		{now.Add(30 * 24 * time.Hour), "ok", 30},
		{now.Add(14 * 24 * time.Hour), "ok", 14},
		{now.Add(14*24*time.Hour - time.Second), "warn", 13},
		{now.Add(time.Hour), "warn", 0},
		{now, "expired", 0},
		{now.Add(-48 * time.Hour), "expired", -2},
		{time.Time{}, "missing", 0},
	} {
		if c := certStatus("n", "", tc.notAfter, now); c.State != tc.state || c.DaysLeft != tc.days {
			t.Errorf("not after %v: %s %d, want %s %d", tc.notAfter, c.State, c.DaysLeft, tc.state, tc.days)
		}
	}
}

func TestGroupDeferrals(t *testing.T) {
	rc := func(addr, route, st, err string) spool.Recipient {
		return spool.Recipient{Address: addr, Route: route, Status: spool.Status(st), LastError: err}
	}
	long := strings.Repeat("é", 150) // 300 bytes
	envs := []*spool.Envelope{
		{ID: "a", Recipients: []spool.Recipient{
			rc("x@Gmail.COM", "mx", "pending", "421 4.7.0 try again later"),
			rc("y@gmail.com", "mx", "pending", "421 4.7.0 try again later"),
			rc("z@gmail.com", "mx", "delivered", ""),
			rc("w@yahoo.com", "mx", "pending", ""), // not tried yet
		}},
		{ID: "b", Recipients: []spool.Recipient{
			rc("x@gmail.com", "mx", "pending", "421 4.7.0 try again later"),
			rc("b@corp.example", "backend", "pending", "connection refused"),
			rc("u@example.org", "local", "pending", "452 4.2.2 mailbox full"),
			rc("l@far.example", "mx", "pending", long),
			rc("f@far.example", "mx", "failed", "550 5.1.1 no"),
		}},
	}
	d := groupDeferrals(envs, 3)
	want := []DeferralGroup{
		{Destination: "gmail.com", Error: "421 4.7.0 try again later", Recipients: 3, Messages: 2},
		{Destination: "far.example", Error: long[:maxDeferralError] + "…", Recipients: 1, Messages: 1},
		{Destination: "local", Error: "452 4.2.2 mailbox full", Recipients: 1, Messages: 1},
	}
	if d.Recipients != 6 || d.Scanned != 2 || d.Partial || fmt.Sprint(d.Groups) != fmt.Sprint(want) {
		t.Errorf("groups %+v\nwant %+v", d, want)
	}
	// Bounded: past maxDeferralScan messages the count says partial, and
	// past maxDeferralGroups distinct groups the rest count in no group.
	many := make([]*spool.Envelope, maxDeferralScan+5)
	for i := range many {
		many[i] = &spool.Envelope{ID: "m", Recipients: []spool.Recipient{rc(fmt.Sprintf("r@d%d.example", i), "mx", "pending", "451 x")}}
	}
	d = groupDeferrals(many, 5)
	if !d.Partial || d.Scanned != maxDeferralScan || d.Recipients != maxDeferralScan || len(d.Groups) != 5 {
		t.Errorf("bounded: partial %v scanned %d recipients %d groups %d", d.Partial, d.Scanned, d.Recipients, len(d.Groups))
	}
}
