package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"

	"moat/internal/reply"
	"moat/ops/metrics"
	"moat/relay/queue"
	"moat/relay/spool"
	"moat/relay/transport"
)

// deferring is a transport that answers 451 to everything and counts
// attempts per message.
type deferring struct {
	mu    sync.Mutex
	calls map[string]int
}

func (d *deferring) Deliver(_ context.Context, msg *transport.Message, rcpts []string) []transport.Result {
	d.mu.Lock()
	d.calls[msg.ID]++
	d.mu.Unlock()
	return transport.All(rcpts, reply.New(451, 4, 0, "try later"))
}

func (d *deferring) count(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls[id]
}

type harness struct {
	sp  *spool.Spool
	q   *queue.Manager
	tr  *deferring
	ids []string
}

// newHarness spools n messages, runs a queue manager over them and waits
// until each has been tried once (and deferred for RetryMin, an hour).
func newHarness(t *testing.T, n int) *harness {
	t.Helper()
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"), spool.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	h := &harness{sp: sp, tr: &deferring{calls: map[string]int{}}}
	for i := 0; i < n; i++ {
		env := &spool.Envelope{
			ID:         sp.NewID(),
			Sender:     fmt.Sprintf("sender%d@example.net", i),
			Recipients: []spool.Recipient{{Address: "user@corp.example", Route: "backend", Status: spool.StatusPending}},
			Received:   time.Now().Add(-time.Duration(i+1) * time.Minute),
			ClientIP:   "192.0.2.10",
		}
		if err := sp.Put(context.Background(), env, strings.NewReader("From: a@example.net\r\nSubject: hello "+env.ID+"\r\n\r\nbody\r\n")); err != nil {
			t.Fatal(err)
		}
		h.ids = append(h.ids, env.ID)
	}
	h.q = queue.New(sp, func(string) (transport.Transport, bool) { return h.tr, true }, queue.Options{
		RetryMin: time.Hour, RetryMax: 2 * time.Hour, DelayWarning: -1,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.q.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for _, id := range h.ids {
		waitFor(t, "first attempt of "+id, func() bool {
			env, err := sp.Get(id)
			return err == nil && env.Attempts >= 1 && h.q.Stats().Active == 0
		})
	}
	return h
}

// waitFor polls cond; the long limit only catches a hang, it is no timing assertion.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startServer(t *testing.T, opt Options) (*Server, string) {
	t.Helper()
	if opt.Address == "" {
		opt.Address = "127.0.0.1:0"
	}
	s, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, "http://" + s.Addr().String()
}

func request(t *testing.T, method, url, token string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestNewAddressAndToken(t *testing.T) {
	tests := []struct {
		addr, token string
		ok          bool
	}{
		{"127.0.0.1:0", "", true},
		{"[::1]:0", "", true},
		{"localhost:0", "", true},
		{"0.0.0.0:8025", "", false},
		{":8025", "", false},
		{"[::]:8025", "", false},
		{"192.0.2.1:8025", "", false},
		{"admin.example:8025", "", false},
		{"0.0.0.0:8025", "s3cret", true},
		{"no-port", "", false},
		{"127.0.0.1:0", "has space", false},
	}
	for _, tc := range tests {
		_, err := New(Options{Address: tc.addr, Token: tc.token})
		if (err == nil) != tc.ok {
			t.Errorf("New(%q, token %q): err %v, want ok=%v", tc.addr, tc.token, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "admin.") {
			t.Errorf("error %q does not name its key", err)
		}
	}
}

func TestTokenRequired(t *testing.T) {
	m := metrics.NewWithOptions(metrics.Options{NoRuntimeCollectors: true})
	_, base := startServer(t, Options{Token: "s3cret", Metrics: m, Queue: newHarness(t, 1).queueAPI()})
	tests := []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
		{"GET", "/metrics", "", 401},
		{"GET", "/metrics", "wrong", 401},
		{"GET", "/metrics", "s3cret", 200},
		{"GET", "/api/queue", "", 401},
		{"GET", "/api/queue", "s3cre", 401},
		{"GET", "/api/queue", "s3cret", 200},
		{"POST", "/api/queue/flush", "", 401},
		{"DELETE", "/api/queue/abc", "nope", 401},
		{"GET", "/", "", 401},
		{"GET", "/", "s3cret", 200},
	}
	for _, tc := range tests {
		code, hdr, _ := request(t, tc.method, base+tc.path, tc.token, nil)
		if code != tc.want {
			t.Errorf("%s %s token %q: %d, want %d", tc.method, tc.path, tc.token, code, tc.want)
		}
		if code == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s %s: 401 without a Bearer challenge", tc.method, tc.path)
		}
	}
	// The scheme is case-insensitive (RFC 7235 §2.1).
	if code, _, _ := request(t, "GET", base+"/api/queue", "", map[string]string{"Authorization": "bearer s3cret"}); code != 200 {
		t.Errorf("lower-case scheme: %d", code)
	}
}

func TestLoopbackWithoutTokenGuards(t *testing.T) {
	_, base := startServer(t, Options{Queue: newHarness(t, 1).queueAPI()})
	if code, _, _ := request(t, "GET", base+"/api/queue", "", nil); code != 200 {
		t.Errorf("loopback without token: %d", code)
	}
	// DNS rebinding: a foreign Host name is refused.
	if code, _, _ := request(t, "GET", base+"/api/queue", "", map[string]string{"Host": "evil.example"}); code != 403 {
		t.Errorf("foreign Host: %d, want 403", code)
	}
	// A cross-site POST from a browser is refused.
	code, _, _ := request(t, "POST", base+"/api/queue/flush", "", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"})
	if code != 403 {
		t.Errorf("cross-site POST: %d, want 403", code)
	}
}

func TestReadyz(t *testing.T) {
	resolverErr := errors.New("no answer from 127.0.0.1:53")
	var fail bool
	ready := Checks(
		Check{Name: "spool", Fn: func(context.Context) error { return nil }},
		Check{Name: "resolver", Fn: func(context.Context) error {
			if fail {
				return resolverErr
			}
			return nil
		}},
	)
	_, base := startServer(t, Options{Ready: ready})
	if code, _, body := request(t, "GET", base+"/readyz", "", nil); code != 200 || !strings.Contains(body, "ready") {
		t.Errorf("ready: %d %q", code, body)
	}
	fail = true
	code, _, body := request(t, "GET", base+"/readyz", "", nil)
	if code != 503 || !strings.Contains(body, "resolver") || strings.Contains(body, "spool") {
		t.Errorf("not ready: %d %q, want 503 naming resolver", code, body)
	}
	if code, _, body := request(t, "GET", base+"/healthz", "", nil); code != 200 || body != "ok\n" {
		t.Errorf("healthz: %d %q", code, body)
	}
}

func (h *harness) queueAPI() QueueAPI { return QueueOf(h.sp, h.q) }

func TestQueueAPI(t *testing.T) {
	h := newHarness(t, 3)
	_, base := startServer(t, Options{Queue: h.queueAPI()})

	code, _, body := request(t, "GET", base+"/api/queue", "", nil)
	var l List
	if code != 200 || json.Unmarshal([]byte(body), &l) != nil {
		t.Fatalf("list: %d %s", code, body)
	}
	if l.Total != 3 || len(l.Messages) != 3 {
		t.Fatalf("list = %+v", l)
	}
	for _, m := range l.Messages {
		if m.State != "deferred" || m.LastError == "" || len(m.Recipients) != 1 || m.AgeSeconds < 60 {
			t.Errorf("entry = %+v", m)
		}
	}
	code, _, body = request(t, "GET", base+"/api/queue?limit=2", "", nil)
	if json.Unmarshal([]byte(body), &l); code != 200 || len(l.Messages) != 2 || !l.Truncated {
		t.Errorf("limit=2: %d %+v", code, l)
	}

	id := h.ids[0]
	code, _, body = request(t, "GET", base+"/api/queue/"+id, "", nil)
	var d Detail
	if code != 200 || json.Unmarshal([]byte(body), &d) != nil || d.Envelope.ID != id || !strings.Contains(d.Headers, "Subject: hello "+id) || strings.Contains(d.Headers, "body") {
		t.Fatalf("show: %d %s", code, body)
	}

	// Operations, with their effect checked in the spool.
	if code, _, body := request(t, "POST", base+"/api/queue/"+id+"/hold", "", nil); code != 200 {
		t.Fatalf("hold: %d %s", code, body)
	}
	if env, _ := h.sp.Get(id); !env.Held {
		t.Error("not held after hold")
	}
	if code, _, _ := request(t, "POST", base+"/api/queue/"+id+"/flush", "", nil); code != 409 {
		t.Errorf("flush of a held message: %d, want 409", code)
	}
	if code, _, _ := request(t, "POST", base+"/api/queue/"+id+"/release", "", nil); code != 200 {
		t.Errorf("release: %d", code)
	}
	waitFor(t, "attempt after release", func() bool { return h.tr.count(id) >= 2 })
	waitFor(t, "quiet", func() bool { return h.q.Stats().Active == 0 })

	id1 := h.ids[1]
	if code, _, _ := request(t, "POST", base+"/api/queue/"+id1+"/flush", "", nil); code != 200 {
		t.Errorf("flush: %d", code)
	}
	waitFor(t, "attempt after flush", func() bool { return h.tr.count(id1) >= 2 })
	waitFor(t, "quiet", func() bool { return h.q.Stats().Active == 0 })

	id2 := h.ids[2]
	if code, _, _ := request(t, "DELETE", base+"/api/queue/"+id2, "", nil); code != 200 {
		t.Errorf("delete: %d", code)
	}
	if _, err := h.sp.Get(id2); !errors.Is(err, spool.ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}

	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/api/queue/" + id2, 404},
		{"DELETE", "/api/queue/" + id2, 404},
		{"POST", "/api/queue/NoSuchId123/hold", 404},
		{"GET", "/api/queue/bad..id", 400},
		{"GET", "/api/queue?limit=0", 400},
		{"PUT", "/api/queue/" + id, 405},
		{"GET", "/nothing", 404},
	} {
		if code, _, _ := request(t, tc.method, base+tc.path, "", nil); code != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, code, tc.want)
		}
	}
}

func TestFlushAllStreamsProgress(t *testing.T) {
	h := newHarness(t, 5)
	if err := h.q.Hold(h.ids[4]); err != nil {
		t.Fatal(err)
	}
	_, base := startServer(t, Options{Queue: h.queueAPI()})
	c, err := NewClient(strings.TrimPrefix(base, "http://"), "")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	last, err := c.FlushAll(context.Background(), func(l string) { lines = append(lines, l) })
	if err != nil {
		t.Fatal(err)
	}
	if last != "done: flushed 4/5, 1 held, 0 failed" {
		t.Errorf("last = %q (lines %q)", last, lines)
	}
	if len(lines) != 5 || lines[0] != "flushed 1/5" || lines[3] != "flushed 4/5" {
		t.Errorf("progress lines = %q", lines)
	}
	for _, id := range h.ids[:4] {
		waitFor(t, "flushed attempt of "+id, func() bool { return h.tr.count(id) >= 2 })
	}
}

func TestClientErrors(t *testing.T) {
	h := newHarness(t, 1)
	_, base := startServer(t, Options{Token: "tok", Queue: h.queueAPI()})
	addr := strings.TrimPrefix(base, "http://")
	bad, _ := NewClient(addr, "wrong")
	var se *StatusError
	if _, err := bad.List(context.Background(), 0); !errors.As(err, &se) || se.Code != 401 {
		t.Errorf("wrong token: %v", err)
	}
	good, _ := NewClient(addr, "tok")
	if err := good.Op(context.Background(), "hold", "NoSuchId123"); !errors.As(err, &se) || se.Code != 404 {
		t.Errorf("unknown id: %v", err)
	}
	l, err := good.List(context.Background(), 0)
	if err != nil || l.Total != 1 {
		t.Fatalf("list: %v %+v", err, l)
	}
	if err := good.Op(context.Background(), "delete", h.ids[0]); err != nil {
		t.Errorf("delete: %v", err)
	}
	// Nobody listening: ErrUnreachable, the CLI's cue to read the spool.
	s, _ := startServer(t, Options{})
	dead := s.Addr().String()
	s.Shutdown(context.Background())
	gone, _ := NewClient(dead, "")
	if _, err := gone.List(context.Background(), 0); !errors.Is(err, ErrUnreachable) {
		t.Errorf("dead daemon: %v", err)
	}
}

// --- status page ---

func findByID(n *html.Node, id string) *html.Node {
	if n.Type == html.ElementNode {
		for _, a := range n.Attr {
			if a.Key == "id" && a.Val == id {
				return n
			}
		}
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if f := findByID(c, id); f != nil {
			return f
		}
	}
	return nil
}

func walk(n *html.Node, fn func(*html.Node)) {
	fn(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, fn)
	}
}

func text(n *html.Node) string {
	var b strings.Builder
	walk(n, func(x *html.Node) {
		if x.Type == html.TextNode {
			b.WriteString(x.Data)
		}
	})
	return b.String()
}

func TestStatusPage(t *testing.T) {
	const evil = `<script>alert("x")</script>`
	m := metrics.NewWithOptions(metrics.Options{NoRuntimeCollectors: true})
	m.VerdictFrom(metrics.VerdictRejected, "rule"+evil, "client"+evil)
	m.VerdictFrom(metrics.VerdictAccepted, "", "192.0.2.1")
	m.VerdictFrom(metrics.VerdictTempfailed, "greylist", "192.0.2.2")
	m.DeliveryResult(metrics.DeliveryEvent{QueueID: "Q1", Recipient: "rcpt" + evil + "@x", Route: "mx", Result: metrics.DeliveryDeferred, Error: "451 " + evil})
	m.Refusal("rcpt", "relay_denied", "rejected", "203.0.113.5")
	m.Refusal("auth", "bad_password", "rejected", "auth"+evil)
	h := newHarness(t, 2)
	_, base := startServer(t, Options{Metrics: m, Queue: h.queueAPI()})

	code, hdr, body := request(t, "GET", base+"/", "", nil)
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") {
		t.Fatalf("status: %d %s", code, hdr.Get("Content-Type"))
	}
	if !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("CSP = %q", hdr.Get("Content-Security-Policy"))
	}
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	chart := findByID(doc, "verdict-chart")
	if chart == nil || chart.Data != "svg" {
		t.Fatalf("no svg verdict-chart in\n%s", body)
	}
	var rects int
	walk(chart, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "rect" {
			rects++
		}
	})
	if rects < len(metrics.Verdicts())+3 { // legend + at least three bar segments
		t.Errorf("chart has %d rects", rects)
	}
	for _, id := range []string{"top-clients", "top-rules", "recent-deliveries", "queue-states", "top-auth-failures", "recent-refusals"} {
		if n := findByID(doc, id); n == nil || n.Data != "table" {
			t.Errorf("table %s missing", id)
		}
	}
	var scripts int
	walk(doc, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "script" {
			scripts++
		}
	})
	if scripts != 0 {
		t.Errorf("%d script elements: input was not escaped", scripts)
	}
	for id, want := range map[string]string{
		"top-clients":       "client" + evil,
		"top-rules":         "rule" + evil,
		"recent-deliveries": "rcpt" + evil + "@x",
		"top-auth-failures": "auth" + evil,
		"recent-refusals":   "relay_denied",
	} {
		if got := text(findByID(doc, id)); !strings.Contains(got, want) {
			t.Errorf("%s text %q does not show %q literally", id, got, want)
		}
	}
	// An RCPT refusal makes its client a top rejected client.
	if got := text(findByID(doc, "top-clients")); !strings.Contains(got, "203.0.113.5") {
		t.Errorf("top clients %q lack the client refused at RCPT", got)
	}
	if !strings.Contains(text(findByID(doc, "queue-states")), "deferred") {
		t.Error("queue states table lacks deferred")
	}
}

func TestStatusPageWithoutParts(t *testing.T) {
	_, base := startServer(t, Options{})
	code, _, body := request(t, "GET", base+"/", "", nil)
	if code != 200 || !strings.Contains(body, `id="verdict-chart"`) || !strings.Contains(body, "not available") {
		t.Errorf("bare status: %d\n%s", code, body)
	}
	if code, _, _ := request(t, "GET", base+"/api/queue", "", nil); code != 503 {
		t.Errorf("queue API without a queue: %d", code)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	m := metrics.New()
	m.VerdictFrom(metrics.VerdictRejected, "r", "")
	h := newHarness(t, 1)
	m.QueueStats(h.q.Stats)
	_, base := startServer(t, Options{Metrics: m})
	code, _, body := request(t, "GET", base+"/metrics", "", nil)
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	for _, want := range []string{`moat_messages_total{verdict="rejected"} 1`, `moat_queue_messages{state="deferred"} 1`, "go_goroutines", "process_"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func FuzzReadHeaders(f *testing.F) {
	f.Add([]byte("A: b\r\n\r\nbody"), 10)
	f.Add([]byte("A: b\nC: d\n\nbody"), 100)
	f.Add([]byte("no end"), 3)
	f.Fuzz(func(t *testing.T, b []byte, max int) {
		if max < 0 || max > 1<<16 {
			return
		}
		h, cut, err := ReadHeaders(strings.NewReader(string(b)), max)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) > max+2 || (cut && len(h) != max) {
			t.Fatalf("headers of %d bytes (cut %v) for max %d", len(h), cut, max)
		}
	})
}

func TestBearer(t *testing.T) {
	for in, want := range map[string]string{
		"Bearer abc": "abc", "bearer  abc ": "abc", "Basic abc": "", "Bearer": "", "": "", "Bearer ": "",
	} {
		got, ok := bearer(in)
		if got != want || ok != (want != "") {
			t.Errorf("bearer(%q) = %q %v", in, got, ok)
		}
	}
}
