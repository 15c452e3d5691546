package dkimsign

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
	"moat/policy"
	"moat/policy/dkim"
)

const msg = "From: Alice <alice@example.org>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: hello\r\n" +
	"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"\r\n" +
	"Hi Bob.  \r\n\r\n\r\n"

func TestSignVerify(t *testing.T) {
	srv := dnstest.NewServer(t)
	r := dnsres.ForTest(srv.Addr())
	dir := t.TempDir()
	var keys []Key
	for i, algo := range []string{"rsa-2048", "ed25519"} {
		priv, txt, err := GenerateKey(algo)
		if err != nil {
			t.Fatal(err)
		}
		domain := []string{"example.org", "ed.example"}[i]
		file := filepath.Join(dir, algo+".pem")
		if err := os.WriteFile(file, priv, 0o600); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, Key{Domain: domain, Selector: "s" + algo[:2], KeyFile: file})
		srv.AddTXT("s"+algo[:2]+"._domainkey."+domain, txt)
	}
	s, err := NewSigner(keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		m := strings.Replace(msg, "example.org>", k.Domain+">", 1)
		h, ok, err := s.Sign(strings.ToUpper(k.Domain), strings.NewReader(m))
		if err != nil || !ok {
			t.Fatalf("%s: ok=%v err=%v", k.Domain, ok, err)
		}
		if !strings.HasPrefix(h, "DKIM-Signature: ") || !strings.HasSuffix(h, "\r\n") || !strings.Contains(h, "c=relaxed/relaxed") {
			t.Fatalf("header %q", h)
		}
		if !strings.Contains(strings.ToLower(strings.Join(strings.Fields(h), "")), "h=from:from:to") {
			t.Fatalf("From not oversigned: %q", h)
		}
		got := dkim.Verify(context.Background(), r, strings.NewReader(h+m), dkim.Options{})
		if got.Result != policy.ResultPass || got.Signatures[0].Domain != k.Domain || got.Signatures[0].Selector != k.Selector {
			t.Fatalf("%s: %+v", k.Domain, got)
		}
		// A From added after signing breaks the signature (oversigning).
		got = dkim.Verify(context.Background(), r, strings.NewReader(h+"From: evil@evil.test\r\n"+m), dkim.Options{})
		if got.Result == policy.ResultPass {
			t.Fatalf("%s: pass with an added From", k.Domain)
		}
	}
	if _, ok, err := s.Sign("other.test", strings.NewReader(msg)); ok || err != nil {
		t.Fatalf("unknown domain: ok=%v err=%v", ok, err)
	}
}

func TestKeysAndValidation(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := write("pkcs1.pem", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}))
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallFile := write("small.pem", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)}))
	junk := write("junk.pem", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	huge := write("huge.pem", make([]byte, maxKeyFile+10))

	if _, err := NewSigner([]Key{{Domain: "a.test", Selector: "s", KeyFile: pkcs1}}); err != nil {
		t.Fatalf("pkcs1: %v", err)
	}
	bad := []struct {
		keys []Key
		want string
	}{
		{[]Key{{Selector: "s", KeyFile: pkcs1}}, "keys[0].domain: required"},
		{[]Key{{Domain: "a.test", KeyFile: pkcs1}}, "keys[0].selector: required"},
		{[]Key{{Domain: "a.test", Selector: "s"}}, "keys[0].key_file: required"},
		{[]Key{{Domain: "a b", Selector: "s", KeyFile: pkcs1}}, "keys[0].domain:"},
		{[]Key{{Domain: "a.test", Selector: "s;x", KeyFile: pkcs1}}, "keys[0].selector:"},
		{[]Key{{Domain: "a.test", Selector: "s", KeyFile: pkcs1}, {Domain: "A.test", Selector: "t", KeyFile: pkcs1}}, "keys[1].domain:"},
		{[]Key{{Domain: "a.test", Selector: "s", KeyFile: smallFile}}, "too short"},
		{[]Key{{Domain: "a.test", Selector: "s", KeyFile: junk}}, "keys[0].key_file"},
		{[]Key{{Domain: "a.test", Selector: "s", KeyFile: huge}}, "larger than"},
		{[]Key{{Domain: "a.test", Selector: "s", KeyFile: filepath.Join(dir, "missing")}}, "keys[0].key_file"},
	}
	for _, b := range bad {
		_, err := NewSigner(b.keys)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%+v: err %v, want %q", b.keys, err, b.want)
		}
	}
	if err := ValidateKeys("dkim.keys", []Key{{Domain: "x.test"}}); err == nil || err.Error() != "dkim.keys[0].selector: required" {
		t.Errorf("got %v", err)
	}
	if _, _, err := GenerateKey("dsa"); err == nil {
		t.Error("dsa accepted")
	}
}

func FuzzParsePrivateKey(f *testing.F) {
	priv, _, _ := GenerateKey("ed25519")
	f.Add(priv)
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParsePrivateKey(b)
	})
}
