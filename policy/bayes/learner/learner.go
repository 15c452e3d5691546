// Package learner feeds the classifier (policy/bayes) from operations:
// quarantine releases, spam traps, users' Junk folders and autolearn.
//
// Learning writes to the classifier's store (a bbolt transaction with an
// fsync, or a Redis script), which may block. The SMTP session must never
// wait for it before its reply, so the session hands its jobs to a small
// bounded queue served by one worker (Enqueue): when the queue is full the
// job is dropped and counted, never waited for. Sources that are off the
// SMTP path (a release, the Junk folder scan) learn synchronously (Learn).
//
// Every source learns through the Input function given in Options, which
// the daemon sets to gateway.ClassifierInput: classifying and learning see
// the same tokens.
package learner

import (
	"context"
	"sync"
	"time"

	"moat/policy/bayes"
	"moat/policy/content"
)

// The learning sources, as metrics and logs name them.
const (
	SourceRelease    = "release"
	SourceTrap       = "trap"
	SourceJunkFolder = "junk_folder"
	SourceAutolearn  = "autolearn"
)

// Event reports one learning job: its outcome or error, or that it was
// dropped because the queue was full.
type Event struct {
	Source  string
	Class   bayes.Class
	Outcome bayes.Outcome // when Err is nil and not Dropped
	Err     error
	Dropped bool
}

// Options configure a Learner.
type Options struct {
	// Classifier learns; required.
	Classifier *bayes.Classifier
	// Input turns a message into the classifier's input; required (the
	// daemon: gateway.ClassifierInput).
	Input func(*content.Message) bayes.Input
	// QueueSize bounds the jobs waiting for the worker. Default 256.
	QueueSize int
	// Timeout bounds one store write. Default 30s.
	Timeout time.Duration
	// Observe, when set, is told every job's end (metrics, logs). It is
	// called from the worker or the caller of Learn, never under a lock.
	Observe func(Event)
}

// job is one queued learning: the input is made by Enqueue, so that the
// worker holds no reference to the session's message buffer.
type job struct {
	source string
	class  bayes.Class
	in     bayes.Input
	digest bayes.Digest
}

// Learner learns messages, at once (Learn) or through its queue
// (Enqueue). New, then Start, then Close.
type Learner struct {
	opt  Options
	jobs chan job
	stop chan struct{}
	done chan struct{}
	once sync.Once
	// started: Start ran (Close waits for the worker only then).
	started bool
	mu      sync.Mutex
}

// New returns a Learner; it has no side effects until Start.
func New(opt Options) *Learner {
	if opt.QueueSize <= 0 {
		opt.QueueSize = 256
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 30 * time.Second
	}
	return &Learner{opt: opt, jobs: make(chan job, opt.QueueSize), stop: make(chan struct{}), done: make(chan struct{})}
}

// Start starts the worker of the queue.
func (l *Learner) Start() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started {
		return
	}
	l.started = true
	go l.run()
}

// Close stops the worker after the jobs already queued (each bounded by
// Options.Timeout) and waits for it. Jobs enqueued after Close are
// dropped.
func (l *Learner) Close() {
	if l == nil {
		return
	}
	l.once.Do(func() { close(l.stop) })
	l.mu.Lock()
	started := l.started
	l.mu.Unlock()
	if started {
		<-l.done
	}
}

func (l *Learner) run() {
	defer close(l.done)
	for {
		select {
		case j := <-l.jobs:
			l.do(context.Background(), j)
		case <-l.stop:
			// The queue is bounded: what is in it now is finished.
			for n := len(l.jobs); n > 0; n-- {
				l.do(context.Background(), <-l.jobs)
			}
			return
		}
	}
}

// prepare makes the job of a message.
func (l *Learner) prepare(source string, class bayes.Class, m *content.Message) job {
	return job{source: source, class: class, in: l.opt.Input(m), digest: bayes.DigestOf(m.Header("Message-ID"), m.Raw())}
}

// Enqueue queues message m to be learned as class, without waiting: it
// reports false (and tells Observe) when the queue is full or the Learner
// closed. The classifier input is made here, on the caller's goroutine
// (no store access); the store write happens on the worker. A nil
// Learner drops silently.
func (l *Learner) Enqueue(source string, class bayes.Class, m *content.Message) bool {
	if l == nil || m == nil || class == bayes.ClassNone {
		return false
	}
	select {
	case <-l.stop:
		l.observe(Event{Source: source, Class: class, Dropped: true})
		return false
	default:
	}
	j := l.prepare(source, class, m)
	select {
	case l.jobs <- j:
		return true
	default:
		l.observe(Event{Source: source, Class: class, Dropped: true})
		return false
	}
}

// Learn learns message m as class now, under ctx and Options.Timeout.
func (l *Learner) Learn(ctx context.Context, source string, class bayes.Class, m *content.Message) (bayes.Outcome, error) {
	return l.do(ctx, l.prepare(source, class, m))
}

func (l *Learner) do(ctx context.Context, j job) (bayes.Outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, l.opt.Timeout)
	defer cancel()
	out, err := l.opt.Classifier.Learn(ctx, j.in, j.digest, j.class)
	l.observe(Event{Source: j.source, Class: j.class, Outcome: out, Err: err})
	return out, err
}

func (l *Learner) observe(e Event) {
	if l.opt.Observe != nil {
		l.opt.Observe(e)
	}
}
