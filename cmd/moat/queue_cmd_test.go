package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/reply"
	"moat/ops/admin"
	"moat/relay/queue"
	"moat/relay/spool"
	"moat/relay/transport"
)

// queueFixture is a data_dir with a spool of deferred messages, a running
// queue manager and (optionally) an admin API over them.
type queueFixture struct {
	dataDir string
	sp      *spool.Spool
	q       *queue.Manager
	ids     []string
}

func newQueueFixture(t *testing.T, n int) *queueFixture {
	t.Helper()
	f := &queueFixture{dataDir: t.TempDir()}
	sp, err := spool.Open(filepath.Join(f.dataDir, "spool"), spool.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	f.sp = sp
	for i := 0; i < n; i++ {
		env := &spool.Envelope{
			ID:         sp.NewID(),
			Sender:     fmt.Sprintf("s%d@example.net", i),
			Recipients: []spool.Recipient{{Address: fmt.Sprintf("r%d@corp.example", i), Route: "backend", Status: spool.StatusPending}},
			Received:   time.Now().Add(-2 * time.Hour),
		}
		if err := sp.Put(context.Background(), env, strings.NewReader("Subject: t\x1b[31m"+env.ID+"\r\n\r\nbody\r\n")); err != nil {
			t.Fatal(err)
		}
		f.ids = append(f.ids, env.ID)
	}
	tr := transport.Func(func(_ context.Context, _ *transport.Message, rcpts []string) []transport.Result {
		return transport.All(rcpts, reply.New(451, 4, 0, "backend busy"))
	})
	f.q = queue.New(sp, func(string) (transport.Transport, bool) { return tr, true }, queue.Options{RetryMin: time.Hour, DelayWarning: -1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.q.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(20 * time.Second) // catches a hang only
	for _, id := range f.ids {
		for {
			env, err := sp.Get(id)
			if err == nil && env.Attempts > 0 && f.q.Stats().Active == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("message %s never attempted", id)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return f
}

// config writes a configuration naming adminAddr and, if token is set, a
// token file.
func (f *queueFixture) config(t *testing.T, adminAddr, token string) string {
	t.Helper()
	dir := t.TempDir()
	body := fmt.Sprintf("data_dir: %s\nadmin:\n  address: %q\n", f.dataDir, adminAddr)
	if token != "" {
		tf := filepath.Join(dir, "token")
		if err := os.WriteFile(tf, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		body += fmt.Sprintf("  token_file: %s\n", tf)
	}
	p := filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *queueFixture) serve(t *testing.T, token string) string {
	t.Helper()
	s, err := admin.New(admin.Options{Address: "127.0.0.1:0", Token: token, Queue: admin.QueueOf(f.sp, f.q)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s.Addr().String()
}

func runQueue(args ...string) (stdout, stderr string, err error) {
	return runCommand(queueCommand(), args...)
}

// deadAddr is a loopback address nobody listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func TestQueueCommandsLive(t *testing.T) {
	f := newQueueFixture(t, 3)
	addr := f.serve(t, "tok3n")
	cfg := f.config(t, addr, "tok3n")

	out, errOut, err := runQueue("--config", cfg, "list")
	if err != nil {
		t.Fatalf("list: %v %s", err, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "LAST ERROR") {
		t.Fatalf("list output:\n%s", out)
	}
	for i, id := range f.ids {
		l := lines[i+1]
		for _, want := range []string{id, "2h0m", "deferred", fmt.Sprintf("s%d@example.net", i), fmt.Sprintf("r%d@corp.example", i), "backend busy"} {
			if !strings.Contains(l, want) {
				t.Errorf("line %q lacks %q", l, want)
			}
		}
	}
	if errOut != "" {
		t.Errorf("stderr on a live list: %q", errOut)
	}

	out, _, err = runQueue("--config", cfg, "show", f.ids[0])
	if err != nil || !strings.Contains(out, "Subject: t?[31m"+f.ids[0]) || !strings.Contains(out, "r0@corp.example") {
		t.Errorf("show: %v\n%s", err, out)
	}

	for _, op := range []string{"hold", "release", "flush"} {
		if out, _, err := runQueue("--config", cfg, op, f.ids[1]); err != nil || !strings.Contains(out, f.ids[1]) {
			t.Errorf("%s: %v %q", op, err, out)
		}
	}
	out, errOut, err = runQueue("--config", cfg, "flush")
	if err != nil || !strings.HasPrefix(out, "done: flushed") || !strings.Contains(errOut, "flushed 1/3") {
		t.Errorf("flush all: %v\nstdout %q\nstderr %q", err, out, errOut)
	}
	if _, _, err := runQueue("--config", cfg, "delete", f.ids[2]); err != nil {
		t.Errorf("delete: %v", err)
	}
	// A delete during an attempt (the flush above) applies right after it.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := f.sp.Get(f.ids[2]); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still spooled after delete")
		}
	}
	if _, _, err := runQueue("--config", cfg, "delete", f.ids[2]); err == nil || !strings.Contains(err.Error(), "no such message") {
		t.Errorf("second delete: %v", err)
	}
	if _, _, err := runQueue("--config", cfg, "hold", "../etc"); err == nil {
		t.Error("hold of a bad id accepted")
	}
	// A wrong token is reported as such (and is no reason to fall back).
	bad := f.config(t, addr, "wrong")
	if _, _, err := runQueue("--config", bad, "list"); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("wrong token: %v", err)
	}
	// --admin overrides the file.
	if _, _, err := runQueue("--config", f.config(t, deadAddr(t), "tok3n"), "--admin", addr, "hold", f.ids[0]); err != nil {
		t.Errorf("--admin: %v", err)
	}
}

func TestQueueCommandsOffline(t *testing.T) {
	f := newQueueFixture(t, 2)
	cfg := f.config(t, deadAddr(t), "")

	out, errOut, err := runQueue("--config", cfg, "list")
	if err != nil {
		t.Fatalf("offline list: %v", err)
	}
	if !strings.Contains(errOut, "reading the spool") || !strings.Contains(out, f.ids[0]) || !strings.Contains(out, f.ids[1]) {
		t.Errorf("offline list:\nstdout %s\nstderr %s", out, errOut)
	}
	out, errOut, err = runQueue("--config", cfg, "show", f.ids[1])
	if err != nil || !strings.Contains(errOut, "reading the spool") || !strings.Contains(out, "s1@example.net") {
		t.Errorf("offline show: %v\n%s\n%s", err, out, errOut)
	}
	if _, _, err := runQueue("--config", cfg, "show", "NoSuchId123"); err == nil || !strings.Contains(err.Error(), "no such message") {
		t.Errorf("offline show of unknown id: %v", err)
	}
	// Operations need the daemon: a clear error.
	if _, _, err := runQueue("--config", cfg, "flush"); err == nil || !strings.Contains(err.Error(), "running") {
		t.Errorf("offline flush: %v", err)
	}
	// No spool either: a clear error.
	empty := (&queueFixture{dataDir: t.TempDir()}).config(t, deadAddr(t), "")
	if _, _, err := runQueue("--config", empty, "list"); err == nil || !strings.Contains(err.Error(), "spool") {
		t.Errorf("no spool: %v", err)
	}
}

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 45 * time.Second: "45s", 12*time.Minute + 3*time.Second: "12m3s",
		5*time.Hour + 2*time.Minute: "5h2m", 76 * time.Hour: "3d4h",
	} {
		if got := admin.ShortDuration(d); got != want {
			t.Errorf("ShortDuration(%s) = %q, want %q", d, got, want)
		}
	}
}
