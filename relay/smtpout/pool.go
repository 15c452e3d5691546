package smtpout

import (
	"context"
	"sync"
	"time"
)

// limiter bounds sessions in use overall and per destination. Its map
// holds only destinations in use, so it stays bounded by max.
type limiter struct {
	max, perDest int

	mu    sync.Mutex
	total int
	per   map[string]int
	wake  chan struct{} // closed and replaced on every release
}

func newLimiter(max, perDest int) *limiter {
	return &limiter{max: max, perDest: perDest, per: map[string]int{}, wake: make(chan struct{})}
}

func (l *limiter) acquire(ctx context.Context, key string) error {
	for {
		l.mu.Lock()
		if l.total < l.max && l.per[key] < l.perDest {
			l.total++
			l.per[key]++
			l.mu.Unlock()
			return nil
		}
		wake := l.wake
		l.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (l *limiter) release(key string) {
	l.mu.Lock()
	l.total--
	if l.per[key]--; l.per[key] <= 0 {
		delete(l.per, key)
	}
	close(l.wake)
	l.wake = make(chan struct{})
	l.mu.Unlock()
}

// pool keeps idle sessions by destination. Each idle session has a timer
// that closes it after the idle timeout; the pool holds at most max.
type pool struct {
	max     int
	timeout time.Duration

	mu     sync.Mutex
	idle   map[string][]*session
	n      int
	closed bool
}

func newPool(max int, timeout time.Duration) *pool {
	return &pool{max: max, timeout: timeout, idle: map[string][]*session{}}
}

// get returns an idle session for key, or nil.
func (p *pool) get(key string) *session {
	var stale []*session
	defer func() {
		for _, s := range stale {
			s.quit()
		}
	}()
	p.mu.Lock()
	defer p.mu.Unlock()
	for list := p.idle[key]; len(list) > 0; list = p.idle[key] {
		s := list[len(list)-1]
		p.remove(key, len(list)-1)
		if s.idleTimer.Stop() {
			return s
		}
		// The timer fired; its expire will not find s any more, so it
		// is closed here.
		stale = append(stale, s)
	}
	return nil
}

func (p *pool) remove(key string, i int) {
	list := p.idle[key]
	list = append(list[:i], list[i+1:]...)
	if len(list) == 0 {
		delete(p.idle, key)
	} else {
		p.idle[key] = list
	}
	p.n--
}

// put keeps s for reuse, or closes it when the pool is full or closed.
func (p *pool) put(s *session) {
	p.mu.Lock()
	if p.closed || p.n >= p.max {
		p.mu.Unlock()
		s.quit()
		return
	}
	p.idle[s.key] = append(p.idle[s.key], s)
	p.n++
	s.idleTimer = time.AfterFunc(p.timeout, func() { p.expire(s) })
	p.mu.Unlock()
}

// expire removes s if it is still idle and closes it.
func (p *pool) expire(s *session) {
	p.mu.Lock()
	found := false
	for i, x := range p.idle[s.key] {
		if x == s {
			p.remove(s.key, i)
			found = true
			break
		}
	}
	p.mu.Unlock()
	if found {
		s.quit()
	}
}

// close closes every idle session and refuses new ones.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	var all []*session
	for _, list := range p.idle {
		for _, s := range list {
			s.idleTimer.Stop()
			all = append(all, s)
		}
	}
	p.idle = map[string][]*session{}
	p.n = 0
	p.mu.Unlock()
	for _, s := range all {
		s.quit()
	}
}
