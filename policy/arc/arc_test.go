package arc

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
	"moat/policy"
	"moat/policy/dkimsign"
)

// The vectors in testdata were made by dkimpy's arc_sign (gen.py), with
// the key in key.pem published as sel._domainkey.fwd.example.

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newDNS(t testing.TB) (*dnstest.Server, dnsres.Resolver) {
	srv := dnstest.NewServer(t)
	srv.AddTXT("sel._domainkey.fwd.example", strings.TrimSpace(string(read(t, "key.txt"))))
	return srv, dnsres.ForTest(srv.Addr())
}

func verify(t *testing.T, r dnsres.Resolver, msg []byte) policy.ARC {
	t.Helper()
	return Verify(context.Background(), r, msg, Options{LookupTimeout: 2 * time.Second})
}

func TestVerifyReferenceChains(t *testing.T) {
	_, r := newDNS(t)
	c1 := verify(t, r, read(t, "chain1.eml"))
	if c1.Result != string(policy.ResultPass) || c1.Instances != 1 || c1.CV != "none" || c1.OldestPass != 1 || c1.Domain != "fwd.example" {
		t.Errorf("chain1: %+v", c1)
	}
	if !strings.HasPrefix(c1.AAR, "mx.fwd.example; spf=pass") || strings.Contains(c1.AAR, "i=1") {
		t.Errorf("chain1 AAR %q", c1.AAR)
	}
	c2 := verify(t, r, read(t, "chain2.eml"))
	if c2.Result != string(policy.ResultPass) || c2.Instances != 2 || c2.CV != "pass" || c2.OldestPass != 1 {
		t.Errorf("chain2: %+v", c2)
	}
	if !strings.HasPrefix(c2.AAR, "mx.fwd.example; spf=pass") {
		t.Errorf("chain2: AAR of the oldest pass %q", c2.AAR)
	}
}

func TestVerifyBroken(t *testing.T) {
	srv, r := newDNS(t)
	c2 := read(t, "chain2.eml")
	for _, c := range []struct {
		name string
		msg  []byte
		want policy.Result
		why  string
	}{
		{"no ARC", []byte("From: a@b.example\r\nSubject: x\r\n\r\nbody\r\n"), policy.ResultNone, ""},
		{"body changed", bytes.Replace(c2, []byte("this is the body"), []byte("this is another body"), 1), policy.ResultFail, "ARC-Message-Signature i=2: body hash"},
		{"signed field changed", bytes.Replace(c2, []byte("Subject: ARC test"), []byte("Subject: ARC jest"), 1), policy.ResultFail, "ARC-Message-Signature i=2: signature did not verify"},
		{"AAR of i=1 changed", bytes.Replace(c2, []byte("spf=pass smtp.mailfrom"), []byte("spf=fail smtp.mailfrom"), 1), policy.ResultFail, "ARC-Seal i=2"},
		{"set 1 removed", dropFields(c2, "i=1;"), policy.ResultFail, "incomplete"},
		{"newest cv=fail", bytes.Replace(c2, []byte("i=2; cv=pass"), []byte("i=2; cv=fail"), 1), policy.ResultFail, "cv=fail"},
		{"i=1 cv=pass", bytes.Replace(c2, []byte("i=1; cv=none"), []byte("i=1; cv=pass"), 1), policy.ResultFail, "want none"},
		{"instance 51", bytes.Replace(c2, []byte("ARC-Seal: i=2;"), []byte("ARC-Seal: i=51;"), 1), policy.ResultFail, "not an instance"},
		{"duplicate seal", append([]byte("ARC-Seal: i=2; cv=pass; a=rsa-sha256; d=x; s=y; b=AAAA\r\n"), c2...), policy.ResultFail, "two ARC-Seal"},
		{"AAR without results", append([]byte("ARC-Authentication-Results: i=3\r\n"), c2...), policy.ResultFail, "without results"},
	} {
		got := verify(t, r, c.msg)
		if got.Result != string(c.want) || !strings.Contains(got.Reason, c.why) {
			t.Errorf("%s: %s (%s), want %s (%s)", c.name, got.Result, got.Reason, c.want, c.why)
		}
		if got.Result != string(policy.ResultPass) && (got.AAR != "" || got.OldestPass != 0) {
			t.Errorf("%s: AAR given for a chain that did not pass: %+v", c.name, got)
		}
	}
	// The key: gone (fail), SERVFAIL (temperror, never pass).
	srv.Fail("sel._domainkey.fwd.example", dns.TypeTXT, dnstest.ServFail)
	if got := verify(t, r, c2); got.Result != string(policy.ResultTempError) {
		t.Errorf("SERVFAIL: %+v", got)
	}
	srv.Clear()
	if got := verify(t, r, c2); got.Result != string(policy.ResultFail) {
		t.Errorf("no key: %+v", got)
	}
}

// dropFields removes the ARC fields whose value starts with prefix.
func dropFields(msg []byte, prefix string) []byte {
	lines := strings.SplitAfter(string(msg), "\r\n")
	var out strings.Builder
	skip := false
	for _, l := range lines {
		if l != "" && l[0] != ' ' && l[0] != '\t' {
			name, v, _ := strings.Cut(l, ":")
			skip = strings.HasPrefix(name, "ARC-") && strings.HasPrefix(strings.TrimSpace(v), prefix)
		}
		if !skip {
			out.WriteString(l)
		}
	}
	return []byte(out.String())
}

func TestVerifyLimits(t *testing.T) {
	_, r := newDNS(t)
	var b strings.Builder
	for i := 1; i <= MaxInstances; i++ {
		fmt.Fprintf(&b, "ARC-Authentication-Results: i=%d; x; none\r\n", i)
		fmt.Fprintf(&b, "ARC-Message-Signature: i=%d; a=rsa-sha256; d=x; s=y; h=from; bh=AAAA; b=AAAA\r\n", i)
		fmt.Fprintf(&b, "ARC-Seal: i=%d; cv=pass; a=rsa-sha256; d=x; s=y; b=AAAA\r\n", i)
	}
	b.WriteString("ARC-Seal: i=1; cv=none; a=rsa-sha256; d=x; s=y; b=AAAA\r\n")
	b.WriteString("\r\nbody\r\n")
	if got := verify(t, r, []byte(b.String())); got.Result != string(policy.ResultFail) || !strings.Contains(got.Reason, "more than 50") {
		t.Errorf("151 ARC fields: %+v", got)
	}
	big := append(bytes.Repeat([]byte("X-Pad: "+strings.Repeat("a", 1000)+"\r\n"), MaxHeaderBytes/1000), "\r\nbody\r\n"...)
	if got := verify(t, r, big); got.Result != string(policy.ResultFail) || !strings.Contains(got.Reason, "header larger") {
		t.Errorf("huge header: %+v", got)
	}
}

func rsaSealer(t *testing.T, r dnsres.Resolver) *Sealer {
	t.Helper()
	key, err := dkimsign.ParsePrivateKey(read(t, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSealer(SealerOptions{Domain: "fwd.example", Selector: "sel", Key: key, Resolver: r})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealThenVerify(t *testing.T) {
	srv, r := newDNS(t)
	s := rsaSealer(t, r)
	head := []byte("Received: from c.example by mx.fwd.example; Fri, 04 Dec 2026 12:00:00 +0000\r\nAuthentication-Results: mx.fwd.example; spf=pass smtp.mailfrom=a@orig.example\r\n")
	raw := []byte("From: a@orig.example\r\nTo: list@fwd.example\r\nSubject: hi\r\n\r\nbody  text \r\n\r\n")
	set, err := s.Seal(context.Background(), head, raw, "mx.fwd.example; spf=pass smtp.mailfrom=a@orig.example")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(set, "ARC-Seal: i=1; a=rsa-sha256; cv=none;") || !strings.Contains(set, "ARC-Authentication-Results: i=1; mx.fwd.example; spf=pass") {
		t.Fatalf("set:\n%s", set)
	}
	sealed := append(append([]byte(set), head...), raw...)
	if got := verify(t, r, sealed); got.Result != string(policy.ResultPass) || got.Instances != 1 {
		t.Fatalf("own seal: %+v", got)
	}

	// On top of dkimpy's two sets: i=3, cv=pass, still passing.
	c2 := read(t, "chain2.eml")
	set3, err := s.Seal(context.Background(), head, c2, "mx.fwd.example; arc=pass")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(set3, "i=3; a=rsa-sha256; cv=pass;") {
		t.Fatalf("third set:\n%s", set3)
	}
	m3 := append(append([]byte(set3), head...), c2...)
	if got := verify(t, r, m3); got.Result != string(policy.ResultPass) || got.Instances != 3 || got.OldestPass != 1 {
		t.Fatalf("three sets: %+v", got)
	}

	// A broken incoming chain is not sealed.
	broken := bytes.Replace(c2, []byte("this is the body"), []byte("this is changed"), 1)
	if _, err := s.Seal(context.Background(), head, broken, "x; arc=fail"); err == nil || !strings.Contains(err.Error(), "not sealed") {
		t.Errorf("broken chain sealed: %v", err)
	}
	// Nor one that cannot be checked now.
	srv.Fail("sel._domainkey.fwd.example", dns.TypeTXT, dnstest.ServFail)
	if _, err := s.Seal(context.Background(), head, c2, "x; arc=temperror"); err == nil {
		t.Error("chain sealed during SERVFAIL")
	}
}

// Ed25519 seals are refused (dkimpy's ARC cannot verify them), while
// Ed25519 ARC signatures verify: a chain sealed by hand with one.
func TestSealEd25519(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := NewSealer(SealerOptions{Domain: "fwd.example", Selector: "ed", Key: priv}); err == nil || !strings.Contains(err.Error(), "rsa-sha256 only") {
		t.Fatalf("Ed25519 sealer: %v", err)
	}
	srv, r := newDNS(t)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	srv.AddTXT("ed._domainkey.fwd.example", "v=DKIM1; k=ed25519; p="+base64.StdEncoding.EncodeToString(pub))
	s := &Sealer{o: SealerOptions{Domain: "fwd.example", Selector: "ed", Key: priv, Resolver: r, Now: time.Now}}
	raw := []byte("From: a@orig.example\r\nSubject: hi\r\n\r\nbody\r\n")
	set, err := s.Seal(context.Background(), nil, raw, "mx.fwd.example; none")
	if err != nil {
		t.Fatal(err)
	}
	if got := verify(t, r, append([]byte(set), raw...)); got.Result != string(policy.ResultPass) || !strings.Contains(set, "a=ed25519-sha256") {
		t.Fatalf("ed25519 chain: %+v\n%s", got, set)
	}
}

// FuzzParse fuzzes the parser of ARC header fields (instances, tags,
// the set structure and its bounds); the cryptography is exercised on the
// reference vectors above.
func FuzzParse(f *testing.F) {
	f.Add(read(f, "chain2.eml"))
	f.Add(read(f, "chain1.eml"))
	f.Add([]byte("ARC-Seal: i=1; cv=none; a=rsa-sha256; d=x; s=y; b=\r\nARC-Message-Signature: i=1; h=from; bh=; b=\r\nARC-Authentication-Results: i=1; x; none\r\n\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		hdr, _, err := splitMessage(msg)
		if err != nil {
			return
		}
		sets, err := parseSets(hdr)
		if err != nil {
			return
		}
		if len(sets) > MaxInstances+1 {
			t.Fatalf("%d sets", len(sets)-1)
		}
		for i := 1; i < len(sets); i++ {
			s := sets[i]
			if s.aar == nil || s.ams == nil || s.seal == nil || s.amsTags == nil || s.sealTags == nil {
				t.Fatalf("set %d incomplete but accepted", i)
			}
			if n, err := instance(s.sealTags); err != nil || n != i {
				t.Fatalf("seal of set %d has i=%d (%v)", i, n, err)
			}
		}
	})
}
