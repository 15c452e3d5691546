package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"moat/internal/dnstest"
	"moat/internal/maillog"
	"moat/relay/spool"
)

// testConfig writes a config for a gateway on 127.0.0.1:0 with its data
// in a temporary directory and returns its path.
func testConfig(t *testing.T, extra string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	dnsAddr := dnstest.NewServer(t).Addr()
	cfg := `
hostname: mx.example.org
data_dir: ` + dir + `
log: {level: debug, format: console, mail_log: "` + filepath.Join(dir, "mail.log") + `"}
admin: {address: "127.0.0.1:0"}
listeners:
  - {name: mx, address: "127.0.0.1:0", mode: mx, tls: none}
trusted_networks: []
domains:
  local: [example.org]
dns:
  servers: ["` + dnsAddr + `"]
  timeout: 500ms
mailboxes:
  users:
    alice@example.org: {}
    bob@example.org: {}
  aliases:
    team@example.org: [alice@example.org, bob@example.org]
    postmaster@example.org: alice@example.org
` + extra
	path := filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, dir
}

func startApp(t *testing.T, path string) *app {
	t.Helper()
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(cfg, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a.shutdown(ctx)
	})
	return a
}

func send(t *testing.T, addr, from string, to []string, msg string) string {
	t.Helper()
	c, err := gosmtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.far.example"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(from, nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatal(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	return ""
}

// waitMaildir waits (bounded) until the mailbox's new/ has n files and
// returns their contents.
func waitMaildir(t *testing.T, dataDir, addr string, n int) [][]byte {
	t.Helper()
	local, domain, _ := strings.Cut(addr, "@")
	dir := filepath.Join(dataDir, "mailboxes", domain, local, "new")
	deadline := time.Now().Add(20 * time.Second)
	for {
		ents, _ := os.ReadDir(dir)
		if len(ents) >= n {
			var out [][]byte
			for _, e := range ents {
				b, err := os.ReadFile(filepath.Join(dir, e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, b)
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d files in new/, want %d", addr, len(ents), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const e2eMsg = "From: Sender <sender@far.example>\r\nTo: alice@example.org\r\nSubject: first\r\nMessage-ID: <1@far.example>\r\n\r\nHello, Alice.\r\n"

func TestEndToEndMaildir(t *testing.T) {
	path, dataDir := testConfig(t, "")
	a := startApp(t, path)
	send(t, a.gw.Addr("mx").String(), "sender@far.example", []string{"alice@example.org"}, e2eMsg)
	files := waitMaildir(t, dataDir, "alice@example.org", 1)
	got := files[0]
	// The file is our Received header followed by the message, byte for byte.
	i := bytes.Index(got, []byte("\r\nFrom: Sender"))
	if i < 0 || !bytes.Equal(got[i+2:], []byte(e2eMsg)) {
		t.Fatalf("maildir file:\n%q", got)
	}
	head := string(got[:i+2])
	// RFC 5321 §4.4: final delivery puts Return-Path first.
	if !strings.HasPrefix(head, "Return-Path: <sender@far.example>\r\nReceived: ") {
		t.Errorf("no Return-Path on top:\n%s", head)
	}
	for _, want := range []string{"Received: from client.far.example (unknown [127.0.0.1])", "by mx.example.org (moat) with ESMTP", "for <alice@example.org>;"} {
		if !strings.Contains(head, want) {
			t.Errorf("Received header lacks %q:\n%s", want, head)
		}
	}
	waitSpoolEmpty(t, a)
}

func waitSpoolEmpty(t *testing.T, a *app) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		envs, err := a.spool.List()
		if err != nil {
			t.Fatal(err)
		}
		if len(envs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still spooled", len(envs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEndToEndAliasFansOut(t *testing.T) {
	path, dataDir := testConfig(t, "")
	a := startApp(t, path)
	send(t, a.gw.Addr("mx").String(), "sender@far.example", []string{"team@example.org", "alice@example.org"}, e2eMsg)
	// alice is named twice (directly and through team): one copy.
	waitMaildir(t, dataDir, "alice@example.org", 1)
	waitMaildir(t, dataDir, "bob@example.org", 1)
	waitSpoolEmpty(t, a)
	ents, _ := os.ReadDir(filepath.Join(dataDir, "mailboxes", "example.org", "alice", "new"))
	if len(ents) != 1 {
		t.Fatalf("alice has %d copies", len(ents))
	}
}

// A message left in the spool by a crash (acknowledged, not delivered) is
// delivered when moat starts again.
func TestSpoolLeftByCrashIsDeliveredAtStart(t *testing.T) {
	path, dataDir := testConfig(t, "")
	sp, err := spool.Open(filepath.Join(dataDir, "spool"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	env := &spool.Envelope{
		ID:         sp.NewID(),
		Sender:     "sender@far.example",
		Recipients: []spool.Recipient{{Address: "bob@example.org", Route: "local", Status: spool.StatusPending}},
		Received:   time.Now(),
	}
	if err := sp.Put(context.Background(), env, strings.NewReader(e2eMsg)); err != nil {
		t.Fatal(err)
	}
	sp.Close()
	a := startApp(t, path)
	files := waitMaildir(t, dataDir, "bob@example.org", 1)
	if !bytes.Equal(files[0], []byte("Return-Path: <sender@far.example>\r\n"+e2eMsg)) {
		t.Fatalf("delivered %q", files[0])
	}
	waitSpoolEmpty(t, a)
}

func contextTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

func TestEndToEndOperations(t *testing.T) {
	path, dataDir := testConfig(t, "")
	a := startApp(t, path)
	send(t, a.gw.Addr("mx").String(), "sender@far.example", []string{"alice@example.org"}, e2eMsg)
	waitMaildir(t, dataDir, "alice@example.org", 1)
	waitSpoolEmpty(t, a)
	base := "http://" + a.admin.Addr().String()
	get := func(p string) (int, string) {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != 200 {
		t.Fatalf("/readyz %d %s", code, body)
	}
	_, body := get("/metrics")
	for _, want := range []string{`moat_messages_total{verdict="accepted"} 1`, `moat_delivery_attempts_total{result="delivered",route="local"} 1`, "moat_dns_lookups_total"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if code, page := get("/"); code != 200 || !strings.Contains(page, "verdict-chart") {
		t.Errorf("status page %d", code)
	}
	// The mail log has one accepted and one delivered line.
	b, err := os.ReadFile(filepath.Join(dataDir, "mail.log"))
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		ev, err := maillog.Parse(l)
		if err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		kinds = append(kinds, ev.Kind)
	}
	if strings.Join(kinds, ",") != "accepted,delivered" {
		t.Errorf("mail log events %v:\n%s", kinds, b)
	}
}
