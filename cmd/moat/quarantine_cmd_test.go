package main

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/ops/admin"
	"moat/relay/quarantine"
	"moat/relay/spool"
)

// quarantineData makes a data_dir whose quarantine holds n messages; with
// keepOpen the spools stay open (locked, as by a running daemon) and are
// returned.
func quarantineData(t *testing.T, n int, keepOpen bool) (dataDir string, q, main *spool.Spool, ids []string) {
	t.Helper()
	dataDir = t.TempDir()
	var err error
	if q, err = spool.Open(filepath.Join(dataDir, "quarantine"), spool.Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	if main, err = spool.Open(filepath.Join(dataDir, "spool"), spool.Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		env := &spool.Envelope{
			ID:         q.NewID(),
			Sender:     fmt.Sprintf("s%d@example.net", i),
			Recipients: []spool.Recipient{{Address: fmt.Sprintf("r%d@example.org", i), Route: "local", Status: spool.StatusPending}},
			Received:   time.Now().Add(-3 * time.Hour),
			ClientIP:   "198.51.100.7",
		}
		if err := q.Put(context.Background(), env, strings.NewReader("Subject: q "+env.ID+"\r\n\r\nbody\r\n")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, env.ID)
	}
	if keepOpen {
		t.Cleanup(func() { q.Close(); main.Close() })
		return dataDir, q, main, ids
	}
	q.Close()
	main.Close()
	return dataDir, nil, nil, ids
}

func runQuarantine(args ...string) (stdout, stderr string, err error) {
	return runCommand(quarantineCommand(), args...)
}

var queuedAs = regexp.MustCompile(`queued as ([0-9A-Za-z]{16})`)

func TestQuarantineCommandsLive(t *testing.T) {
	dataDir, q, main, ids := quarantineData(t, 3, true)
	var mu sync.Mutex
	var notified []string
	notify := func(id string) { mu.Lock(); notified = append(notified, id); mu.Unlock() }
	s, err := admin.New(admin.Options{Address: "127.0.0.1:0", Token: "tok", Quarantine: quarantine.New(q, main, notify)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	cfg := (&queueFixture{dataDir: dataDir}).config(t, s.Addr().String(), "tok")

	out, errOut, err := runQuarantine("--config", cfg, "list")
	if err != nil || errOut != "" {
		t.Fatalf("list: %v %s", err, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "ID") || lines[4] != "3 message(s) in quarantine" {
		t.Fatalf("list:\n%s", out)
	}
	for i, id := range ids {
		for _, want := range []string{id, "3h0m", fmt.Sprintf("s%d@example.net", i), fmt.Sprintf("r%d@example.org", i), "198.51.100.7"} {
			if !strings.Contains(lines[i+1], want) {
				t.Errorf("line %q lacks %q", lines[i+1], want)
			}
		}
	}
	out, _, err = runQuarantine("--config", cfg, "show", ids[1])
	if err != nil || !strings.Contains(out, "state:        quarantined") || !strings.Contains(out, "Subject: q "+ids[1]) {
		t.Errorf("show: %v\n%s", err, out)
	}
	out, _, err = runQuarantine("--config", cfg, "release", ids[0])
	m := queuedAs.FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("release: %v %q", err, out)
	}
	if _, err := main.Get(m[1]); err != nil {
		t.Errorf("released message not queued: %v", err)
	}
	mu.Lock()
	if len(notified) != 1 || notified[0] != m[1] {
		t.Errorf("queue notified of %v", notified)
	}
	mu.Unlock()
	if out, _, err := runQuarantine("--config", cfg, "delete", ids[2]); err != nil || !strings.Contains(out, "deleted "+ids[2]) {
		t.Errorf("delete: %v %q", err, out)
	}
	if envs, _ := q.List(); len(envs) != 1 || envs[0].ID != ids[1] {
		t.Errorf("left in quarantine: %d", len(envs))
	}
	for _, op := range []string{"show", "release", "delete"} {
		if _, _, err := runQuarantine("--config", cfg, op, ids[2]); err == nil || !strings.Contains(err.Error(), "no such message") {
			t.Errorf("%s of a deleted message: %v", op, err)
		}
		if _, _, err := runQuarantine("--config", cfg, op, "../x"); err == nil || !strings.Contains(err.Error(), "not a quarantine id") {
			t.Errorf("%s of a bad id: %v", op, err)
		}
	}
	bad := (&queueFixture{dataDir: dataDir}).config(t, s.Addr().String(), "wrong")
	if _, _, err := runQuarantine("--config", bad, "list"); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("wrong token: %v", err)
	}
}

func TestQuarantineCommandsOffline(t *testing.T) {
	dataDir, _, _, ids := quarantineData(t, 3, false)
	cfg := (&queueFixture{dataDir: dataDir}).config(t, deadAddr(t), "")

	out, errOut, err := runQuarantine("--config", cfg, "list")
	if err != nil || !strings.Contains(errOut, "reading the quarantine") || !strings.Contains(out, ids[2]) || !strings.Contains(out, "3 message(s)") {
		t.Fatalf("offline list: %v\n%s\n%s", err, out, errOut)
	}
	out, _, err = runQuarantine("--config", cfg, "show", ids[0])
	if err != nil || !strings.Contains(out, "s0@example.net") {
		t.Errorf("offline show: %v\n%s", err, out)
	}
	out, errOut, err = runQuarantine("--config", cfg, "release", ids[0])
	m := queuedAs.FindStringSubmatch(out)
	if err != nil || m == nil || !strings.Contains(errOut, "directly") {
		t.Fatalf("offline release: %v %q %q", err, out, errOut)
	}
	if _, _, err := runQuarantine("--config", cfg, "delete", ids[1]); err != nil {
		t.Errorf("offline delete: %v", err)
	}
	main, err := spool.OpenReadOnly(filepath.Join(dataDir, "spool"))
	if err != nil {
		t.Fatal(err)
	}
	if env, err := main.Get(m[1]); err != nil || env.Sender != "s0@example.net" {
		t.Errorf("released message: %v %+v", err, env)
	}
	q, _ := spool.OpenReadOnly(filepath.Join(dataDir, "quarantine"))
	if envs, _ := q.List(); len(envs) != 1 || envs[0].ID != ids[2] {
		t.Errorf("left in quarantine: %v", envs)
	}

	// No quarantine at all: a clear error, and nothing is created.
	empty := (&queueFixture{dataDir: t.TempDir()}).config(t, deadAddr(t), "")
	for _, op := range []string{"release", "delete"} {
		if _, _, err := runQuarantine("--config", empty, op, ids[2]); err == nil || !strings.Contains(err.Error(), "no quarantine") {
			t.Errorf("%s without a quarantine: %v", op, err)
		}
	}
	if _, _, err := runQuarantine("--config", empty, "list"); err == nil || !strings.Contains(err.Error(), "cannot be read") {
		t.Errorf("list without a quarantine: %v", err)
	}
}

// The daemon holds the spool locks but its admin API does not answer:
// release and delete refuse rather than touch its spools.
func TestQuarantineDaemonLocked(t *testing.T) {
	dataDir, _, _, ids := quarantineData(t, 1, true)
	cfg := (&queueFixture{dataDir: dataDir}).config(t, deadAddr(t), "")
	for _, op := range []string{"release", "delete"} {
		if _, _, err := runQuarantine("--config", cfg, op, ids[0]); err == nil || !strings.Contains(err.Error(), "seems to be running") {
			t.Errorf("%s while locked: %v", op, err)
		}
	}
	// Reading still works.
	if out, _, err := runQuarantine("--config", cfg, "list"); err != nil || !strings.Contains(out, ids[0]) {
		t.Errorf("list while locked: %v %s", err, out)
	}
}
