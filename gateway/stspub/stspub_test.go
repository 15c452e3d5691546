package stspub

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"moat/gateway"
	"moat/internal/smtptest"
	"moat/relay/mtasts"
)

func TestTextIDAndRecord(t *testing.T) {
	p := Policy{Domain: "Example.ORG.", Mode: mtasts.ModeEnforce, MX: []string{"mx1.example.org", "*.mx.example.org"}}
	want := "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.org\r\nmx: *.mx.example.org\r\nmax_age: 604800\r\n"
	if p.Text() != want {
		t.Fatalf("text:\n%q\nwant\n%q", p.Text(), want)
	}
	id := p.ID()
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Fatalf("id %q", id)
	}
	if r := p.Record(); r != `_mta-sts.example.org. IN TXT "v=STSv1; id=`+id+`;"` {
		t.Fatalf("record %s", r)
	}
	q := p
	q.Mode = mtasts.ModeTesting
	if q.ID() == id {
		t.Fatal("a changed policy keeps its id")
	}
	if HostFor("Example.ORG.") != "mta-sts.example.org" {
		t.Fatal(HostFor("Example.ORG."))
	}
}

func TestValidate(t *testing.T) {
	good := Config{Listener: "127.0.0.1:443", Publish: []Policy{{Domain: "example.org", Mode: mtasts.ModeEnforce, MX: []string{"mx.example.org"}}}}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		p    Policy
		want string
	}{
		{Policy{Domain: "", Mode: mtasts.ModeNone}, "mta_sts.publish[1].domain"},
		{Policy{Domain: "example.org", Mode: mtasts.ModeNone}, "published twice"},
		{Policy{Domain: "b.example", Mode: "strict", MX: []string{"mx.b.example"}}, "mta_sts.publish[1].mode"},
		{Policy{Domain: "b.example", Mode: mtasts.ModeEnforce}, "mta_sts.publish[1].mx: a policy in mode enforce"},
		{Policy{Domain: "b.example", Mode: mtasts.ModeTesting, MX: []string{"mx.*.b.example"}}, "mta_sts.publish[1].mx[0]"},
		{Policy{Domain: "b.example", Mode: mtasts.ModeNone, MaxAge: 2 * maxMaxAge}, "mta_sts.publish[1].max_age"},
	} {
		cfg := good
		cfg.Publish = append(slices.Clone(good.Publish), c.p)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.p, err, c.want)
		}
	}
	bad := good
	bad.Listener = "443"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "mta_sts.listener") {
		t.Errorf("listener: %v", err)
	}
}

// FuzzText: a policy a sender's reader accepts, configured here, is
// served as text that reader reads back to the same policy.
func FuzzText(f *testing.F) {
	f.Add("version: STSv1\r\nmode: enforce\r\nmx: a.example\r\nmax_age: 86400\r\n")
	f.Add("version: STSv1\nmode: none\nmax_age: 0")
	f.Fuzz(func(t *testing.T, body string) {
		in, err := mtasts.Parse([]byte(body))
		if err != nil || in.MaxAge == 0 {
			return // max_age 0 is not configurable here (0: the default)
		}
		p := Policy{Mode: in.Mode, MX: in.MX, MaxAge: in.MaxAge}
		q, err := mtasts.Parse([]byte(p.Text()))
		if err != nil {
			t.Fatalf("%q renders to %q: %v", body, p.Text(), err)
		}
		if q.Mode != p.Mode || !slices.Equal(q.MX, lower(p.MX)) || q.MaxAge != p.maxAge() {
			t.Fatalf("round trip %+v → %+v", p, q)
		}
	})
}

func lower(in []string) []string {
	var out []string
	for _, s := range in {
		out = append(out, strings.ToLower(strings.TrimSuffix(s, ".")))
	}
	return out
}

// writeCert writes a certificate for names and returns its files and the
// pool that verifies it.
func writeCert(t *testing.T, names ...string) (gateway.CertFiles, *x509.CertPool) {
	dir := t.TempDir()
	c, pool := smtptest.Cert(t, names...)
	kder, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	f := gateway.CertFiles{CertFile: filepath.Join(dir, "c.pem"), KeyFile: filepath.Join(dir, "k.pem")}
	os.WriteFile(f.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600)
	os.WriteFile(f.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return f, pool
}

func TestServeOverHTTPS(t *testing.T) {
	cfg := Config{Listener: "127.0.0.1:0", Publish: []Policy{
		{Domain: "example.org", Mode: mtasts.ModeEnforce, MX: []string{"mx.example.org"}, MaxAge: 86400 * time.Second},
		{Domain: "example.net", Mode: mtasts.ModeTesting, MX: []string{"*.example.net"}},
	}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	org, orgPool := writeCert(t, "mta-sts.example.org")
	net2, netPool := writeCert(t, "mta-sts.example.net")
	certs, err := gateway.LoadCertificates(gateway.TLSFiles{Certificates: []gateway.CertFiles{org, net2}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := Serve(cfg, ln, certs.ServerConfig())
	defer s.Close()
	addr := s.Addr().String()
	get := func(method, host string, roots *x509.CertPool) (*http.Response, string, error) {
		tr := &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots},
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", addr)
			},
		}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest(method, "https://"+host+WellKnownPath, nil)
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, mtasts.MaxPolicySize+1))
		return resp, string(b), nil
	}
	for i, p := range cfg.Publish {
		pool := []*x509.CertPool{orgPool, netPool}[i]
		resp, body, err := get(http.MethodGet, HostFor(p.Domain), pool)
		if err != nil {
			t.Fatalf("%s: %v", p.Domain, err)
		}
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("%s: %s %s", p.Domain, resp.Status, resp.Header.Get("Content-Type"))
		}
		got, err := mtasts.Parse([]byte(body))
		if err != nil {
			t.Fatalf("%s: %q: %v", p.Domain, body, err)
		}
		if got.Mode != p.Mode || !slices.Equal(got.MX, p.MX) || got.MaxAge != p.maxAge() || body != p.Text() {
			t.Fatalf("%s: served %+v, configured %+v", p.Domain, got, p)
		}
	}
	// The certificate is checked: another CA's pool fails.
	if _, _, err := get(http.MethodGet, "mta-sts.example.org", netPool); err == nil {
		t.Fatal("handshake verified against the wrong root")
	}
	if resp, _, err := get(http.MethodPost, "mta-sts.example.org", orgPool); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %v %v", resp, err)
	}
}

func TestHandlerUnknownHostAndPath(t *testing.T) {
	h := Handler(Config{Publish: []Policy{{Domain: "example.org", Mode: mtasts.ModeNone}}})
	for _, c := range []struct{ host, path string }{
		{"mta-sts.example.com", WellKnownPath},
		{"example.org", WellKnownPath},
		{"mta-sts.example.org", "/"},
	} {
		rw := httptest.NewRecorder()
		h.ServeHTTP(rw, httptest.NewRequest(http.MethodGet, "https://"+c.host+c.path, nil))
		if rw.Code != http.StatusNotFound {
			t.Errorf("%s%s: %d", c.host, c.path, rw.Code)
		}
	}
	rw := httptest.NewRecorder()
	h.ServeHTTP(rw, httptest.NewRequest(http.MethodGet, "https://MTA-STS.example.org:8443"+WellKnownPath, nil))
	if rw.Code != 200 || rw.Body.String() != "version: STSv1\r\nmode: none\r\nmax_age: 604800\r\n" {
		t.Errorf("host with port and case: %d %q", rw.Code, rw.Body.String())
	}
}
