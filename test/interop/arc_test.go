//go:build interop

package interop

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
	"moat/policy/arc"
	"moat/policy/dkimsign"
	"moat/test/testenv"
)

// arcverify runs dkimpy's arc_verify (testdata/arcverify.py: the key
// lookup answered from keys) on msg and returns its output and whether
// the chain passed.
func arcverify(t *testing.T, msg []byte, keys map[string]string) (string, bool) {
	t.Helper()
	py := testenv.NeedBinary(t, "/usr/bin/python3")
	if exec.Command(py, "-c", "import dkim, authres").Run() != nil {
		testenv.Missing(t, "python3-dkim and python3-authres are not installed (run: bash scripts/peers.sh)")
	}
	dir := t.TempDir()
	mf, kf := filepath.Join(dir, "msg.eml"), filepath.Join(dir, "keys")
	var kb strings.Builder
	for n, v := range keys {
		kb.WriteString(n + " " + v + "\n")
	}
	os.WriteFile(mf, msg, 0o600)
	os.WriteFile(kf, []byte(kb.String()), 0o600)
	out, err := exec.Command(py, "testdata/arcverify.py", mf, kf).CombinedOutput()
	return string(out), err == nil && strings.HasPrefix(string(out), "cv=pass")
}

// TestARCSealVerifiedByDkimpy: what moat's sealer adds is verified by
// dkimpy, the reference: a first set on a plain message and a third set
// on the chain dkimpy made (policy/arc's vectors); a message changed
// after sealing fails there too. (moat seals with RSA only: dkimpy's ARC
// answers "unknown signature algorithm" to ed25519-sha256.)
func TestARCSealVerifiedByDkimpy(t *testing.T) {
	vec := func(n string) []byte {
		b, err := os.ReadFile("../../policy/arc/testdata/" + n)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	rsaTXT := strings.TrimSpace(string(vec("key.txt")))
	rsaKey, err := dkimsign.ParsePrivateKey(vec("key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{"sel._domainkey.fwd.example": rsaTXT}

	srv := dnstest.NewServer(t)
	for n, v := range keys {
		srv.AddTXT(n, v)
	}
	res := dnsres.ForTest(srv.Addr())

	head := []byte("Received: from client.example ([192.0.2.1]) by mx.fwd.example; Fri, 04 Dec 2026 12:00:00 +0000\r\n" +
		"Authentication-Results: mx.fwd.example; spf=pass smtp.mailfrom=alice@orig.example\r\n")
	plain := []byte("From: Alice <alice@orig.example>\r\nTo: list@fwd.example\r\nSubject: sealed by moat\r\n" +
		"Date: Fri, 04 Dec 2026 11:59:00 +0000\r\nMessage-ID: <m1@orig.example>\r\n\r\nHello  there.\r\n\r\n")
	for _, c := range []struct {
		name, sel string
		raw       []byte
		ar        string
		want      string
	}{
		{"rsa, first set", "sel", plain, "mx.fwd.example; spf=pass smtp.mailfrom=alice@orig.example", "i=1;"},
		{"rsa, on dkimpy's chain", "sel", vec("chain2.eml"), "mx.fwd.example; arc=pass header.oldest-pass=0", "i=3;"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := arc.NewSealer(arc.SealerOptions{Domain: "fwd.example", Selector: c.sel, Key: rsaKey, Resolver: res})
			if err != nil {
				t.Fatal(err)
			}
			set, err := s.Seal(context.Background(), head, c.raw, c.ar)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(set, c.want) {
				t.Fatalf("set:\n%s", set)
			}
			msg := append(append([]byte(set), head...), c.raw...)
			if out, ok := arcverify(t, msg, keys); !ok {
				t.Fatalf("dkimpy does not verify moat's seal:\n%s\n%s", out, msg)
			}
			broken := []byte(strings.Replace(string(msg), "Hello", "Jello", 1))
			broken = []byte(strings.Replace(string(broken), "this is the body", "this is a body", 1))
			if out, ok := arcverify(t, broken, keys); ok {
				t.Fatalf("dkimpy passes a message changed after sealing:\n%s", out)
			}
		})
	}
}
