package bayes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// stores returns a fresh store of every kind that can run here.
func stores(t *testing.T) map[string]Store {
	t.Helper()
	out := map[string]Store{"mem": NewMemStore()}
	b, err := OpenBolt(filepath.Join(t.TempDir(), "bayes.db"), BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	out["bbolt"] = b
	mr := miniredis.RunT(t)
	mrc := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { mrc.Close() })
	out["miniredis"] = NewRedisStore(mrc, RedisOptions{KeyPrefix: "moat:"})
	if addr := realRedis(t); addr != "" {
		rc := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { rc.Close() })
		out["redis-server"] = NewRedisStore(rc, RedisOptions{KeyPrefix: "t:", TokenTTL: time.Hour})
	}
	return out
}

// realRedis starts redis-server on a free loopback port when the binary
// is installed, and returns its address ("" when it is not).
func realRedis(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return ""
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Logf("redis-server: %v", err)
		return ""
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	for range 100 { // wait for it to answer, bounded
		if c.Ping(context.Background()).Err() == nil {
			return addr
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("redis-server on %s did not answer", addr)
	return ""
}

func TestStores(t *testing.T) {
	ctx := context.Background()
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			d1, d2 := Digest{1}, Digest{2}
			k := []uint64{10, 20, 1 << 63}
			mustLearn := func(d Digest, c Class, keys []uint64, want Outcome) {
				t.Helper()
				got, err := s.Learn(ctx, d, c, keys)
				if err != nil || got != want {
					t.Fatalf("Learn(%x, %v) = %v, %v; want %v", d[:1], c, got, err, want)
				}
			}
			check := func(wantSpam, wantHam int64, want ...Count) {
				t.Helper()
				got, tot, err := s.Counts(ctx, k)
				if err != nil {
					t.Fatal(err)
				}
				if tot.Spam != wantSpam || tot.Ham != wantHam {
					t.Errorf("totals %+v, want spam %d ham %d", tot, wantSpam, wantHam)
				}
				for i := range want {
					if got[i] != want[i] {
						t.Errorf("key %d: %+v, want %+v", k[i], got[i], want[i])
					}
				}
			}
			check(0, 0, Count{}, Count{}, Count{})
			mustLearn(d1, ClassSpam, k[:2], Learned)
			mustLearn(d1, ClassSpam, k[:2], AlreadyKnown) // twice counts once
			check(1, 0, Count{Spam: 1}, Count{Spam: 1}, Count{})
			mustLearn(d2, ClassHam, k[1:], Learned)
			check(1, 1, Count{Spam: 1}, Count{Spam: 1, Ham: 1}, Count{Ham: 1})
			mustLearn(d1, ClassHam, k[:2], Moved) // the other class moves it
			check(0, 2, Count{Ham: 1}, Count{Ham: 2}, Count{Ham: 1})
			if c, err := s.Forget(ctx, d1, k[:2]); err != nil || c != ClassHam {
				t.Fatalf("Forget = %v, %v; want ham", c, err)
			}
			if c, err := s.Forget(ctx, d1, k[:2]); err != nil || c != ClassNone {
				t.Fatalf("second Forget = %v, %v; want none", c, err)
			}
			check(0, 1, Count{}, Count{Ham: 1}, Count{Ham: 1})
			// A forget with more keys than were learned stays at zero.
			mustLearn(d1, ClassSpam, k[:1], Learned)
			if _, err := s.Forget(ctx, d1, k); err != nil {
				t.Fatal(err)
			}
			check(0, 1, Count{}, Count{Ham: 1}, Count{Ham: 1})
			tot, err := s.Stats(ctx)
			if err != nil || tot.Ham != 1 || tot.Spam != 0 {
				t.Errorf("Stats = %+v, %v", tot, err)
			}
			if tot.Tokens >= 0 && tot.Tokens != 2 {
				t.Errorf("Stats tokens = %d, want 2", tot.Tokens)
			}
			if _, err := s.Learn(ctx, d1, ClassNone, k); err == nil {
				t.Error("Learn accepted ClassNone")
			}
		})
	}
}

func TestBoltLockAndPrune(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "bayes.db")
	s, err := OpenBolt(path, BoltOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBolt(path, BoltOptions{LockTimeout: 50 * time.Millisecond}); err == nil || !errorsIs(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	for i := range 5 {
		if _, err := s.Learn(ctx, Digest{byte(i)}, ClassSpam, []uint64{1, uint64(100 + i)}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.Prune(ctx, 1)
	if err != nil || n != 5 {
		t.Fatalf("Prune = %d, %v; want 5", n, err)
	}
	got, tot, _ := s.Counts(ctx, []uint64{1, 100})
	if got[0].Spam != 5 || got[1] != (Count{}) || tot.Tokens != 1 {
		t.Errorf("after prune: %+v %+v", got, tot)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenBolt(path, BoltOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if tot, _ := s.Stats(ctx); tot.Spam != 5 {
		t.Errorf("reopened: %+v", tot)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}

func errorsIs(err, target error) bool { return err != nil && errors.Is(err, target) }

func TestOpenStore(t *testing.T) {
	c := DefaultConfig()
	dir := t.TempDir()
	s, err := c.OpenStore(StoreOptions{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*BoltStore); !ok {
		t.Errorf("got %T, want *BoltStore", s)
	}
	s.Close()
	if _, err := os.Stat(filepath.Join(dir, "bayes.db")); err != nil {
		t.Error(err)
	}
	mr := miniredis.RunT(t)
	rc := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rc.Close()
	s, err = c.OpenStore(StoreOptions{DataDir: dir, Redis: rc, KeyPrefix: "p:"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*RedisStore); !ok {
		t.Errorf("got %T, want *RedisStore", s)
	}
	c.Store = StoreRedis
	if _, err := c.OpenStore(StoreOptions{DataDir: dir}); err == nil {
		t.Error("redis store without a client opened")
	}
}
