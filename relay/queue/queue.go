// Package queue is moat's queue manager: it takes the messages in the
// spool (relay/spool), hands each pending recipient to the transport of its
// route (relay/transport), records every outcome durably, retries
// temporary failures with backoff and returns permanent failures and
// expired messages to the sender as delivery status notifications
// (relay/dsn).
//
// # Scheduling policy
//
//   - One attempt of a message groups its pending recipients by route and,
//     for the "mx" route, by recipient domain (the destination), and calls
//     the transport once per group, groups one after the other. After each
//     group the outcome is written with spool.Update before anything else
//     happens, so a crash repeats at most that one group (a duplicate,
//     never a loss; RFC 5321 §6.1).
//   - nil → delivered; transport.IsPermanent → failed and bounced;
//     anything else (4yz, timeouts, DNS failures) → still pending.
//   - A message with pending recipients is tried again after
//     RetryMin·2^(n-1) (n = attempts so far), capped at RetryMax, with ±15%
//     jitter so that a burst of deferred mail does not retry in step
//     (RFC 5321 §4.5.4.1: retry interval at least 30 minutes is suggested
//     for the general case; the defaults start lower for a gateway in
//     front of its own backend), and never later than its expiry.
//   - A message older than MaxAge (RFC 5321 §4.5.4.1: give up after 4-5
//     days) fails all pending recipients with "delivery time expired"
//     (status 4.4.7, RFC 3463 §3.5) and bounces them.
//   - Once per message, at the first attempt after DelayWarning, a delay
//     notice (Action: delayed, RFC 3464 §2.3.3) goes to the sender.
//   - Notices go to the envelope sender from the null sender; none is ever
//     sent for a message from the null sender (a bounce is never bounced,
//     nor warned about: RFC 5321 §4.5.5, RFC 3461 §6.2).
//   - Nor, unless Options.BounceUnverifiedSenders, for a sender the
//     gateway recorded as spool.SenderUnverified (no SPF pass, no aligned
//     DMARC pass, not an authenticated user or a trusted network): the
//     address may be forged, and the notice would be backscatter
//     (RFC 3834 §2). Its failed recipients are marked as notified, one
//     line is logged and Options.Suppressed counts it. Records without
//     the field (spooled by an older moat) are notified as before.
//   - A message is removed from the spool only when no recipient is pending
//     and every failed recipient's notice has been Put durably
//     (Recipient.Bounced). A crash between the notice's Put and that mark
//     sends the notice twice, never zero times.
//   - Held messages are not attempted. At most Concurrency messages are
//     attempted at once, and at most PerDestination groups to one
//     destination. The scheduler is a heap ordered by next attempt time and
//     one timer; Notify (from the gateway) puts a new message at the front;
//     a periodic scan of the spool catches anything a full Notify channel
//     dropped.
package queue

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"moat/internal/maillog"
	"moat/internal/reply"
	"moat/relay/dsn"
	"moat/relay/spool"
	"moat/relay/transport"
)

// Options configure a Manager. Zero values take the documented defaults.
type Options struct {
	Concurrency    int           // messages attempted at once; default 20
	PerDestination int           // groups to one destination at once; default 20
	RetryMin       time.Duration // default 5m
	RetryMax       time.Duration // default 1h
	MaxAge         time.Duration // default 120h
	// DelayWarning: default (0) 4h; negative: no delay warnings.
	// Config.Apply maps the file's 0 ("off") to -1.
	DelayWarning time.Duration

	Hostname string           // Reporting-MTA and From of notices; default os.Hostname
	Clock    func() time.Time // default time.Now
	Logger   *zap.Logger      // default no logging
	MailLog  *maillog.Logger  // one line per delivery outcome; nil: none
	// RouteFor routes a notice to the original sender. nil, or ok=false:
	// the implicit "mx" route.
	RouteFor func(rcpt string) (route string, ok bool)

	// BounceUnverifiedSenders sends notices to every sender, as MTAs
	// classically do. The default (false) withholds them from a sender
	// recorded as spool.SenderUnverified: the failed recipients are
	// marked done, one line is logged and Suppressed is called.
	BounceUnverifiedSenders bool
	// Suppressed, when set, is called once per withheld notice with its
	// kind, NoticeFailure or NoticeDelay (the metrics hook).
	Suppressed func(kind string)

	DeliveryTimeout time.Duration // one transport call; default 10m
	ShutdownGrace   time.Duration // in-flight deliveries after Run's ctx ends; default 30s
	ScanInterval    time.Duration // spool rescan; default 1m
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 20
	}
	if o.PerDestination <= 0 {
		o.PerDestination = 20
	}
	def(&o.RetryMin, 5*time.Minute)
	def(&o.RetryMax, time.Hour)
	def(&o.MaxAge, 120*time.Hour)
	def(&o.DelayWarning, 4*time.Hour)
	def(&o.DeliveryTimeout, 10*time.Minute)
	def(&o.ShutdownGrace, 30*time.Second)
	def(&o.ScanInterval, time.Minute)
	if o.RetryMax < o.RetryMin {
		o.RetryMax = o.RetryMin
	}
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
		if o.Hostname == "" {
			o.Hostname = "localhost"
		}
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
}

// Kinds of notice, for Options.Suppressed.
const (
	NoticeFailure = "failure" // a bounce (RFC 3464 Action: failed)
	NoticeDelay   = "delay"   // a delay warning (Action: delayed)
)

// Stats counts the queue's messages by state.
type Stats struct {
	Messages   int           // in the queue
	Active     int           // being attempted now
	Deferred   int           // attempted before, waiting for the next attempt
	Held       int           // on hold
	Recipients int           // pending recipients
	Oldest     time.Duration // age of the oldest message
}

// Manager schedules delivery of the spool's messages.
type Manager struct {
	sp         *spool.Spool
	transports func(route string) (transport.Transport, bool)
	opt        Options
	log        *zap.Logger
	notify     chan string
	wake       chan struct{}
	jobs       chan *item // to idle workers

	mu     sync.Mutex
	items  map[string]*item
	sched  schedule
	active int
	dests  map[string]*destSlot
	// watches are the flushes waiting for attempts to end (watch.go).
	watches map[*Watch]struct{}
}

type item struct {
	id      string
	env     *spool.Envelope // last known state, for Stats
	due     time.Time
	index   int // in sched; -1 when not scheduled
	running bool
	// Operator requests that arrive while an attempt runs, applied after.
	wantHold, wantDelete, wantFlush bool
}

type destSlot struct {
	ch   chan struct{}
	refs int
}

// New returns a manager; it does nothing until Run.
func New(sp *spool.Spool, transports func(route string) (transport.Transport, bool), opt Options) *Manager {
	opt.defaults()
	return &Manager{
		sp:         sp,
		transports: transports,
		opt:        opt,
		log:        opt.Logger,
		notify:     make(chan string, 4096),
		wake:       make(chan struct{}, 1),
		jobs:       make(chan *item),
		items:      map[string]*item{},
		dests:      map[string]*destSlot{},
	}
}

// Notify asks for an immediate attempt of a newly spooled message. It
// never blocks: when the channel is full the periodic scan finds it.
func (m *Manager) Notify(id string) {
	select {
	case m.notify <- id:
	default:
	}
}

func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *Manager) now() time.Time { return m.opt.Clock() }

// Run loads the spool (so mail left by an earlier run is delivered), then
// schedules attempts until ctx is done. It then waits for the attempts
// under way; their transports get ShutdownGrace before their context is
// cancelled.
func (m *Manager) Run(ctx context.Context) error {
	if err := m.scan(); err != nil {
		return err
	}
	dctx, dcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer dcancel()
	var wg sync.WaitGroup
	scan := time.NewTicker(m.opt.ScanInterval)
	defer scan.Stop()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		m.mu.Lock()
		wait := m.dispatch(dctx, ctx.Done(), &wg)
		m.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			grace := time.AfterFunc(m.opt.ShutdownGrace, dcancel)
			wg.Wait()
			grace.Stop()
			return nil
		case id := <-m.notify:
			if env, err := m.sp.Get(id); err == nil {
				m.mu.Lock()
				m.track(env, true)
				m.mu.Unlock()
			}
		case <-m.wake:
		case <-timer.C:
		case <-scan.C:
			if err := m.scan(); err != nil {
				m.log.Warn("queue scan failed", zap.Error(err))
			}
		}
	}
}

// scan adds every message of the spool not yet known.
func (m *Manager) scan() error {
	envs, err := m.sp.List()
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, env := range envs {
		m.track(env, false)
	}
	return nil
}

// track adds a message to the schedule (m.mu held). now: at once,
// whatever its NextAttempt says.
func (m *Manager) track(env *spool.Envelope, now bool) {
	if _, ok := m.items[env.ID]; ok {
		return
	}
	it := &item{id: env.ID, env: env, index: -1, due: env.NextAttempt}
	if now {
		it.due = m.now()
	}
	m.items[env.ID] = it
	if !env.Held {
		heap.Push(&m.sched, it)
	}
}

// dispatch starts every due attempt that fits (m.mu held) and returns how
// long to sleep. An idle worker takes the attempt, else a new one starts.
func (m *Manager) dispatch(ctx context.Context, stop <-chan struct{}, wg *sync.WaitGroup) time.Duration {
	now := m.now()
	for len(m.sched) > 0 && m.active < m.opt.Concurrency {
		it := m.sched[0]
		if it.due.After(now) {
			break
		}
		heap.Pop(&m.sched)
		it.running = true
		m.active++
		select {
		case m.jobs <- it:
		default:
			wg.Add(1)
			go m.worker(ctx, stop, wg, it)
		}
	}
	wait := m.opt.ScanInterval
	if len(m.sched) > 0 && m.active < m.opt.Concurrency {
		if d := m.sched[0].due.Sub(now); d < wait {
			wait = max(d, time.Millisecond)
		}
	}
	return wait
}

// workerIdle is how long a worker waits for another attempt before it
// ends.
const workerIdle = 30 * time.Second

// worker runs the attempt it starts with, then those dispatch hands it,
// and ends when idle for workerIdle or when stop is closed. Reusing
// workers keeps their grown stacks: a goroutine per attempt grew a new
// stack by copying for every message.
func (m *Manager) worker(ctx context.Context, stop <-chan struct{}, wg *sync.WaitGroup, it *item) {
	defer wg.Done()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		m.work(ctx, it)
		idle.Reset(workerIdle)
		select {
		case it = <-m.jobs:
		case <-idle.C:
			return
		case <-stop:
			return
		}
	}
}

// work runs one attempt and reschedules.
func (m *Manager) work(ctx context.Context, it *item) {
	var out Outcome
	env, err := m.attemptCounted(ctx, it.id, &out)
	if err != nil {
		m.log.Warn("queue attempt failed", zap.String("queue_id", it.id), zap.Error(err))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.poke()
	switch {
	case err == nil && env != nil && env.Held: // held before the attempt: none ran
		out.Held = true
	case err == nil && env == nil && out == Outcome{}: // gone before the attempt
		out.Removed = true
	}
	m.watched(it.id, out, err)
	m.active--
	it.running = false
	if err != nil {
		// Could not read or record it: try again later.
		if env == nil {
			env = it.env
		}
		env.NextAttempt = m.now().Add(m.opt.RetryMin)
	}
	switch {
	case it.wantDelete:
		if e := m.sp.Remove(it.id); e != nil && !errors.Is(e, spool.ErrNotFound) {
			m.log.Warn("queue delete failed", zap.String("queue_id", it.id), zap.Error(e))
		}
		delete(m.items, it.id)
		return
	case env == nil: // delivered and removed
		delete(m.items, it.id)
		return
	}
	it.env = env
	if it.wantHold {
		it.wantHold = false
		env.Held = true
		if e := m.sp.Update(env); e != nil {
			m.log.Warn("queue hold failed", zap.String("queue_id", it.id), zap.Error(e))
		}
	}
	if env.Held {
		return
	}
	it.due = env.NextAttempt
	if it.wantFlush {
		it.wantFlush = false
		it.due = m.now()
	}
	heap.Push(&m.sched, it)
}

// attempt runs one delivery attempt of a message and returns its state
// afterwards, or nil if it has left the queue.
func (m *Manager) attempt(ctx context.Context, id string) (*spool.Envelope, error) {
	return m.attemptCounted(ctx, id, nil)
}

// attemptCounted is attempt that also counts, into out (when not nil),
// what became of the recipients pending at its start.
func (m *Manager) attemptCounted(ctx context.Context, id string, out *Outcome) (*spool.Envelope, error) {
	env, err := m.sp.Get(id)
	if errors.Is(err, spool.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if env.Held {
		return env, nil
	}
	if out != nil {
		pending := pendingIndexes(env)
		defer func() { out.add(env, pending) }()
	}
	now := m.now()
	deadline := env.Received.Add(m.opt.MaxAge)
	if !now.Before(deadline) {
		// RFC 5321 §4.5.4.1: give up; the notice says why (RFC 3463 §3.5 X.4.7).
		for i := range env.Recipients {
			r := &env.Recipients[i]
			if r.Status == spool.StatusPending {
				r.Status = spool.StatusFailed
				last := r.LastError
				r.LastError = "4.4.7 delivery time expired"
				if last != "" {
					r.LastError += "; last error: " + last
				}
				m.mailEvent(env, r, r.Route, now, transport.Result{})
			}
		}
	} else if err := m.deliverGroups(ctx, env, now); err != nil {
		return env, err
	}
	if err := m.bounce(ctx, env, now); err != nil {
		m.log.Warn("queue bounce failed", zap.String("queue_id", id), zap.Error(err))
	}
	if !env.Pending() && allBounced(env) {
		if err := m.sp.Remove(id); err != nil {
			return env, err
		}
		m.log.Info("removed", zap.String("queue_id", id))
		return nil, nil
	}
	if env.Pending() {
		m.delayWarning(ctx, env, now)
	}
	env.Attempts++
	next := now.Add(m.backoff(env.Attempts))
	if next.After(deadline) && now.Before(deadline) {
		next = deadline
	}
	env.NextAttempt = next
	if err := m.sp.Update(env); err != nil {
		return env, err
	}
	return env, nil
}

func allBounced(env *spool.Envelope) bool {
	for _, r := range env.Recipients {
		if r.Status == spool.StatusFailed && !r.Bounced {
			return false
		}
	}
	return true
}

// backoff is RetryMin·2^(n-1) capped at RetryMax, ±15% jitter.
func (m *Manager) backoff(n int) time.Duration {
	d := m.opt.RetryMin
	for i := 1; i < n && d < m.opt.RetryMax; i++ {
		d *= 2
	}
	d = min(d, m.opt.RetryMax)
	return time.Duration(float64(d) * (0.85 + 0.3*rand.Float64()))
}

type group struct {
	route, dest string
	idx         []int
}

// destination is what the per-destination limit counts: for "mx" the
// recipient's domain, for "local" the mailbox (local deliveries do not
// compete for a remote server), else the route.
func destination(route, addr string) string {
	switch route {
	case "mx":
		if i := strings.LastIndexByte(addr, '@'); i >= 0 {
			return "mx:" + strings.ToLower(addr[i+1:])
		}
		return "mx:"
	case "local":
		return "local:" + strings.ToLower(addr)
	}
	return route
}

func (m *Manager) deliverGroups(ctx context.Context, env *spool.Envelope, now time.Time) error {
	var groups []*group
	byKey := map[string]*group{}
	for i, r := range env.Recipients {
		if r.Status != spool.StatusPending {
			continue
		}
		d := destination(r.Route, r.Address)
		key := r.Route + "\x00" + d
		g := byKey[key]
		if g == nil {
			g = &group{route: r.Route, dest: d}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.idx = append(g.idx, i)
	}
	msg := &transport.Message{
		ID: env.ID, Sender: env.Sender, Size: env.Size, UTF8: env.UTF8,
		ClientIP: env.ClientIP, ClientName: env.ClientName, HELO: env.HELO, Protocol: env.Protocol,
		Junk: env.Junk,
		Open: func() (io.ReadCloser, error) { return m.sp.Open(env.ID) },
	}
	for gi, g := range groups {
		rcpts := make([]string, len(g.idx))
		for k, i := range g.idx {
			rcpts[k] = env.Recipients[i].Address
		}
		results := m.deliver(ctx, g, msg, rcpts)
		byAddr := make(map[string]transport.Result, len(results))
		for _, res := range results {
			byAddr[strings.ToLower(res.Recipient)] = res
		}
		for _, i := range g.idx {
			r := &env.Recipients[i]
			r.Attempts++
			r.LastAttempt = now
			res, seen := byAddr[strings.ToLower(r.Address)]
			err := res.Err
			if !seen {
				err = errors.New("transport returned no result for this recipient")
			}
			switch {
			case err == nil:
				r.Status, r.LastError = spool.StatusDelivered, ""
			case transport.IsPermanent(err):
				r.Status, r.LastError = spool.StatusFailed, errText(err)
			default:
				r.LastError = errText(err)
				env.LastError = r.LastError
			}
			m.log.Info("delivery",
				zap.String("queue_id", env.ID), zap.String("rcpt", r.Address), zap.String("route", g.route),
				zap.String("status", string(r.Status)), zap.String("error", r.LastError))
			m.mailEvent(env, r, g.route, now, res)
		}
		// Persist before moving on: a crash repeats at most this group.
		// After the last group the caller persists or removes the
		// message; a crash before that repeats this group (a duplicate,
		// never a loss), and a fully delivered message costs no rewrite.
		if gi < len(groups)-1 {
			if err := m.sp.Update(env); err != nil {
				return err
			}
		}
	}
	return nil
}

// deliver calls the group's transport under the per-destination limit;
// a missing transport or a panic is a temporary failure.
func (m *Manager) deliver(ctx context.Context, g *group, msg *transport.Message, rcpts []string) (res []transport.Result) {
	t, ok := m.transports(g.route)
	if !ok || t == nil {
		return transport.All(rcpts, fmt.Errorf("no transport for route %q", g.route))
	}
	release, err := m.acquire(ctx, g.dest)
	if err != nil {
		return transport.All(rcpts, err)
	}
	defer release()
	dctx, cancel := context.WithTimeout(ctx, m.opt.DeliveryTimeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			m.log.Error("transport panic", zap.String("queue_id", msg.ID), zap.String("route", g.route), zap.Any("panic", p))
			res = transport.All(rcpts, fmt.Errorf("transport %q failed internally", g.route))
		}
	}()
	return t.Deliver(dctx, msg, rcpts)
}

func (m *Manager) acquire(ctx context.Context, dest string) (func(), error) {
	m.mu.Lock()
	s := m.dests[dest]
	if s == nil {
		s = &destSlot{ch: make(chan struct{}, m.opt.PerDestination)}
		m.dests[dest] = s
	}
	s.refs++
	m.mu.Unlock()
	unref := func() {
		m.mu.Lock()
		if s.refs--; s.refs == 0 {
			delete(m.dests, dest)
		}
		m.mu.Unlock()
	}
	select {
	case s.ch <- struct{}{}:
		return func() { <-s.ch; unref() }, nil
	case <-ctx.Done():
		unref()
		return nil, ctx.Err()
	}
}

// mailEvent writes the mail log line of one recipient's outcome; res is
// the transport's result of this attempt (its relay and reply when
// delivered), zero when there was none.
func (m *Manager) mailEvent(env *spool.Envelope, r *spool.Recipient, route string, now time.Time, res transport.Result) {
	if m.opt.MailLog == nil {
		return
	}
	kind := maillog.Deferred
	switch {
	case r.Status == spool.StatusDelivered:
		kind = maillog.Delivered
	case r.Status == spool.StatusFailed && strings.HasPrefix(r.LastError, "4.4.7 delivery time expired"):
		kind = maillog.Expired
	case r.Status == spool.StatusFailed:
		kind = maillog.Bounced
	}
	rep := r.LastError
	if kind == maillog.Delivered {
		rep = res.Reply
	}
	m.opt.MailLog.Log(maillog.Event{
		Kind: kind, QueueID: env.ID, Client: env.ClientIP, Sender: env.Sender,
		Recipients: []string{r.Address}, Route: route, Relay: res.Relay, Reply: rep,
		Size: env.Size, Delay: now.Sub(env.Received), Attempts: r.Attempts,
	})
}

// errText renders an error for LastError and the notice: an SMTP reply as
// "550 5.1.1 text" (without its internal cause), anything else as is.
func errText(err error) string {
	var r *reply.Reply
	if errors.As(err, &r) {
		return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text)
	}
	return err.Error()
}

// bounce queues one failure notice for every failed recipient not yet
// notified, then marks them (RFC 3464). Nothing for the null sender.
func (m *Manager) bounce(ctx context.Context, env *spool.Envelope, now time.Time) error {
	var rcpts []dsn.Recipient
	var idx []int
	for i, r := range env.Recipients {
		if r.Status == spool.StatusFailed && !r.Bounced {
			idx = append(idx, i)
			rcpts = append(rcpts, dsnRecipient(r, dsn.Failed, "5.0.0"))
		}
	}
	if len(idx) == 0 {
		return nil
	}
	switch {
	case env.Sender == "":
		m.log.Info("no bounce to the null sender", zap.String("queue_id", env.ID), zap.Int("recipients", len(idx)))
	case m.withhold(env, NoticeFailure, len(idx)):
		// Withheld: marked below as if sent, so it is never retried.
	default:
		id, err := m.enqueueNotice(ctx, env, rcpts, now)
		if err != nil {
			return err
		}
		m.log.Info("bounce queued", zap.String("queue_id", env.ID), zap.String("dsn_id", id), zap.Int("recipients", len(idx)))
	}
	for _, i := range idx {
		env.Recipients[i].Bounced = true
	}
	return m.sp.Update(env)
}

// withhold reports whether the notice of kind about env must not be sent
// because its sender was not verified at acceptance (Options.
// BounceUnverifiedSenders); if so it logs one line and calls Suppressed.
// RFC 3834 §2 and RFC 5321 §6.2: a notice to a forged sender is
// backscatter, mail nobody asked for; Postfix's answer is to refuse
// before 250 (relay/verify) and this is the fallback for what still
// fails after it.
func (m *Manager) withhold(env *spool.Envelope, kind string, rcpts int) bool {
	if m.opt.BounceUnverifiedSenders || env.SenderCheck.Verified() {
		return false
	}
	m.log.Info("bounce suppressed",
		zap.String("queue_id", env.ID), zap.String("sender", env.Sender), zap.String("notice", kind),
		zap.Int("recipients", rcpts),
		zap.String("reason", "sender not verified: no SPF pass, no aligned DMARC pass, not authenticated or trusted"))
	if m.opt.Suppressed != nil {
		m.opt.Suppressed(kind)
	}
	return true
}

// delayWarning sends, once per message, a notice that delivery is late.
func (m *Manager) delayWarning(ctx context.Context, env *spool.Envelope, now time.Time) {
	if m.opt.DelayWarning < 0 || env.DelayWarned || env.Sender == "" || now.Sub(env.Received) < m.opt.DelayWarning {
		return
	}
	if m.withhold(env, NoticeDelay, 0) {
		env.DelayWarned = true // once; persisted by the caller's Update
		return
	}
	var rcpts []dsn.Recipient
	for _, r := range env.Recipients {
		if r.Status == spool.StatusPending {
			d := dsnRecipient(r, dsn.Delayed, "4.0.0")
			d.WillRetryUntil = env.Received.Add(m.opt.MaxAge)
			rcpts = append(rcpts, d)
		}
	}
	id, err := m.enqueueNotice(ctx, env, rcpts, now)
	if err != nil {
		m.log.Warn("delay warning failed", zap.String("queue_id", env.ID), zap.Error(err))
		return
	}
	env.DelayWarned = true // persisted by the caller's Update
	m.log.Info("delay warning queued", zap.String("queue_id", env.ID), zap.String("dsn_id", id))
}

// dsnRecipient turns a recipient's state into a per-recipient block. The
// status is the enhanced code at the start of LastError ("550 5.1.1 …" or
// "4.4.7 …"), else def.
func dsnRecipient(r spool.Recipient, action dsn.Action, def string) dsn.Recipient {
	d := dsn.Recipient{Address: r.Address, Action: action, Status: def, LastAttempt: r.LastAttempt}
	text := r.LastError
	words := strings.Fields(text)
	switch {
	case len(words) >= 2 && len(words[0]) == 3 && isDigits(words[0]):
		if _, err := reply.ParseEnhanced(words[1]); err == nil {
			d.Status = words[1]
		}
		d.DiagnosticCode = "smtp; " + text
	case len(words) >= 1:
		if _, err := reply.ParseEnhanced(words[0]); err == nil {
			d.Status = words[0]
		}
		d.DiagnosticCode = "x-moat; " + text
	}
	if action == dsn.Failed && d.Status[0] == '2' {
		d.Status = def
	}
	return d
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// enqueueNotice builds a notice about env and Puts it durably as a new
// message from the null sender to env.Sender.
func (m *Manager) enqueueNotice(ctx context.Context, env *spool.Envelope, rcpts []dsn.Recipient, now time.Time) (string, error) {
	headers, err := m.readHeaders(env.ID)
	if err != nil {
		return "", err
	}
	from := env.ClientName
	if from == "" {
		from = env.HELO
	}
	msg, err := dsn.Build(dsn.Params{
		ReportingMTA: m.opt.Hostname,
		To:           env.Sender,
		QueueID:      env.ID,
		ReceivedFrom: from,
		ArrivalDate:  env.Received,
		Recipients:   rcpts,
		Headers:      headers,
		Date:         now,
	})
	if err != nil {
		return "", err
	}
	route := "mx"
	if m.opt.RouteFor != nil {
		if r, ok := m.opt.RouteFor(env.Sender); ok {
			route = r
		}
	}
	n := &spool.Envelope{
		ID:         m.sp.NewID(),
		Sender:     "", // RFC 5321 §4.5.5
		Recipients: []spool.Recipient{{Address: env.Sender, Route: route, Status: spool.StatusPending}},
		Received:   now,
		UTF8:       !isASCII(env.Sender),
		Protocol:   "LOCAL",
		// From the null sender, so never notified anyway (RFC 3461 §6.2).
		SenderCheck: spool.SenderLocal,
	}
	if err := m.sp.Put(ctx, n, bytes.NewReader(msg)); err != nil {
		return "", err
	}
	m.mu.Lock()
	m.track(n, true)
	m.mu.Unlock()
	m.poke()
	return n.ID, nil
}

// readHeaders returns the header section of a spooled message, from at
// most dsn.HeaderReadLimit bytes of it (dsn.Build keeps whole fields up
// to dsn.MaxHeaders).
func (m *Manager) readHeaders(id string) ([]byte, error) {
	f, err := m.sp.Open(id)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, dsn.HeaderReadLimit))
	if err != nil {
		return nil, err
	}
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		b = b[:i+2]
	} else if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		b = b[:i+1]
	}
	return b, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
