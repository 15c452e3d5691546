package quarantine

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/relay/spool"
)

// fill opens a quarantine and a delivery spool under a temporary
// data_dir and puts n messages into the quarantine.
func fill(t *testing.T, n int) (dataDir string, q, main *spool.Spool, ids []string) {
	t.Helper()
	dataDir = t.TempDir()
	var err error
	if q, err = spool.Open(Dir(dataDir), spool.Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	if main, err = spool.Open(filepath.Join(dataDir, "spool"), spool.Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		env := &spool.Envelope{
			ID:     q.NewID(),
			Sender: "spammer@example.net",
			Recipients: []spool.Recipient{
				{Address: "user@example.org", Route: "local", Status: spool.StatusPending, Attempts: 2, LastError: "x"},
				{Address: "gone@example.org", Route: "local", Status: spool.StatusFailed},
			},
			Received: time.Now().Add(-48 * time.Hour),
			ClientIP: "198.51.100.7",
			Attempts: 3,
		}
		if err := q.Put(context.Background(), env, strings.NewReader("Subject: "+env.ID+"\r\n\r\nbody\r\n")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, env.ID)
	}
	return dataDir, q, main, ids
}

func TestReleaseAndDelete(t *testing.T) {
	_, q, main, ids := fill(t, 2)
	defer q.Close()
	defer main.Close()
	var mu sync.Mutex
	var notified []string
	qu := New(q, main, func(id string) { mu.Lock(); notified = append(notified, id); mu.Unlock() })

	now := time.Now()
	newID, err := qu.Release(context.Background(), ids[0])
	if err != nil || !spool.ValidID(newID) {
		t.Fatalf("release: %q %v", newID, err)
	}
	env, err := main.Get(newID)
	if err != nil {
		t.Fatal(err)
	}
	if env.Sender != "spammer@example.net" || env.Attempts != 0 || env.Received.Before(now) ||
		env.Recipients[0].Attempts != 0 || env.Recipients[0].LastError != "" || env.Recipients[1].Status != spool.StatusFailed {
		t.Errorf("released envelope %+v", env)
	}
	f, err := main.Open(newID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "Subject: "+ids[0]+"\r\n\r\nbody\r\n" {
		t.Errorf("released bytes %q", b)
	}
	if _, err := qu.Get(ids[0]); !errors.Is(err, spool.ErrNotFound) {
		t.Errorf("still quarantined: %v", err)
	}
	if _, err := qu.Release(context.Background(), ids[0]); !errors.Is(err, spool.ErrNotFound) {
		t.Errorf("second release: %v", err)
	}
	mu.Lock()
	if len(notified) != 1 || notified[0] != newID {
		t.Errorf("notified %v", notified)
	}
	mu.Unlock()

	if err := qu.Delete(ids[1]); err != nil {
		t.Fatal(err)
	}
	if envs, err := qu.List(); err != nil || len(envs) != 0 {
		t.Errorf("left in quarantine: %v %v", envs, err)
	}
}

// A release whose write to the delivery spool fails leaves the message
// in quarantine: Put comes before Remove.
func TestReleaseKeepsMessageOnFailure(t *testing.T) {
	dataDir, q, main, ids := fill(t, 1)
	defer q.Close()
	main.Close()
	ro, err := spool.OpenReadOnly(filepath.Join(dataDir, "spool"))
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := Release(context.Background(), q, ro, ids[0], time.Now()); err == nil {
		t.Fatal("release into a read-only spool succeeded")
	}
	if _, err := q.Get(ids[0]); err != nil {
		t.Errorf("message lost from quarantine: %v", err)
	}
}

func TestOffline(t *testing.T) {
	dataDir, q, main, ids := fill(t, 2)
	// While the spools are open (a daemon runs), offline work is refused.
	if _, err := ReleaseOffline(context.Background(), Dir(dataDir), filepath.Join(dataDir, "spool"), ids[0]); err == nil {
		t.Error("offline release while the quarantine is locked succeeded")
	}
	q.Close()
	main.Close()

	newID, err := ReleaseOffline(context.Background(), Dir(dataDir), filepath.Join(dataDir, "spool"), ids[0])
	if err != nil || !spool.ValidID(newID) {
		t.Fatalf("offline release: %q %v", newID, err)
	}
	if err := DeleteOffline(Dir(dataDir), ids[1]); err != nil {
		t.Fatal(err)
	}
	ro, err := spool.OpenReadOnly(filepath.Join(dataDir, "spool"))
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := ro.Get(newID); err != nil {
		t.Errorf("released message not queued: %v", err)
	}

	// No quarantine: an error, and nothing is created.
	empty := t.TempDir()
	if err := DeleteOffline(Dir(empty), ids[1]); !errors.Is(err, ErrNoQuarantine) {
		t.Errorf("delete without a quarantine: %v", err)
	}
	if _, err := os.Stat(Dir(empty)); !os.IsNotExist(err) {
		t.Errorf("a quarantine was created: %v", err)
	}
}

func TestReleaseHook(t *testing.T) {
	dataDir, q, main, ids := fill(t, 3)
	qu := New(q, main, nil)
	type seen struct{ id, raw string }
	var got []seen
	qu.OnRelease(func(_ context.Context, env *spool.Envelope, raw []byte) {
		got = append(got, seen{env.ID, string(raw)})
	}, 0)
	newID, err := qu.Release(context.Background(), ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].id != newID || !strings.Contains(got[0].raw, "Subject: "+ids[0]) {
		t.Fatalf("hook saw %+v, want %s with its bytes", got, newID)
	}
	// A failed release (no such message) tells nobody.
	if _, err := qu.Release(context.Background(), ids[0]); err == nil || len(got) != 1 {
		t.Fatalf("second release: %v, hook calls %d", err, len(got))
	}
	// Larger than the bound: released, hook not told.
	qu.OnRelease(func(context.Context, *spool.Envelope, []byte) { t.Error("hook told of an oversized message") }, 4)
	if _, err := qu.Release(context.Background(), ids[1]); err != nil {
		t.Fatal(err)
	}
	q.Close()
	main.Close()
	// Offline, too.
	n := 0
	if _, err := ReleaseOfflineThen(context.Background(), Dir(dataDir), filepath.Join(dataDir, "spool"), ids[2],
		func(context.Context, *spool.Envelope, []byte) { n++ }, 0); err != nil || n != 1 {
		t.Fatalf("offline release with hook: %v, calls %d", err, n)
	}
}
