package store

import (
	"context"
	"testing"
	"time"
)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func TestMemoryLimiter(t *testing.T) {
	c := &clock{now: time.Unix(1e9, 0)}
	l := NewMemoryLimiter(16, c.Now)
	ctx := context.Background()
	for i, tt := range []struct {
		advance time.Duration
		key     string
		want    bool
	}{
		{0, "a", true}, {0, "a", true}, {0, "a", false}, {0, "b", true},
		{time.Minute, "a", true}, {0, "a", true}, {0, "a", false},
	} {
		c.now = c.now.Add(tt.advance)
		if got, _ := l.Allow(ctx, tt.key, 2, time.Minute); got != tt.want {
			t.Fatalf("step %d: %v, want %v", i, got, tt.want)
		}
	}
}

func TestMemoryGreylister(t *testing.T) {
	c := &clock{now: time.Unix(1e9, 0)}
	g := NewMemoryGreylister(16, c.Now)
	ctx := context.Background()
	const delay, expiry = 5 * time.Minute, time.Hour
	for i, tt := range []struct {
		advance time.Duration
		key     string
		mark    bool // MarkPassed before the check
		pass    bool
		retry   time.Duration
	}{
		{0, "a", false, false, delay},
		{time.Minute, "a", false, false, 4 * time.Minute},
		{4 * time.Minute, "a", false, true, 0},
		{expiry - time.Second, "a", false, true, 0}, // seen: the expiry restarts
		{expiry + time.Second, "a", false, false, delay},
		{0, "b", true, true, 0}, // passed on another node
		{0, "c", false, false, delay},
		{0, "c", true, true, 0},
	} {
		c.now = c.now.Add(tt.advance)
		if tt.mark {
			g.MarkPassed(tt.key)
		}
		r, _ := g.Check(ctx, tt.key, delay, expiry)
		if r.Pass != tt.pass || r.RetryAfter != tt.retry {
			t.Fatalf("step %d: %+v, want pass %v retry %s", i, r, tt.pass, tt.retry)
		}
	}
}
