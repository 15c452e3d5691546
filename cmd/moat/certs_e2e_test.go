package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"moat/gateway/stspub"
	"moat/internal/dnstest"
	"moat/internal/pebbletest"
	"moat/internal/smtptest"
	"moat/relay/mtasts"
)

// certConfig writes a config whose mx listener offers STARTTLS.
func certConfig(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := `
hostname: mx.example.org
data_dir: ` + dir + `
log: {level: debug, format: console}
admin: {address: "127.0.0.1:0"}
listeners:
  - {name: mx, address: "127.0.0.1:0", mode: mx, tls: starttls}
trusted_networks: []
domains:
  local: [example.org]
dns:
  servers: ["` + dnstest.NewServer(t).Addr() + `"]
  timeout: 500ms
mailboxes:
  users:
    alice@example.org: {}
` + extra
	path := filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// starttlsPeer does EHLO, STARTTLS with sni and returns the server's
// certificate; roots nil skips verification.
func starttlsPeer(t *testing.T, addr, sni string, roots *x509.CertPool) (*x509.Certificate, error) {
	t.Helper()
	c, err := gosmtp.DialStartTLS(addr, &tls.Config{ServerName: sni, RootCAs: roots, InsecureSkipVerify: roots == nil})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// The handshake happens at the next command.
	if err := c.Hello("client.example"); err != nil {
		return nil, err
	}
	st, ok := c.TLSConnectionState()
	if !ok {
		t.Fatal("no TLS after STARTTLS")
	}
	return st.PeerCertificates[0], nil
}

// certMetric is moat_tls_certificate_not_after_seconds{name}; 0 if absent.
func certMetric(t *testing.T, a *app, name string) float64 {
	t.Helper()
	fams, err := a.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "moat_tls_certificate_not_after_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "name" && l.GetValue() == name {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

func writeCertPair(t *testing.T, dir, tag string, names ...string) (cert, key string, pool *x509.CertPool) {
	t.Helper()
	c, pool := smtptest.Cert(t, names...)
	kder, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, tag+".crt"), filepath.Join(dir, tag+".key")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return cert, key, pool
}

// Several certificates chosen by SNI on the STARTTLS listener, the
// expiry metric per file, and a SIGHUP reload that takes a renewed file
// and keeps every old one when a file is broken.
func TestSNICertificatesReloadE2E(t *testing.T) {
	dir := t.TempDir()
	defCert, defKey, _ := writeCertPair(t, dir, "default", "mx.example.org")
	otherCert, otherKey, _ := writeCertPair(t, dir, "other", "mail.example.net")
	path := certConfig(t, `
tls:
  cert_file: `+defCert+`
  key_file: `+defKey+`
  certificates:
    - {cert_file: `+otherCert+`, key_file: `+otherKey+`}
`)
	if out, err := runCmd("check-config", path); err != nil {
		t.Fatalf("check-config: %v\n%s", err, out)
	}
	a := startApp(t, path)
	addr := a.gw.Addr("mx").String()
	for sni, want := range map[string]string{"": "mx.example.org", "mail.example.net": "mail.example.net", "unknown.example": "mx.example.org"} {
		leaf, err := starttlsPeer(t, addr, sni, nil)
		if err != nil || leaf.Subject.CommonName != want {
			t.Fatalf("SNI %q: %v %v, want %s", sni, leaf, err, want)
		}
	}
	before := certMetric(t, a, otherCert)
	if before == 0 || certMetric(t, a, defCert) == 0 {
		t.Fatal("no expiry metric per certificate file")
	}
	// Renewed: the same file, another name.
	writeCertPair(t, dir, "other", "mail.example.net", "smtp.example.net")
	a.reload(path)
	if leaf, err := starttlsPeer(t, addr, "smtp.example.net", nil); err != nil || leaf.Subject.CommonName != "mail.example.net" {
		t.Fatalf("after reload: %v %v", leaf, err)
	}
	// A broken default file: the reload keeps all the old certificates.
	os.WriteFile(defKey, []byte("broken"), 0o600)
	a.reload(path)
	if leaf, err := starttlsPeer(t, addr, "smtp.example.net", nil); err != nil || leaf.Subject.CommonName != "mail.example.net" {
		t.Fatalf("after a failed reload: %v %v", leaf, err)
	}
	if leaf, err := starttlsPeer(t, addr, "", nil); err != nil || leaf.Subject.CommonName != "mx.example.org" {
		t.Fatalf("default after a failed reload: %v %v", leaf, err)
	}
}

// ACME end to end: moat obtains certificates for its hostname and for
// mta-sts.example.org from Pebble (real HTTP-01 validation through a
// DNS server on loopback), an SMTP client doing STARTTLS with the name
// gets a certificate chained to Pebble's root, and the MTA-STS policy
// is served over HTTPS with the ACME certificate.
func TestACMEAndMTASTSE2E(t *testing.T) {
	dns := dnstest.NewServer(t)
	dns.Add("mx.example.org. 60 IN A 127.0.0.1", "mta-sts.example.org. 60 IN A 127.0.0.1")
	pca := pebbletest.New(t)
	path := certConfig(t, `
acme:
  enabled: true
  directory_url: `+pca.DirectoryURL+`
  ca_roots_file: `+pca.RootsFile+`
  challenge: http-01
  http_listener: "127.0.0.1:0"
mta_sts:
  listener: "127.0.0.1:0"
  publish:
    - {domain: example.org, mode: enforce, mx: [mx.example.org], max_age: 86400s}
`)
	if out, err := runCmd("check-config", path); err != nil {
		t.Fatalf("check-config: %v\n%s", err, out)
	}
	a := startApp(t, path)
	if got := strings.Join(a.certx.acme.Names(), ","); got != "mx.example.org,mta-sts.example.org" {
		t.Fatalf("acme names %s", got)
	}
	// Nothing listens on the TLS-ALPN-01 port: autocert's first try fails
	// and it falls back to HTTP-01, as it would without a listener on 443.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	pca.Run(t, dns.Addr(), a.certx.acme.HTTPAddr().(*net.TCPAddr).Port, closed)

	leaf, err := starttlsPeer(t, a.gw.Addr("mx").String(), "mx.example.org", pca.Roots())
	if err != nil {
		t.Fatalf("STARTTLS verified against Pebble's root: %v", err)
	}
	if err := leaf.VerifyHostname("mx.example.org"); err != nil {
		t.Fatal(err)
	}
	if got := certMetric(t, a, "acme:mx.example.org"); got != float64(leaf.NotAfter.Unix()) {
		t.Fatalf("expiry metric %v, certificate %v", got, leaf.NotAfter.Unix())
	}

	// The policy, fetched as a sender does (RFC 8461 §3.3).
	stsAddr := a.certx.sts.Addr().String()
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pca.Roots()},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: time.Minute}).DialContext(ctx, "tcp", stsAddr)
		},
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: time.Minute}).Get("https://mta-sts.example.org" + stspub.WellKnownPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, mtasts.MaxPolicySize))
	resp.Body.Close()
	p, err := mtasts.Parse(body)
	if err != nil || p.Mode != "enforce" || len(p.MX) != 1 || p.MX[0] != "mx.example.org" || p.MaxAge != 86400*time.Second {
		t.Fatalf("policy %q: %+v %v", body, p, err)
	}
	root := rootCommand()
	var stdout strings.Builder
	root.SetOut(&stdout)
	root.SetArgs([]string{"mta-sts", "record", path})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	out := stdout.String()
	want := `_mta-sts.example.org. IN TXT "v=STSv1; id=` + a.cfg.Load().MTASTS.Own.Publish[0].ID() + `;"`
	if !strings.Contains(out, want) {
		t.Fatalf("mta-sts record:\n%s\nwant %s", out, want)
	}
}

func TestMTASTSNeedsACertificate(t *testing.T) {
	dir := t.TempDir()
	cert, key, _ := writeCertPair(t, dir, "mx", "mx.example.org")
	path := certConfig(t, `
tls: {cert_file: `+cert+`, key_file: `+key+`}
mta_sts:
  listener: "127.0.0.1:0"
  publish:
    - {domain: example.org, mode: testing, mx: [mx.example.org]}
`)
	out, err := runCmd("check-config", path)
	if err == nil || !strings.Contains(out, "mta_sts.publish[0].domain: no certificate for mta-sts.example.org") {
		t.Fatalf("check-config: %v\n%s", err, out)
	}
}

// The CA cannot be reached: moat starts, and a handshake for an ACME name
// gets the files' certificate rather than failing.
func TestACMEUnreachableFallsBackToFiles(t *testing.T) {
	dir := t.TempDir()
	cert, key, pool := writeCertPair(t, dir, "mx", "mx.example.org")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	path := certConfig(t, `
tls: {cert_file: `+cert+`, key_file: `+key+`}
acme:
  enabled: true
  directory_url: https://`+closed+`/dir
  ca_roots_file: `+cert+`
  challenge: tls-alpn-01
`)
	if out, err := runCmd("check-config", path); err != nil {
		t.Fatalf("check-config: %v\n%s", err, out)
	}
	a := startApp(t, path)
	leaf, err := starttlsPeer(t, a.gw.Addr("mx").String(), "mx.example.org", pool)
	if err != nil {
		t.Fatalf("STARTTLS with the CA down: %v", err)
	}
	if leaf.Subject.CommonName != "mx.example.org" {
		t.Fatalf("served %s", leaf.Subject.CommonName)
	}
	if got := certMetric(t, a, "acme:mx.example.org"); got != 0 {
		t.Fatalf("expiry metric for a certificate never obtained: %v", got)
	}
}

// TLS-ALPN-01 answered on a listener moat already has (here the MTA-STS
// listener, the one an operator puts on 443): no HTTP listener at all.
func TestACMETLSALPNOnTheMTASTSListener(t *testing.T) {
	dns := dnstest.NewServer(t)
	dns.Add("mx.example.org. 60 IN A 127.0.0.1", "mta-sts.example.org. 60 IN A 127.0.0.1")
	pca := pebbletest.New(t)
	path := certConfig(t, `
acme:
  enabled: true
  directory_url: `+pca.DirectoryURL+`
  ca_roots_file: `+pca.RootsFile+`
  challenge: tls-alpn-01
mta_sts:
  listener: "127.0.0.1:0"
  publish:
    - {domain: example.org, mode: testing, mx: [mx.example.org]}
`)
	a := startApp(t, path)
	if a.certx.acme.HTTPAddr() != nil || a.certx.acme.TLSAddr() != nil {
		t.Fatal("a challenge listener of its own with tls-alpn-01 and no tls_listener")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	pca.Run(t, dns.Addr(), closed, a.certx.sts.Addr().(*net.TCPAddr).Port)
	leaf, err := starttlsPeer(t, a.gw.Addr("mx").String(), "mx.example.org", pca.Roots())
	if err != nil {
		t.Fatalf("STARTTLS verified against Pebble's root: %v", err)
	}
	if err := leaf.VerifyHostname("mx.example.org"); err != nil {
		t.Fatal(err)
	}
}
