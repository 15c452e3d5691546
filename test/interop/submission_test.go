//go:build interop

package interop

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"moat/test/testenv"
)

// TestSwaksSubmission: a user added with `moat user add` submits with
// swaks over STARTTLS and AUTH PLAIN on the submission listener (RFC
// 6409, RFC 4954); the message arrives DKIM-signed for the user's domain
// and marked ESMTPSA. A wrong password gets 535; sending as someone else
// gets 550 5.7.1.
func TestSwaksSubmission(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		testenv.Missing(t, "swaks is not installed (run: bash scripts/peers.sh)")
	}
	m := testenv.NewMoat(t, testenv.MoatBinary(t), testenv.MoatOptions{
		LocalDomain: "moat.test",
		Users:       []string{"bob@moat.test"},
		Submission:  true,
	})
	m.User("carol@moat.test", "correct horse battery")
	m.Start()
	host, port, _ := strings.Cut(m.Submission, ":")
	submit := func(user, pass, from string) ([]byte, error) {
		return exec.Command(swaks, "--server", host, "--port", port, "--helo", "laptop.moat.test",
			"--tls", "--auth", "PLAIN", "--auth-user", user, "--auth-password", pass,
			"--from", from, "--to", "bob@moat.test", "--header", "From: "+from,
			"--header", "Subject: submission interop", "--body", "hello bob", "--timeout", "30").CombinedOutput()
	}

	if out, err := submit("carol@moat.test", "wrong", "carol@moat.test"); err == nil || !bytes.Contains(out, []byte("535")) {
		t.Fatalf("wrong password: err %v\n%s", err, out)
	}
	if out, err := submit("carol@moat.test", "correct horse battery", "bob@moat.test"); err == nil || !bytes.Contains(out, []byte("550 5.7.1")) {
		t.Fatalf("sending as bob: err %v\n%s", err, out)
	}
	out, err := submit("carol@moat.test", "correct horse battery", "carol@moat.test")
	if err != nil || !bytes.Contains(out, []byte("250 2.0.0 Ok: queued as")) {
		t.Fatalf("good submission: %v\n%s\nmoat log:\n%s", err, out, m.LogTail(30))
	}
	if !bytes.Contains(out, []byte("STARTTLS")) || !bytes.Contains(out, []byte("235 2.0.0")) {
		t.Errorf("swaks did not use STARTTLS and AUTH:\n%s", out)
	}
	var files []string
	if !testenv.WaitFor(30*time.Second, func() bool { files = m.MaildirNew("bob@moat.test"); return len(files) == 1 }) {
		t.Fatalf("bob has %d messages\nmoat log:\n%s", len(files), m.LogTail(30))
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"with ESMTPSA", "DKIM-Signature:", "d=moat.test", "s=test", "hello bob"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("delivered message lacks %q:\n%s", want, b)
		}
	}
}
