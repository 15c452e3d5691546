package gateway

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/smtptest"
)

// pairFor writes a self-signed certificate for names (the first is the
// CN) under dir/tag and returns its files.
func pairFor(t *testing.T, dir, tag string, names ...string) CertFiles {
	t.Helper()
	c, _ := smtptest.Cert(t, names...)
	kder, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	f := CertFiles{CertFile: filepath.Join(dir, tag+".crt"), KeyFile: filepath.Join(dir, tag+".key")}
	os.WriteFile(f.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600)
	os.WriteFile(f.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return f
}

// nameFor handshakes asking for sni ("" sends none) and returns the CN served.
func nameFor(t *testing.T, cfg *tls.Config, sni string) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, ServerName: sni})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

func TestCertificateChosenByName(t *testing.T) {
	dir := t.TempDir()
	def := pairFor(t, dir, "default", "mx.example.org")
	files := TLSFiles{CertFile: def.CertFile, KeyFile: def.KeyFile, Certificates: []CertFiles{
		pairFor(t, dir, "a", "mail.a.example", "smtp.a.example"),
		pairFor(t, dir, "wild", "*.b.example"),
		pairFor(t, dir, "exact-b", "mx.b.example"),
	}}
	if err := files.Validate(); err != nil {
		t.Fatal(err)
	}
	certs, err := LoadCertificates(files)
	if err != nil {
		t.Fatal(err)
	}
	cfg := certs.ServerConfig()
	for sni, want := range map[string]string{
		"":                 "mx.example.org", // no SNI: the default
		"mx.example.org":   "mx.example.org",
		"smtp.a.example":   "mail.a.example", // second SAN
		"SMTP.A.EXAMPLE.":  "mail.a.example", // case and trailing dot
		"x.b.example":      "*.b.example",    // wildcard, one label
		"mx.b.example":     "mx.b.example",   // exact before wildcard
		"y.x.b.example":    "mx.example.org", // a wildcard covers one label only
		"b.example":        "mx.example.org",
		"other.example.ne": "mx.example.org",
	} {
		if got := nameFor(t, cfg, sni); got != want {
			t.Errorf("SNI %q: got %s, want %s", sni, got, want)
		}
	}
	if l := certs.LeafAt(2); l == nil || l.Subject.CommonName != "*.b.example" {
		t.Errorf("LeafAt(2) = %v", l)
	}
	if certs.LeafAt(4) != nil {
		t.Error("LeafAt past the end is not nil")
	}
}

func TestCertificatesWithoutLegacyPair(t *testing.T) {
	dir := t.TempDir()
	files := TLSFiles{Certificates: []CertFiles{pairFor(t, dir, "a", "first.example"), pairFor(t, dir, "b", "second.example")}}
	certs, err := LoadCertificates(files)
	if err != nil {
		t.Fatal(err)
	}
	if got := nameFor(t, certs.ServerConfig(), ""); got != "first.example" {
		t.Fatalf("default without cert_file: %s", got)
	}
}

func TestCertificatesReloadKeepsAllOnOneBadFile(t *testing.T) {
	dir := t.TempDir()
	a, b := pairFor(t, dir, "a", "a.example"), pairFor(t, dir, "b", "b.example")
	certs, err := LoadCertificates(TLSFiles{Certificates: []CertFiles{a, b}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := certs.ServerConfig()
	pairFor(t, dir, "a", "a.example", "new.a.example") // renewed, a new name
	if err := certs.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := nameFor(t, cfg, "new.a.example"); got != "a.example" {
		t.Fatalf("renewed certificate not in use: %s", got)
	}
	os.WriteFile(b.KeyFile, []byte("garbage"), 0o600)
	err = certs.Reload()
	if err == nil || !strings.Contains(err.Error(), "tls.certificates[1].cert_file") {
		t.Fatalf("bad second pair: %v", err)
	}
	if got := nameFor(t, cfg, "b.example"); got != "b.example" {
		t.Fatalf("after a failed reload: %s", got)
	}
}

func TestTLSFilesValidateNamesKey(t *testing.T) {
	dir := t.TempDir()
	a := pairFor(t, dir, "a", "a.example")
	for _, c := range []struct {
		files TLSFiles
		want  string
	}{
		{TLSFiles{CertFile: a.CertFile}, "tls: cert_file and key_file"},
		{TLSFiles{CertFile: a.CertFile, KeyFile: a.KeyFile, Certificates: []CertFiles{{CertFile: a.CertFile}}}, "tls.certificates[0]: cert_file and key_file"},
		{TLSFiles{Certificates: []CertFiles{a, {CertFile: a.KeyFile, KeyFile: a.KeyFile}}}, "tls.certificates[1].cert_file"},
	} {
		if err := c.files.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.files, err, c.want)
		}
	}
}
