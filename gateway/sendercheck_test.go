package gateway

import (
	"testing"

	"moat/internal/dnstest"
	"moat/policy"
	"moat/relay/spool"
)

// Issue 27 item 1: what the spooled envelope records about its sender.
func TestSenderCheck(t *testing.T) {
	spfPass := policy.SPF{Result: policy.ResultPass, Domain: "far.example", Identity: "mailfrom"}
	dmarcPass := policy.DMARC{Result: policy.ResultPass, Domain: "news.far.example", OrgDomain: "far.example", DKIMAligned: true}
	for _, tc := range []struct {
		name   string
		sender string
		set    func(*Txn)
		want   spool.SenderCheck
	}{
		{"nothing checked", "x@far.example", func(*Txn) {}, spool.SenderUnverified},
		{"authenticated", "x@far.example", func(t *Txn) { t.Facts.Conn.AuthUser = "x@far.example" }, spool.SenderAuthenticated},
		{"trusted", "x@far.example", func(t *Txn) { t.Facts.Conn.Trusted = true }, spool.SenderTrusted},
		{"spf pass", "x@Far.Example", func(t *Txn) { t.Facts.SPF = spfPass }, spool.SenderSPF},
		{"spf pass for helo", "x@far.example", func(t *Txn) { s := spfPass; s.Identity = "helo"; t.Facts.SPF = s }, spool.SenderUnverified},
		{"spf pass other domain", "x@victim.example", func(t *Txn) { t.Facts.SPF = spfPass }, spool.SenderUnverified},
		{"spf softfail", "x@far.example", func(t *Txn) { s := spfPass; s.Result = policy.ResultSoftFail; t.Facts.SPF = s }, spool.SenderUnverified},
		{"spf temperror", "x@far.example", func(t *Txn) { s := spfPass; s.Result = policy.ResultTempError; t.Facts.SPF = s }, spool.SenderUnverified},
		{"dmarc pass aligned", "bounces@mail.far.example", func(t *Txn) { t.Facts.DMARC = dmarcPass }, spool.SenderDMARC},
		{"dmarc pass, sender elsewhere", "x@victim.example", func(t *Txn) { t.Facts.DMARC = dmarcPass }, spool.SenderUnverified},
		{"dmarc fail", "x@far.example", func(t *Txn) { d := dmarcPass; d.Result = policy.ResultFail; t.Facts.DMARC = d }, spool.SenderUnverified},
		{"dmarc pass, public suffix sender", "x@com", func(t *Txn) {
			d := dmarcPass
			d.OrgDomain = ""
			d.Domain = "com"
			t.Facts.DMARC = d
		}, spool.SenderUnverified},
		{"null sender", "", func(t *Txn) { t.Facts.SPF = spfPass }, spool.SenderUnverified},
	} {
		t.Run(tc.name, func(t *testing.T) {
			txn := NewTxn(TxnOptions{})
			txn.Sender = tc.sender
			tc.set(txn)
			if got := txn.senderCheck(); got != tc.want {
				t.Errorf("senderCheck = %q, want %q", got, tc.want)
			}
		})
	}
}

// The envelope a real session spools carries the check: SPF pass from
// a sender whose domain lists the client, unverified from one whose
// domain does not, trusted from a trusted network.
func TestSpooledEnvelopeSenderCheck(t *testing.T) {
	dnsSrv := dnstest.NewServer(t)
	dnsSrv.Add(`far.example. 300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"`,
		`victim.example. 300 IN TXT "v=spf1 ip4:192.0.2.1 ?all"`)
	ts := startServer(t, withChecks(t, dnsSrv, "", nil))
	for _, from := range []string{"boss@far.example", "forged@victim.example"} {
		msg := "From: <" + from + ">\r\nTo: alice@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
		if code, text := sendRaw(t, ts.addr, from, "alice@example.org", msg); code != 250 {
			t.Fatalf("%s: %q", from, text)
		}
	}
	all := ts.spool.all()
	if len(all) != 2 {
		t.Fatalf("%d messages spooled", len(all))
	}
	if all[0].env.SenderCheck != spool.SenderSPF || all[1].env.SenderCheck != spool.SenderUnverified {
		t.Fatalf("sender checks %q, %q; want spf, none", all[0].env.SenderCheck, all[1].env.SenderCheck)
	}

	tt := startServer(t, func(o *Options) { withChecks(t, dnsSrv, "", nil)(o); trusted(o) })
	if code, text := sendRaw(t, tt.addr, "forged@victim.example", "alice@example.org", "Subject: hi\r\n\r\nbody\r\n"); code != 250 {
		t.Fatal(text)
	}
	if got := tt.spool.all()[0].env.SenderCheck; got != spool.SenderTrusted {
		t.Errorf("trusted client: %q", got)
	}
}
