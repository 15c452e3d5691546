package gateway

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
	"moat/internal/smtptest"
	"moat/policy"
	"moat/policy/arc"
	"moat/policy/dkimsign"
	"moat/rules"
)

// The ARC vectors of policy/arc (made by dkimpy): a message with two ARC
// sets by fwd.example, and the key that verifies them.
func arcVectors(t *testing.T) (msg []byte, srv *dnstest.Server, res dnsres.Resolver, sealer *arc.Sealer) {
	t.Helper()
	read := func(n string) []byte {
		b, err := os.ReadFile("../policy/arc/testdata/" + n)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	srv = dnstest.NewServer(t)
	srv.AddTXT("sel._domainkey.fwd.example", strings.TrimSpace(string(read("key.txt"))))
	res, err := dnsres.New(dnsres.Config{Servers: []string{srv.Addr()}, Timeout: 300 * time.Millisecond, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	key, err := dkimsign.ParsePrivateKey(read("key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	sealer, err = arc.NewSealer(arc.SealerOptions{Domain: "fwd.example", Selector: "sel", Key: key, Resolver: res})
	if err != nil {
		t.Fatal(err)
	}
	return read("chain2.eml"), srv, res, sealer
}

// An inbound ARC chain: its validation is in the rules' arc facts and in
// moat's Authentication-Results; the copy an alias forwards off-site
// gets moat's ARC set (i=3, cv=pass) on top, and the local copy none.
func TestARCFactsAndSeal(t *testing.T) {
	msg, _, res, sealer := arcVectors(t)
	eng := loadRules(t, `rules:
  - name: arc-ok
    stage: data
    when: arc.result == "pass" && arc.cv == "pass" && arc.instances == 2 && arc.oldest_pass == 1 && arc.aar startsWith "mx.fwd.example; spf=pass" && arc.domain == "fwd.example"
    action: add_header
    header: {name: X-ARC-Seen, value: "pass"}
`, rules.LoadOptions{FactGroups: []rules.FactGroup{ARCFactGroup()}})
	ts := startServer(t, func(o *Options) {
		o.Checks = &Checks{Resolver: res, Rules: eng, AuthservID: "mx.example.org", Timeout: 2 * time.Second, Sealer: sealer}
	})
	rc := smtptest.DialRaw(t, ts.addr)
	rc.Expect("EHLO client.far.example", 250, "")
	rc.Expect("MAIL FROM:<list@fwd.example>", 250, "")
	rc.Expect("RCPT TO:<ext@example.org>", 250, "")
	rc.Expect("RCPT TO:<alice@example.org>", 250, "")
	rc.Expect("DATA", 354, "")
	rc.Send(string(msg))
	rc.Expect(".", 250, "")
	all := ts.spool.all()
	if len(all) != 2 {
		t.Fatalf("%d records", len(all))
	}
	fwd, local := all[0].data, all[1].data
	for _, m := range [][]byte{fwd, local} {
		if !bytes.Contains(m, []byte("X-ARC-Seen: pass")) {
			t.Errorf("rule on arc facts did not match:\n%.600s", m)
		}
		if !bytes.Contains(m, []byte("arc=pass (i=2 d=fwd.example) header.oldest-pass=0 smtp.remote-ip=127.0.0.1")) {
			t.Errorf("Authentication-Results without arc=:\n%.600s", m)
		}
	}
	if !bytes.HasPrefix(fwd, []byte("ARC-Seal: i=3; a=rsa-sha256; cv=pass; d=fwd.example; s=sel;")) {
		t.Errorf("forwarded copy not sealed:\n%.400s", fwd)
	}
	if bytes.Contains(local, []byte("i=3;")) {
		t.Error("local copy sealed")
	}
	if got := arc.Verify(context.Background(), res, fwd, arc.Options{}); got.Result != string(policy.ResultPass) || got.Instances != 3 {
		t.Errorf("the forwarded copy's chain: %+v", got)
	}
}
