package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDovecotSnippet: the Dovecot configuration the guide ships is one
// Dovecot 2.3 accepts (doveconf refuses an unknown setting such as
// lmtp_trusted_networks), and it points at moat's layout. Skipped where
// Dovecot is not installed (make interop installs it).
func TestDovecotSnippet(t *testing.T) {
	snippet, err := filepath.Abs("dovecot/99-moat.conf")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(snippet)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"mail_uid = moat", "maildir:/var/lib/moat/mailboxes/%Ld/%Ln", "special_use = \\Junk"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the snippet lacks %q", want)
		}
	}
	doveconf, err := exec.LookPath("doveconf")
	if err != nil {
		t.Skip("doveconf not installed")
	}
	dir := t.TempDir()
	wrap := filepath.Join(dir, "dovecot.conf")
	os.WriteFile(wrap, []byte("!include "+snippet+"\nprotocols = imap\nbase_dir = "+dir+"/run\n"), 0o644)
	out, err := exec.Command(doveconf, "-c", wrap, "-n").CombinedOutput()
	if err != nil {
		t.Fatalf("doveconf refuses the snippet: %v\n%s", err, out)
	}
	for _, want := range []string{"mail_uid = moat", "first_valid_uid = 100"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("doveconf -n lacks %q:\n%s", want, out)
		}
	}
	// The check can fail: a setting Dovecot does not know is refused.
	os.WriteFile(wrap, []byte("!include "+snippet+"\nlmtp_trusted_networks = 127.0.0.1\nbase_dir = "+dir+"/run\n"), 0o644)
	if out, err := exec.Command(doveconf, "-c", wrap, "-n").CombinedOutput(); err == nil {
		t.Errorf("doveconf took an unknown setting:\n%s", out)
	}
}
