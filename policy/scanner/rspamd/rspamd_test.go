package rspamd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"moat/policy/scanner"
	"moat/policy/scanner/internal/scantest"
)

// seen is one request the fake rspamd received.
type seen struct {
	path   string
	header http.Header
	body   []byte
}

// fakeRspamd answers /checkv2 like rspamd's normal worker: "viagra" makes
// a spam answer; it wants the password "secret" when withPassword.
func fakeRspamd(t testing.TB, reqs chan<- seen, withPassword bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if reqs != nil {
			reqs <- seen{r.URL.Path, r.Header.Clone(), body}
		}
		switch {
		case r.URL.Path == "/ping" && r.Method == http.MethodGet:
			io.WriteString(w, "pong\r\n")
		case r.URL.Path != "/checkv2" || r.Method != http.MethodPost:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"unknown command"}`)
		case withPassword && r.Header.Get("Password") != "secret":
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"error":"Unauthorized"}`)
		case bytes.Contains(body, []byte("viagra")):
			io.WriteString(w, `{"is_skipped":false,"score":16.5,"required_score":15.0,"action":"reject",
				"symbols":{"R_DRUGS":{"name":"R_DRUGS","score":8.0,"options":["viagra"]},
				"MISSING_DATE":{"name":"MISSING_DATE","score":1.0},"ASN":{"name":"ASN","score":0.0}},
				"messages":{"smtp_message":"Spam message rejected"},"message-id":"x@y"}`)
		default:
			io.WriteString(w, `{"is_skipped":false,"score":-0.5,"required_score":15.0,"action":"no action","symbols":{}}`)
		}
	})
}

// serveHTTP runs h on 127.0.0.1:0 (tcp) or a unix socket and returns the
// scanner address.
func serveHTTP(t testing.TB, network string, h http.Handler) string {
	t.Helper()
	var (
		ln   net.Listener
		err  error
		addr string
	)
	if network == "unix" {
		path := filepath.Join(t.TempDir(), "rspamd.sock")
		ln, err = net.Listen("unix", path)
		addr = "unix:" + path
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			addr = "http://" + ln.Addr().String()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return addr
}

func newClient(t testing.TB, cfg scanner.Config) *Client {
	t.Helper()
	cfg.Name = "rs"
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func request(body string) *scanner.Request {
	return &scanner.Request{
		Message:    []byte("From: a@example.org\r\nSubject: t\r\n\r\n" + body + "\r\n"),
		ClientIP:   netip.MustParseAddr("::ffff:192.0.2.7"),
		ClientPort: 40000,
		ClientName: "mail.example.org",
		HELO:       "mail.example.org",
		Sender:     "a@example.org",
		Recipients: []string{"b@example.net", "c@example.net"},
		AuthUser:   "alice",
		QueueID:    "Q123",
		Hostname:   "mx.example.net",
	}
}

func TestScan(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			reqs := make(chan seen, 10)
			c := newClient(t, scanner.Config{Address: serveHTTP(t, network, fakeRspamd(t, reqs, true)), Password: "secret"})
			req := request("buy viagra")
			res, err := c.Scan(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			want := &scanner.Result{Score: 16.5, Threshold: 15, HasScore: true, Action: "reject",
				Symbols: []string{"ASN", "MISSING_DATE", "R_DRUGS"}}
			if !reflect.DeepEqual(res, want) {
				t.Errorf("spam: %+v", res)
			}
			got := <-reqs
			h := got.header
			wantH := map[string]string{"Ip": "192.0.2.7", "Helo": "mail.example.org", "Hostname": "mail.example.org",
				"From": "a@example.org", "Queue-Id": "Q123", "User": "alice", "Mta-Name": "mx.example.net",
				"Pass": "all", "Password": "secret"}
			for k, v := range wantH {
				if h.Get(k) != v {
					t.Errorf("header %s = %q, want %q", k, h.Get(k), v)
				}
			}
			if !reflect.DeepEqual(h.Values("Rcpt"), req.Recipients) {
				t.Errorf("Rcpt %q", h.Values("Rcpt"))
			}
			if got.path != "/checkv2" || !bytes.Equal(got.body, req.Message) {
				t.Errorf("path %q body %q", got.path, got.body)
			}

			res, err = c.Scan(context.Background(), request("hello"))
			if err != nil {
				t.Fatal(err)
			}
			if res.Action != "no action" || res.Score != -0.5 || !res.HasScore || res.Symbols != nil {
				t.Errorf("ham: %+v", res)
			}
			<-reqs
			if err := c.Ping(context.Background()); err != nil {
				t.Errorf("Ping: %v", err)
			}
		})
	}
}

// Header values that would break the request are left out; the null
// sender is "<>".
func TestHeaders(t *testing.T) {
	h := http.Header{}
	setHeaders(h, &scanner.Request{HELO: "a\r\nX-Evil: 1", Recipients: []string{"x@y"}}, "")
	if h.Get("Helo") != "" || h.Get("X-Evil") != "" || h.Get("From") != "<>" || h.Get("Ip") != "" || h.Get("Password") != "" {
		t.Errorf("%v", h)
	}
}

func kindOf(t *testing.T, err error, want scanner.ErrorKind) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", want)
	}
	var se *scanner.Error
	if !errors.As(err, &se) {
		t.Fatalf("%v is not a *scanner.Error", err)
	}
	if se.Kind != want || se.Scanner != "rs" {
		t.Errorf("error %v: kind %s, want %s", err, se.Kind, want)
	}
}

// raw answers the HTTP request with the octets s, then closes.
func raw(s string) func(net.Conn) {
	return func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		io.WriteString(c, s)
	}
}

func TestErrors(t *testing.T) {
	huge := strings.Repeat(`"x",`, MaxAnswer/4)
	cases := []struct {
		name   string
		handle func(net.Conn)
		kind   scanner.ErrorKind
	}{
		{"status 500", raw("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 26\r\n\r\n{\"error\":\"task timed out\"}"), scanner.KindRefused},
		{"not JSON", raw("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), scanner.KindProtocol},
		{"no action", raw("HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{\"score\":1.0}"), scanner.KindProtocol},
		{"error in 200", raw("HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n{\"error\":\"busy\"}"), scanner.KindRefused},
		{"not HTTP", raw("SPAMD/1.5 0 EX_OK\r\n\r\n"), scanner.KindProtocol},
		{"closed mid-answer", raw("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"action\":"), scanner.KindIO},
		{"closed at once", raw(""), scanner.KindIO},
		{"huge declared", raw("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n{}"), scanner.KindProtocol},
		{"huge chunked", raw("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"action\":\"reject\",\"x\":[" + huge + "1]}"), scanner.KindProtocol},
		{"hangs", nil, scanner.KindTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			var addr string
			if tc.handle == nil {
				addr = scantest.ServeStop(t, "tcp", scantest.Hang)
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
			} else {
				addr = scantest.Serve(t, "tcp", tc.handle)
			}
			_, err := newClient(t, scanner.Config{Address: addr}).Scan(ctx, request("x"))
			kindOf(t, err, tc.kind)
		})
	}
}

func TestRefused(t *testing.T) {
	c := newClient(t, scanner.Config{Address: serveHTTP(t, "tcp", fakeRspamd(t, nil, true)), Password: "wrong"})
	_, err := c.Scan(context.Background(), request("x"))
	kindOf(t, err, scanner.KindRefused)
	if !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "Unauthorized") {
		t.Errorf("error %v does not say why", err)
	}
}

func TestDown(t *testing.T) {
	c := newClient(t, scanner.Config{Address: scantest.Unused(t)})
	_, err := c.Scan(context.Background(), request("x"))
	kindOf(t, err, scanner.KindConnect)
	kindOf(t, c.Ping(context.Background()), scanner.KindConnect)
	c = newClient(t, scanner.Config{Address: "unix:" + filepath.Join(t.TempDir(), "none.sock")})
	kindOf(t, c.Ping(context.Background()), scanner.KindConnect)
}

func TestPing(t *testing.T) {
	c := newClient(t, scanner.Config{Address: scantest.Serve(t, "tcp", raw("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npang"))})
	kindOf(t, c.Ping(context.Background()), scanner.KindProtocol)
	c = newClient(t, scanner.Config{Address: scantest.ServeStop(t, "tcp", scantest.Hang), Timeout: 200 * time.Millisecond})
	kindOf(t, c.Ping(context.Background()), scanner.KindTimeout)
}

func TestNew(t *testing.T) {
	for _, addr := range []string{"", "nohost", "ftp://h:1", "http://", "http://u:p@h:1", "unix:", "http://h:1/?q=1"} {
		if _, err := New(scanner.Config{Name: "rs", Address: addr}); err == nil {
			t.Errorf("address %q accepted", addr)
		}
	}
	for addr, base := range map[string]string{
		"127.0.0.1:11333":          "http://127.0.0.1:11333",
		"http://rspamd:11333/":     "http://rspamd:11333",
		"https://rspamd.local/rs/": "https://rspamd.local/rs",
		"unix:/run/rspamd.sock":    "http://rspamd",
	} {
		c, err := New(scanner.Config{Name: "rs", Address: addr})
		if err != nil {
			t.Errorf("address %q: %v", addr, err)
		} else if c.base != base {
			t.Errorf("address %q: base %q, want %q", addr, c.base, base)
		}
	}
	if _, err := New(scanner.Config{Name: "rs", Address: "127.0.0.1:1", Password: "a\nb"}); err == nil {
		t.Error("password with a line break accepted")
	}
}

func TestParseAnswer(t *testing.T) {
	many := `{"action":"add header","symbols":{`
	for i := range 300 {
		if i > 0 {
			many += ","
		}
		many += fmt.Sprintf(`"S%03d":{}`, i)
	}
	many += `}}`
	res, err := ParseAnswer([]byte(many))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Symbols) != scanner.MaxSymbols || res.Symbols[0] != "S000" || res.HasScore {
		t.Errorf("%d symbols, first %q, HasScore %v", len(res.Symbols), res.Symbols[0], res.HasScore)
	}
	res, err = ParseAnswer([]byte(`{"action":"Soft Reject","score":3,"required_score":15,"symbols":{"bad name":{},"OK_1":{}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != "soft reject" || !reflect.DeepEqual(res.Symbols, []string{"OK_1"}) || res.Score != 3 {
		t.Errorf("%+v", res)
	}
	for _, bad := range []string{`null`, `[]`, `{"action":""}`, `{"action":"a\u0001"}`, `{"action":1}`, `{"action":"x","score":"high"}`} {
		if _, err := ParseAnswer([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func FuzzParseAnswer(f *testing.F) {
	for _, s := range []string{
		`{"is_skipped":false,"score":16.5,"required_score":15.0,"action":"reject","symbols":{"R_DRUGS":{"name":"R_DRUGS","score":8.0}}}`,
		`{"action":"no action","symbols":{}}`,
		`{"error":"task timed out"}`,
		`{"action":null}`,
		`{"action":"greylist","score":1e308,"required_score":-1e308}`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := ParseAnswer(data)
		if err != nil {
			if res != nil {
				t.Fatal("result with an error")
			}
			return
		}
		if res.Action == "" || res.Action != strings.ToLower(res.Action) || len(res.Symbols) > scanner.MaxSymbols {
			t.Fatalf("bad result %+v", res)
		}
	})
}

// BenchmarkScan: one 2 KB message per /checkv2 (kept-alive connections),
// against the fake rspamd.
func BenchmarkScan(b *testing.B) {
	c := newClient(b, scanner.Config{Address: serveHTTP(b, "tcp", fakeRspamd(b, nil, false))})
	req := request(strings.Repeat("0123456789abcdef", 128))
	b.SetBytes(int64(len(req.Message)))
	for b.Loop() {
		if _, err := c.Scan(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
