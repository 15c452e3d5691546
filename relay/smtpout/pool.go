package smtpout

import (
	"context"
	"slices"
	"sync"
	"time"

	"moat/relay/transport"
)

// limiter bounds sessions in use overall and per destination. Its maps
// hold only destinations in use or waited for, so they stay bounded by
// max and by the deliveries waiting (at most one per queue worker).
type limiter struct {
	max, perDest int

	mu     sync.Mutex
	total  int
	per    map[string]int
	wake   chan struct{}       // closed and replaced on every release
	riders map[string][]*rider // deliveries waiting for a slot, by destination

	noChain bool // set by this package's benchmarks, to compare
}

// rider is a delivery waiting for a slot to key that a session to key may
// take on instead (see chain.go): claimed, it waits for handed, which
// brings the session with its commands sent, or nil.
type rider struct {
	key     string
	msg     *transport.Message
	rcpts   []string
	g       *group // its commands, sent by the session that claimed it
	claimed bool   // l.mu
	handed  chan *session
}

func newLimiter(max, perDest int) *limiter {
	return &limiter{max: max, perDest: perDest, per: map[string]int{}, wake: make(chan struct{}), riders: map[string][]*rider{}}
}

// acquireOrRide takes a slot for key, waiting for one. With r set, the
// delivery also waits as a rider: a session to key may claim it and hand
// itself over, slot and all, with r's commands sent (s non-nil). If that
// session cannot carry r after all it hands nil, and r waits on.
func (l *limiter) acquireOrRide(ctx context.Context, key string, r *rider) (*session, error) {
	for {
		l.mu.Lock()
		if r != nil && r.claimed {
			l.mu.Unlock()
			if s := <-r.handed; s != nil {
				return s, nil
			}
			l.mu.Lock()
			r.claimed = false
			l.mu.Unlock()
			continue
		}
		if l.total < l.max && l.per[key] < l.perDest {
			l.total++
			l.per[key]++
			l.dropRider(r)
			l.mu.Unlock()
			return nil, nil
		}
		if r != nil && !slices.Contains(l.riders[key], r) {
			l.riders[key] = append(l.riders[key], r)
		}
		wake := l.wake
		var handed chan *session
		if r != nil {
			handed = r.handed
		}
		l.mu.Unlock()
		select {
		case <-wake:
		case s := <-handed:
			if s != nil {
				return s, nil
			}
			l.mu.Lock()
			r.claimed = false
			l.mu.Unlock()
		case <-ctx.Done():
			l.mu.Lock()
			claimed := r != nil && r.claimed
			l.dropRider(r)
			l.mu.Unlock()
			if claimed {
				// A session is carrying r: take what it hands, so
				// that its slot is not lost; the caller closes it.
				return <-r.handed, ctx.Err()
			}
			return nil, ctx.Err()
		}
	}
}

// dropRider takes r off the riders of its key (l.mu held).
func (l *limiter) dropRider(r *rider) {
	if r == nil {
		return
	}
	rs := l.riders[r.key]
	if i := slices.Index(rs, r); i >= 0 {
		rs = slices.Delete(rs, i, i+1)
	}
	if len(rs) == 0 {
		delete(l.riders, r.key)
	} else {
		l.riders[r.key] = rs
	}
}

// claim takes the longest-waiting rider for key, if any; the caller must
// hand it a session or nil.
func (l *limiter) claim(key string) *rider {
	l.mu.Lock()
	defer l.mu.Unlock()
	rs := l.riders[key]
	if len(rs) == 0 {
		return nil
	}
	r := rs[0]
	l.dropRider(r)
	r.claimed = true
	return r
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
