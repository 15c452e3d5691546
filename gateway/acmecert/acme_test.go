package acmecert_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"moat/gateway"
	"moat/gateway/acmecert"
	"moat/internal/dnstest"
	"moat/internal/pebbletest"
)

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// handshake connects to a listener served with conf, asking for name,
// and returns the verified chain (roots: the CA's root).
func handshake(t *testing.T, conf *tls.Config, name string, roots *x509.CertPool) (*x509.Certificate, error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.SetDeadline(time.Now().Add(time.Minute))
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	d := &net.Dialer{Timeout: time.Minute}
	// roots nil: not verified (for a name the certificate is not for).
	c, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), &tls.Config{ServerName: name, RootCAs: roots, InsecureSkipVerify: roots == nil})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

func TestObtainWithPebble(t *testing.T) {
	for _, challenge := range []string{acmecert.HTTP01, acmecert.TLSALPN01} {
		t.Run(challenge, func(t *testing.T) {
			const name = "mail.example.test"
			dns := dnstest.NewServer(t)
			dns.Add(name+". 60 IN A 127.0.0.1", "mta-sts.example.test. 60 IN A 127.0.0.1")
			pca := pebbletest.New(t)
			cfg := acmecert.DefaultConfig()
			cfg.Enabled = true
			cfg.DirectoryURL = pca.DirectoryURL
			cfg.CARootsFile = pca.RootsFile
			cfg.CacheDir = t.TempDir()
			cfg.Names = []string{name}
			cfg.Challenge = challenge
			cfg.HTTPListener = "127.0.0.1:0"
			if challenge == acmecert.TLSALPN01 {
				cfg.TLSListener = "127.0.0.1:0"
			}
			m, err := acmecert.New(cfg, acmecert.Options{Hostname: "ignored.example", Extra: []string{"mta-sts.example.test"}})
			if err != nil {
				t.Fatal(err)
			}
			// A file certificate as the default, for names ACME does not serve.
			certs, err := gateway.LoadCertificates(gateway.TLSFiles{})
			if err != nil {
				t.Fatal(err)
			}
			certs.SetSource(m)
			conf := certs.ServerConfig()
			if err := m.Start(conf); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close(t.Context()) })
			httpPort, tlsPort := closedPort(t), closedPort(t)
			if a := m.HTTPAddr(); a != nil {
				httpPort = a.(*net.TCPAddr).Port
			}
			if a := m.TLSAddr(); a != nil {
				tlsPort = a.(*net.TCPAddr).Port
			}
			pca.Run(t, dns.Addr(), httpPort, tlsPort)

			// The handshake waits for the certificate, verified to the CA's root.
			leaf, err := handshake(t, conf, name, pca.Roots())
			if err != nil {
				t.Fatalf("handshake for %s: %v", name, err)
			}
			if err := leaf.VerifyHostname(name); err != nil {
				t.Fatal(err)
			}
			if l := m.Leaf(name); l == nil || !l.NotAfter.Equal(leaf.NotAfter) {
				t.Fatalf("Leaf(%s) = %v, served NotAfter %v", name, l, leaf.NotAfter)
			}
			if _, err := handshake(t, conf, "mta-sts.example.test", pca.Roots()); err != nil {
				t.Fatalf("extra name: %v", err)
			}
			// A name outside the list, or none, gets the first name's
			// certificate (there is no file default here).
			for _, sni := range []string{"other.example.test", ""} {
				leaf, err := handshake(t, conf, sni, nil)
				if err != nil {
					t.Fatalf("SNI %q: %v", sni, err)
				}
				if err := leaf.VerifyHostname(name); err != nil {
					t.Fatalf("SNI %q: %v", sni, err)
				}
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	ok := acmecert.DefaultConfig()
	ok.Enabled = true
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		edit func(*acmecert.Config)
		want string
	}{
		{func(c *acmecert.Config) { c.Challenge = "dns-01" }, "acme.challenge"},
		{func(c *acmecert.Config) { c.DirectoryURL = "http://ca.example/dir" }, "acme.directory_url"},
		{func(c *acmecert.Config) { c.Names = []string{"*.example.org"} }, "acme.names[0]"},
		{func(c *acmecert.Config) { c.Names = []string{"localhost"} }, "acme.names[0]"},
		{func(c *acmecert.Config) { c.Names = []string{"a.example", "192.0.2.1"} }, "acme.names[1]"},
		{func(c *acmecert.Config) { c.HTTPListener = "80" }, "acme.http_listener"},
		{func(c *acmecert.Config) { c.TLSListener = "x" }, "acme.tls_listener"},
		{func(c *acmecert.Config) { c.Email = "not an address" }, "acme.email"},
		{func(c *acmecert.Config) { c.CARootsFile = "/nonexistent" }, "acme.ca_roots_file"},
		{func(c *acmecert.Config) { c.RenewBefore = time.Hour }, "acme.renew_before"},
	} {
		c2 := ok
		c.edit(&c2)
		if err := c2.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want error naming %s, got %v", c.want, err)
		}
	}
	off := acmecert.Config{Challenge: "bogus"}
	if err := off.Validate(); err != nil {
		t.Errorf("disabled section validated: %v", err)
	}
}

func TestNamesDefaultAndExtra(t *testing.T) {
	got := acmecert.Names(acmecert.Config{}, "MX.Example.org.", []string{"mta-sts.example.org", "mx.example.org"})
	if strings.Join(got, ",") != "mx.example.org,mta-sts.example.org" {
		t.Fatalf("names: %v", got)
	}
}

// A certificate inside renew_before of its expiry is renewed by itself:
// Pebble issues for an hour, renew_before is a day, so autocert renews
// at once after the first issue, and Leaf (the expiry metric) follows the
// renewed certificate without a handshake.
func TestRenewalAheadOfExpiry(t *testing.T) {
	const name = "renew.example.test"
	dns := dnstest.NewServer(t)
	dns.Add(name + ". 60 IN A 127.0.0.1")
	pca := pebbletest.New(t)
	pca.Validity = time.Hour
	cfg := acmecert.DefaultConfig()
	cfg.Enabled = true
	cfg.DirectoryURL = pca.DirectoryURL
	cfg.CARootsFile = pca.RootsFile
	cfg.CacheDir = t.TempDir()
	cfg.Names = []string{name}
	cfg.Challenge = acmecert.TLSALPN01
	cfg.TLSListener = "127.0.0.1:0"
	cfg.RenewBefore = 24 * time.Hour
	m, err := acmecert.New(cfg, acmecert.Options{})
	if err != nil {
		t.Fatal(err)
	}
	certs, _ := gateway.LoadCertificates(gateway.TLSFiles{})
	certs.SetSource(m)
	conf := certs.ServerConfig()
	if err := m.Start(conf); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(t.Context()) })
	pca.Run(t, dns.Addr(), closedPort(t), m.TLSAddr().(*net.TCPAddr).Port)
	first, err := handshake(t, conf, name, pca.Roots())
	if err != nil {
		t.Fatal(err)
	}
	// Bounded wait for the renewal (no assertion on how long it takes).
	for i := 0; i < 600; i++ {
		if l := m.Leaf(name); l != nil && l.SerialNumber.Cmp(first.SerialNumber) != 0 {
			if err := l.VerifyHostname(name); err != nil {
				t.Fatal(err)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the certificate was not renewed within renew_before of its expiry")
}
