package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"

	"moat/relay/quarantine"
	"moat/relay/spool"
)

type quarantineHarness struct {
	q, main  *spool.Spool
	dir      string
	ids      []string
	mu       sync.Mutex
	notified []string
}

func newQuarantineHarness(t *testing.T, n int) *quarantineHarness {
	t.Helper()
	dir := t.TempDir()
	h := &quarantineHarness{dir: dir}
	var err error
	if h.q, err = spool.Open(filepath.Join(dir, "quarantine"), spool.Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.q.Close() })
	if h.main, err = spool.Open(filepath.Join(dir, "spool"), spool.Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.main.Close() })
	for i := 0; i < n; i++ {
		env := &spool.Envelope{
			ID:     h.q.NewID(),
			Sender: "spammer@example.net",
			Recipients: []spool.Recipient{
				{Address: "user@example.org", Route: "local", Status: spool.StatusPending},
				{Address: "other@corp.example", Route: "backend", Status: spool.StatusPending},
			},
			Received: time.Now().Add(-48 * time.Hour),
			ClientIP: "198.51.100.7",
		}
		if err := h.q.Put(context.Background(), env, strings.NewReader("Subject: suspicious "+env.ID+"\r\n\r\nbody\r\n")); err != nil {
			t.Fatal(err)
		}
		h.ids = append(h.ids, env.ID)
	}
	return h
}

var _ QuarantineAPI = (*quarantine.Quarantine)(nil)

func (h *quarantineHarness) api() QuarantineAPI {
	return quarantine.New(h.q, h.main, func(id string) {
		h.mu.Lock()
		h.notified = append(h.notified, id)
		h.mu.Unlock()
	})
}

func TestQuarantineAPI(t *testing.T) {
	h := newQuarantineHarness(t, 3)
	_, base := startServer(t, Options{Token: "s3cret", Quarantine: h.api()})

	if code, _, _ := request(t, "GET", base+"/api/quarantine", "", nil); code != 401 {
		t.Errorf("no token: %d", code)
	}
	code, _, body := request(t, "GET", base+"/api/quarantine", "s3cret", nil)
	var l List
	if code != 200 || json.Unmarshal([]byte(body), &l) != nil || l.Total != 3 || len(l.Messages) != 3 {
		t.Fatalf("list: %d %s", code, body)
	}
	if m := l.Messages[0]; m.ID != h.ids[0] || m.State != "quarantined" || m.Client != "198.51.100.7" || m.RcptCount != 2 {
		t.Errorf("first entry %+v", m)
	}
	if code, _, body := request(t, "GET", base+"/api/quarantine?limit=1", "s3cret", nil); code != 200 || !strings.Contains(body, `"truncated": true`) {
		t.Errorf("limit: %d %s", code, body)
	}

	code, _, body = request(t, "GET", base+"/api/quarantine/"+h.ids[1], "s3cret", nil)
	var d Detail
	if code != 200 || json.Unmarshal([]byte(body), &d) != nil || !strings.Contains(d.Headers, "suspicious "+h.ids[1]) || d.Envelope.ID != h.ids[1] {
		t.Fatalf("show: %d %s", code, body)
	}

	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/api/quarantine/not..valid", 400},
		{"GET", "/api/quarantine/0000000000000000", 404},
		{"POST", "/api/quarantine/0000000000000000/release", 404},
		{"DELETE", "/api/quarantine/0000000000000000", 404},
		{"DELETE", "/api/quarantine/bad%2Fid", 400},
	} {
		if code, _, body := request(t, tc.method, base+tc.path, "s3cret", nil); code != tc.want {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, code, body, tc.want)
		}
	}

	// Release: queued in the main spool, gone from quarantine, notified.
	code, _, body = request(t, "POST", base+"/api/quarantine/"+h.ids[0]+"/release", "s3cret", nil)
	var rel Released
	if code != 200 || json.Unmarshal([]byte(body), &rel) != nil || rel.ID != h.ids[0] || !spool.ValidID(rel.QueueID) {
		t.Fatalf("release: %d %s", code, body)
	}
	env, err := h.main.Get(rel.QueueID)
	if err != nil {
		t.Fatalf("released message not in the spool: %v", err)
	}
	if env.Sender != "spammer@example.net" || len(env.Recipients) != 2 || env.Recipients[1].Route != "backend" ||
		env.Recipients[0].Status != spool.StatusPending || time.Since(env.Received) > time.Hour {
		t.Errorf("released envelope %+v", env)
	}
	f, err := h.main.Open(rel.QueueID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "Subject: suspicious "+h.ids[0]+"\r\n\r\nbody\r\n" {
		t.Errorf("released bytes %q", b)
	}
	if _, err := h.q.Get(h.ids[0]); !errors.Is(err, spool.ErrNotFound) {
		t.Errorf("still quarantined: %v", err)
	}
	h.mu.Lock()
	if len(h.notified) != 1 || h.notified[0] != rel.QueueID {
		t.Errorf("notified %v", h.notified)
	}
	h.mu.Unlock()
	if code, _, _ := request(t, "POST", base+"/api/quarantine/"+h.ids[0]+"/release", "s3cret", nil); code != 404 {
		t.Errorf("second release: %d", code)
	}

	// Delete.
	if code, _, body := request(t, "DELETE", base+"/api/quarantine/"+h.ids[2], "s3cret", nil); code != 200 || !strings.Contains(body, h.ids[2]) {
		t.Errorf("delete: %d %s", code, body)
	}
	if envs, _ := h.q.List(); len(envs) != 1 || envs[0].ID != h.ids[1] {
		t.Errorf("left in quarantine: %v", envs)
	}
	if envs, _ := h.main.List(); len(envs) != 1 {
		t.Errorf("main spool holds %d messages, want 1", len(envs))
	}
}

func TestQuarantineClient(t *testing.T) {
	h := newQuarantineHarness(t, 2)
	s, _ := startServer(t, Options{Quarantine: h.api()})
	c, err := NewClient(s.Addr().String(), "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l, err := c.QuarantineList(ctx, 0)
	if err != nil || l.Total != 2 {
		t.Fatalf("list: %v %+v", err, l)
	}
	d, err := c.QuarantineShow(ctx, h.ids[1])
	if err != nil || d.State != "quarantined" {
		t.Fatalf("show: %v %+v", err, d)
	}
	newID, err := c.QuarantineRelease(ctx, h.ids[0])
	if err != nil || !spool.ValidID(newID) {
		t.Fatalf("release: %v %q", err, newID)
	}
	if err := c.QuarantineDelete(ctx, h.ids[1]); err != nil {
		t.Fatal(err)
	}
	var se *StatusError
	if err := c.QuarantineDelete(ctx, h.ids[1]); !errors.As(err, &se) || se.Code != 404 {
		t.Errorf("second delete: %v", err)
	}
}

func TestQuarantineUnavailableAndStatus(t *testing.T) {
	_, base := startServer(t, Options{})
	if code, _, _ := request(t, "GET", base+"/api/quarantine", "", nil); code != 503 {
		t.Errorf("no quarantine: %d", code)
	}
	if code, _, body := request(t, "GET", base+"/", "", nil); code != 200 || !strings.Contains(body, "The quarantine is not available") {
		t.Errorf("status without quarantine: %d", code)
	}
	h := newQuarantineHarness(t, 2)
	_, base = startServer(t, Options{Quarantine: h.api()})
	_, _, body := request(t, "GET", base+"/", "", nil)
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if got := text(findByID(doc, "quarantine-count")); !strings.HasPrefix(got, "2 message(s) in quarantine") {
		t.Errorf("quarantine count %q", got)
	}
}
