package gateway

import (
	"crypto/tls"
	"net"
	"os"
	"testing"

	"moat/internal/smtptest"
)

// writePair writes a self-signed certificate for cn and its key as PEM.
func writePair(t *testing.T, dir, cn string) TLSFiles {
	t.Helper()
	cert, key := smtptest.SelfSigned(t, dir, cn)
	return TLSFiles{CertFile: cert, KeyFile: key}
}

// peerName handshakes with cfg and returns the certificate's name.
func peerName(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

func TestCertificateReloadWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	files := writePair(t, dir, "old.example.org")
	certs, err := LoadCertificates(files)
	if err != nil {
		t.Fatal(err)
	}
	cfg := certs.ServerConfig()
	if got := peerName(t, cfg); got != "old.example.org" {
		t.Fatalf("before: %s", got)
	}
	writePair(t, dir, "new.example.org")
	if err := certs.Reload(); err != nil {
		t.Fatal(err)
	}
	// The same *tls.Config (held by the running listeners) now serves the new one.
	if got := peerName(t, cfg); got != "new.example.org" {
		t.Fatalf("after reload: %s", got)
	}
	// Leaf is the certificate in use (its expiry goes to metrics).
	if l := certs.Leaf(); l == nil || l.Subject.CommonName != "new.example.org" || l.NotAfter.IsZero() {
		t.Fatalf("leaf after reload: %+v", l)
	}
	// A broken file keeps the certificate in force.
	os.WriteFile(files.CertFile, []byte("garbage"), 0o600)
	if err := certs.Reload(); err == nil {
		t.Fatal("reload of a broken certificate succeeded")
	}
	if got := peerName(t, cfg); got != "new.example.org" {
		t.Fatalf("after failed reload: %s", got)
	}
}

func TestServerTLSRefusesOldVersions(t *testing.T) {
	files := writePair(t, t.TempDir(), "mx.example.org")
	certs, err := LoadCertificates(files)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", certs.ServerConfig())
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
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if err := c.Handshake(); err == nil {
		t.Fatal("TLS 1.1 handshake succeeded")
	}
	c.Close()
}
