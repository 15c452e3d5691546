package learner

import (
	"context"
	"sync"
	"testing"

	"moat/policy/bayes"
	"moat/policy/content"
)

func msg(t *testing.T, id string) *content.Message {
	t.Helper()
	m, err := content.Parse([]byte("Message-ID: <"+id+">\r\nSubject: cheap pills "+id+"\r\n\r\nbuy cheap pills now "+id+"\r\n"), content.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func input(m *content.Message) bayes.Input {
	return bayes.FromContent(m, bayes.FieldNames(m.Raw(), 100))
}

// blockStore blocks Learn until released, so the queue fills.
type blockStore struct {
	*bayes.MemStore
	gate chan struct{}
}

func (b blockStore) Learn(ctx context.Context, d bayes.Digest, c bayes.Class, keys []uint64) (bayes.Outcome, error) {
	<-b.gate
	return b.MemStore.Learn(ctx, d, c, keys)
}

func TestEnqueueLearnsAndDropsWhenFull(t *testing.T) {
	st := blockStore{bayes.NewMemStore(), make(chan struct{})}
	var mu sync.Mutex
	var learned, dropped int
	l := New(Options{Classifier: bayes.New(st, bayes.Options{}), Input: input, QueueSize: 2, Observe: func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		if e.Dropped {
			dropped++
		} else if e.Err == nil && e.Outcome == bayes.Learned {
			learned++
		}
	}})
	// Not started: the queue holds 2, the rest drop without blocking.
	ok := 0
	for i := range 5 {
		if l.Enqueue(SourceTrap, bayes.ClassSpam, msg(t, string(rune('a'+i)))) {
			ok++
		}
	}
	if ok != 2 {
		t.Fatalf("queued %d, want 2", ok)
	}
	l.Start()
	close(st.gate)
	l.Close() // finishes the queued jobs
	if l.Enqueue(SourceTrap, bayes.ClassSpam, msg(t, "late")) {
		t.Fatal("enqueue after Close succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	if learned != 2 || dropped != 4 {
		t.Fatalf("learned %d dropped %d, want 2 and 4", learned, dropped)
	}
	tot, _ := st.Stats(context.Background())
	if tot.Spam != 2 {
		t.Fatalf("store has %d spam", tot.Spam)
	}
}

func TestLearnIsIdempotentAndMoves(t *testing.T) {
	st := bayes.NewMemStore()
	l := New(Options{Classifier: bayes.New(st, bayes.Options{}), Input: input})
	defer l.Close()
	m := msg(t, "x")
	for _, tc := range []struct {
		class bayes.Class
		want  bayes.Outcome
	}{{bayes.ClassSpam, bayes.Learned}, {bayes.ClassSpam, bayes.AlreadyKnown}, {bayes.ClassHam, bayes.Moved}} {
		out, err := l.Learn(context.Background(), SourceRelease, tc.class, m)
		if err != nil || out != tc.want {
			t.Fatalf("learn %v: %v %v, want %v", tc.class, out, err, tc.want)
		}
	}
	var nl *Learner
	if nl.Enqueue(SourceTrap, bayes.ClassSpam, m) {
		t.Fatal("nil learner queued")
	}
	nl.Close()
}
