//go:build interop

package interop

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"moat/internal/smtptest"
	"moat/test/testenv"
)

// TestSRSRoundTripThroughPostfix: an alias of moat forwards to a mailbox
// of a private Postfix that accepts it and then bounces it (an error(8)
// transport). The forwarded copy leaves moat with an SRS0 sender at
// srs.moat.test; Postfix sends its DSN there (a transport to moat); moat
// verifies the SRS address, reverses it and relays the bounce to the
// original sender, a mailbox of the same Postfix, where it is read.
func TestSRSRoundTripThroughPostfix(t *testing.T) {
	pf := testenv.StartPostfix(t, "corp.test", []string{"carol", "gone"})
	dir := t.TempDir()
	secrets := filepath.Join(dir, "srs.secrets")
	if err := os.WriteFile(secrets, []byte("interop-srs-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// ARC sealing too, with an RSA key for the SRS domain.
	bin := testenv.MoatBinary(t)
	keyFile := filepath.Join(dir, "srs.key")
	if out, err := exec.Command(bin, "dkim", "keygen", "--domain", "srs.moat.test", "--selector", "s1", "--out", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("dkim keygen: %v\n%s", err, out)
	}
	m := testenv.NewMoat(t, bin, testenv.MoatOptions{
		LocalDomain: "moat.test",
		Users:       []string{"alice@moat.test"},
		Relay:       map[string]string{"corp.test": "pf"},
		Routes:      map[string]string{"pf": "smtp " + pf.Addr},
		// Continues the mailboxes: section NewMoat ends with.
		Extra: "  aliases:\n    fwd@moat.test: gone@corp.test\n" +
			fmt.Sprintf("srs: {domain: srs.moat.test, secret_file: %q}\n", secrets) +
			fmt.Sprintf("dkim: {sign: [{domain: srs.moat.test, selector: s1, key_file: %q}]}\n", keyFile) +
			"arc: {seal: true}\n",
	})
	m.Start()

	// Postfix: gone@corp.test is accepted at RCPT and then bounced by a
	// pipe(8) transport whose command exits EX_NOUSER (67: a permanent
	// failure; an error(8) transport would be refused at RCPT already,
	// and then moat, not Postfix, would write the bounce); mail for the
	// SRS domain goes to moat.
	failer := filepath.Join(pf.Dir, "fail.sh")
	if err := os.WriteFile(failer, []byte("#!/bin/sh\necho 'mailbox gone (moat SRS interop)'\nexit 67\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	mf, err := os.OpenFile(filepath.Join(pf.Dir, "etc", "master.cf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(mf, "failer unix - n n - - pipe\n  user=nobody argv=%s\n", failer)
	mf.Close()
	transport := filepath.Join(pf.Dir, "etc", "transport")
	tr := "gone@corp.test failer:\n" +
		"srs.moat.test smtp:[" + strings.Replace(m.Addr, ":", "]:", 1) + "\n"
	if err := os.WriteFile(transport, []byte(tr), 0o644); err != nil {
		t.Fatal(err)
	}
	mainCf := filepath.Join(pf.Dir, "etc", "main.cf")
	f, err := os.OpenFile(mainCf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "transport_maps = texthash:%s\nbounce_queue_lifetime = 0\nmaximal_queue_lifetime = 1h\n", transport)
	f.Close()
	pf.Stop()
	pf.Start()
	logs := func() string { return "\npostfix log:\n" + pf.Log() + "\nmoat log:\n" + m.LogTail(40) }

	marker := fmt.Sprintf("srs-round-trip-%d", time.Now().UnixNano())
	msg := smtptest.Message("carol@corp.test", "fwd@moat.test", marker+"@corp.test", marker+"\r\n")
	if err := smtptest.Send(m.Addr, "carol@corp.test", []string{"fwd@moat.test"}, msg); err != nil {
		t.Fatalf("send to the alias: %v%s", err, logs())
	}
	var files []string
	if !testenv.WaitFor(90*time.Second, func() bool { files = pf.Delivered("carol@corp.test"); return len(files) >= 1 }) {
		t.Fatalf("no bounce reached the original sender carol@corp.test%s", logs())
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	// The DSN: Postfix's report about gone@corp.test, holding the
	// original message (and so the marker).
	if !bytes.Contains(b, []byte("gone@corp.test")) || !bytes.Contains(b, []byte(marker)) {
		t.Fatalf("carol's message is not the bounce of the forwarded copy:\n%s", b)
	}
	// The forwarded copy went out with an SRS0 sender, and Postfix
	// handed the bounce to moat at that address.
	srs0 := regexp.MustCompile(`SRS0=[A-Za-z0-9+/]{4}=[A-Z2-7]{2}=corp\.test=carol@srs\.moat\.test`)
	if !srs0.MatchString(pf.Log()) {
		t.Errorf("Postfix's log shows no SRS0 sender for the forwarded copy%s", logs())
	}
	// The returned original is the forwarded copy: sealed by moat.
	if !bytes.Contains(b, []byte("ARC-Seal: i=1; a=rsa-sha256; cv=none; d=srs.moat.test; s=s1;")) {
		t.Errorf("the forwarded copy in the bounce carries no ARC seal of moat:\n%s", b)
	}
	if !bytes.Contains(b, []byte("Return-Path: <>")) && !bytes.Contains(b, []byte("MAILER-DAEMON")) {
		t.Errorf("the bounce reached carol with a sender other than <>:\n%.800s", b)
	}

	// A forged SRS address is refused at RCPT (no backscatter, no relay).
	rc := smtptest.DialRaw(t, m.Addr)
	rc.Expect("EHLO forger.test", 250, "")
	rc.Expect("MAIL FROM:<>", 250, "")
	rc.Expect("RCPT TO:<SRS0=AAAA=AA=corp.test=carol@srs.moat.test>", 550, "5.1.1")
}
