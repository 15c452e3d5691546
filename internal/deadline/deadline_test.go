package deadline

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestUnarmed(t *testing.T) {
	ctx, cancel := WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > 30*time.Millisecond {
		t.Fatalf("Deadline = %v, %v", d, ok)
	}
	if err := ctx.Err(); err != nil {
		t.Fatalf("Err before the deadline = %v", err)
	}
	time.Sleep(40 * time.Millisecond)
	if err := ctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Err after the deadline = %v", err)
	}
	if ctx.armed.Load() != nil {
		t.Fatal("Deadline and Err armed a timer")
	}
	cancel()
	if err := ctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Err after the deadline and cancel = %v, want the first reason", err)
	}
	select {
	case <-ctx.Done():
	default:
		t.Error("Done of a context past its deadline is open")
	}
}

// wantExpired waits (bounded) for ctx to end and wants it to end at its
// deadline.
func wantExpired(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("the %s outlived the deadline", what)
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Errorf("%s Err = %v", what, ctx.Err())
	}
}

func TestArmedOnDone(t *testing.T) {
	ctx, cancel := WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	wantExpired(t, ctx, "context")
}

func TestCancel(t *testing.T) {
	ctx, cancel := WithTimeout(context.Background(), time.Hour)
	cancel()
	cancel()
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("Err after cancel = %v", ctx.Err())
	}
	select {
	case <-ctx.Done():
	default:
		t.Error("Done after cancel is open")
	}
	if ctx.armed.Load() != nil {
		t.Error("a canceled context armed a timer")
	}

	armed, cancel2 := WithTimeout(context.Background(), time.Hour)
	done := armed.Done()
	cancel2()
	<-done
	if !errors.Is(armed.Err(), context.Canceled) {
		t.Errorf("Err after Done and cancel = %v", armed.Err())
	}
}

type key struct{}

func TestParent(t *testing.T) {
	parent, pcancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	near, ncancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer ncancel()
	ctx, cancel := WithTimeout(parent, time.Hour)
	defer cancel()
	if ctx.Value(key{}) != "v" {
		t.Error("Value does not reach the parent")
	}
	pcancel()
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("Err after the parent's cancel = %v", ctx.Err())
	}
	<-ctx.Done()

	// The earlier deadline of the parent wins.
	c2, cancel2 := WithTimeout(near, time.Hour)
	defer cancel2()
	if d, _ := c2.Deadline(); time.Until(d) > time.Second {
		t.Errorf("Deadline %v ignores the parent's", d)
	}
	<-c2.Done()
	if !errors.Is(c2.Err(), context.DeadlineExceeded) {
		t.Errorf("Err = %v", c2.Err())
	}
}

// A child derived from the context ends with it.
func TestChild(t *testing.T) {
	ctx, cancel := WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	child, ccancel := context.WithCancel(ctx)
	defer ccancel()
	wantExpired(t, child, "child")
}

// Done, Err and cancel from several goroutines (go test -race).
func TestConcurrent(t *testing.T) {
	for range 100 {
		ctx, cancel := WithTimeout(context.Background(), time.Millisecond)
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				switch i {
				case 0:
					<-ctx.Done()
				case 1:
					cancel()
				default:
					ctx.Err()
					ctx.Value(key{})
				}
			})
		}
		wg.Wait()
		<-ctx.Done()
		if ctx.Err() == nil {
			t.Fatal("Err nil after Done")
		}
	}
}

func BenchmarkWithTimeout(b *testing.B) {
	b.Run("deadline", func(b *testing.B) {
		for b.Loop() {
			ctx, cancel := WithTimeout(context.Background(), time.Second)
			_ = ctx.Err()
			cancel()
		}
	})
	b.Run("context", func(b *testing.B) {
		for b.Loop() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = ctx.Err()
			cancel()
		}
	})
}
