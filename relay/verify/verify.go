package verify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"go.uber.org/zap"

	"moat/internal/dnsres"
	"moat/internal/reply"
	"moat/relay/route"
)

// Replies of Check besides reply.NoSuchUser (550 5.1.1) and
// reply.BadRcptSyntax (501 5.1.3). Copy them with With to add a cause.
var (
	// Tempfail is the answer when the backend could not be asked:
	// RFC 3463 §3.5 X.4.3, directory server failure.
	Tempfail = reply.New(451, 4, 3, "Cannot verify the recipient now, please try again later")
	// Harvest is the answer to a client past the harvest limit. RFC
	// 5321 §3.8: the server closes the session after a 421.
	Harvest = reply.New(421, 7, 0, "Too many unknown recipients, closing connection")
	// HarvestSoft is that answer with harvest_code 450.
	HarvestSoft = reply.New(450, 7, 1, "Too many unknown recipients, try again later")
)

// Options are what the verifier needs from its surroundings. All are
// optional.
type Options struct {
	// Hostname is our name in EHLO (RFC 5321 §4.1.1.1). Default
	// "localhost".
	Hostname string
	// Clock tells the time for cache lifetimes, the harvest window and
	// list reload checks. Default time.Now. Network deadlines use the
	// real clock.
	Clock func() time.Time
	// Logger receives what happens in the background: a list that fails
	// to reload, a backend that cannot be reached. Default: none.
	Logger *zap.Logger
	// TLSConfig is the base TLS configuration for STARTTLS to backends
	// whose route has tls other than none (RootCAs, client
	// certificates); nil is the system defaults.
	TLSConfig *tls.Config
	// Dial opens connections to backends. Default net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Resolver resolves a host name in a route address; without it the
	// system resolver of Dial is used.
	Resolver dnsres.Resolver
	// Shared, when set, shares known and unknown answers between the
	// gateways of a fleet (policy/cluster's Redis cache), behind the
	// local cache; temporary failures stay node-local.
	Shared SharedCache
}

// SharedCache is a cache other nodes see (policy/cluster.Cache).
type SharedCache interface {
	Get(ctx context.Context, key string) ([]byte, bool)
	Set(ctx context.Context, key string, val []byte, ttl time.Duration)
}

// Stats are counters since New, for metrics.
type Stats struct {
	Checks          uint64 // calls of Check on a route that verifies
	CacheHits       uint64 // callahead answers taken from the cache
	Shared          uint64 // checks that waited for another check's probe
	Probes          uint64 // RCPT commands sent to backends
	ProbeTempfails  uint64 // probes that got no usable answer
	Dials           uint64 // connections opened to backends
	Unknown         uint64 // unknown-recipient answers (list and callahead)
	HarvestRefusals uint64 // checks answered 421 by the harvest defence
	ListReloads     uint64 // recipients files (re)read
	ListErrors      uint64 // recipients files that failed to reload
}

type stats struct {
	checks, cacheHits, shared, probes, probeTempfails, dials, unknown, harvest, listReloads, listErrors atomic.Uint64
}

// routeState is what Check needs for one route.
type routeState struct {
	name    string
	mode    string
	list    *listFile
	backend *backend
}

// Verifier answers recipient checks for relay routes. It is safe for
// concurrent use; Close ends it.
type Verifier struct {
	cfg    Config
	opt    Options
	now    func() time.Time
	log    *zap.Logger
	routes map[string]*routeState

	cache *lru.Cache[string, entry]

	hmu     sync.Mutex
	clients *lru.Cache[string, *hcount]

	fmu     sync.Mutex
	flights map[string]*flight
	closed  bool // guarded by fmu; no probe starts after Close

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stats  stats
}

// entry is a cached callahead answer.
type entry struct {
	res     result
	expires time.Time
}

// flight is a probe in progress that several checks wait for.
type flight struct {
	done chan struct{}
	res  result
}

// hcount counts a client's unknown-recipient answers in a window.
type hcount struct {
	start time.Time
	n     int
}

// New builds a verifier for the routes (the `routes:` map, already
// validated by route.Config.Validate). Routes with verify_recipients
// list read their file now: an error names the route key. New opens no
// connections.
func New(cfg Config, routes map[string]route.Route, opt Options) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opt.Hostname == "" {
		opt.Hostname = "localhost"
	}
	if strings.ContainsAny(opt.Hostname, " \t\r\n") {
		return nil, fmt.Errorf("verify: hostname %q contains white space", opt.Hostname)
	}
	if opt.Clock == nil {
		opt.Clock = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = zap.NewNop()
	}
	if opt.Dial == nil {
		d := &net.Dialer{}
		opt.Dial = d.DialContext
	}
	cache, err := lru.New[string, entry](cfg.CacheSize)
	if err != nil {
		return nil, fmt.Errorf("verify.cache_size: %w", err)
	}
	v := &Verifier{
		cfg:     cfg,
		opt:     opt,
		now:     opt.Clock,
		log:     opt.Logger,
		routes:  map[string]*routeState{},
		cache:   cache,
		flights: map[string]*flight{},
	}
	if cfg.HarvestLimit > 0 {
		if v.clients, err = lru.New[string, *hcount](cfg.HarvestClients); err != nil {
			return nil, fmt.Errorf("verify.harvest_clients: %w", err)
		}
	}
	var errs []error
	for name, r := range routes {
		rs := &routeState{name: name, mode: r.VerifyRecipients}
		switch r.VerifyRecipients {
		case "", route.VerifyNone:
			rs.mode = route.VerifyNone
		case route.VerifyList:
			if r.RecipientsFile == "" {
				errs = append(errs, fmt.Errorf("routes.%s.recipients_file: required when verify_recipients is list", name))
				continue
			}
			rs.list = &listFile{path: r.RecipientsFile, every: cfg.ListReload}
			rs.list.next.Store(v.now().Add(cfg.ListReload).UnixNano())
			if err := rs.list.reload(); err != nil {
				errs = append(errs, fmt.Errorf("routes.%s.recipients_file: %w", name, err))
				continue
			}
			v.stats.listReloads.Add(1)
		case route.VerifyCallahead:
			if r.Type != route.TypeSMTP && r.Type != route.TypeLMTP {
				errs = append(errs, fmt.Errorf("routes.%s.verify_recipients: callahead needs a fixed next hop (smtp or lmtp)", name))
				continue
			}
			b, err := newBackend(v, name, r)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			rs.backend = b
		default:
			errs = append(errs, fmt.Errorf("routes.%s.verify_recipients: %q is not none, list or callahead", name, r.VerifyRecipients))
			continue
		}
		v.routes[name] = rs
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	v.ctx, v.cancel = context.WithCancel(context.Background())
	return v, nil
}

// Verifies reports whether Check does anything for the route: it is
// configured with verify_recipients list or callahead. The reserved
// routes "local" and "mx" (when not configured) are not verified here.
func (v *Verifier) Verifies(routeName string) bool {
	rs, ok := v.routes[routeName]
	return ok && rs.mode != route.VerifyNone
}

// Check returns nil when rcpt may be accepted for the route routeName,
// or a *reply.Reply: 550 5.1.x for an unknown recipient, 451 4.4.3 when
// the backend could not be asked (unless callahead_tempfail is accept),
// 421 4.7.0 (or 450 4.7.1, harvest_code) for a client past the harvest
// limit (after a 421 the caller must close the session, RFC 5321
// §3.8), 501 5.1.3 for an address that
// does not parse. A route that is not configured is a plain error.
//
// client is the SMTP client's address, for the harvest defence; an
// invalid netip.Addr (for instance a trusted local client the caller
// wants exempt) is not counted. ctx bounds the wait for an answer; the
// probe itself runs to its own timeout so that other checks waiting for
// it get the answer.
func (v *Verifier) Check(ctx context.Context, client netip.Addr, routeName, rcpt string) error {
	rs, ok := v.routes[routeName]
	if !ok {
		return fmt.Errorf("verify: route %q is not configured", routeName)
	}
	if rs.mode == route.VerifyNone {
		return nil
	}
	v.stats.checks.Add(1)
	if v.ctx.Err() != nil {
		return Tempfail.With(errors.New("verifier closed"))
	}
	addr := strings.TrimSuffix(strings.TrimPrefix(rcpt, "<"), ">")
	local, domain, err := route.Split(addr)
	if err != nil {
		return reply.BadRcptSyntax.With(err)
	}
	hkey := harvestKey(client)
	if v.harvestOver(hkey) {
		v.stats.harvest.Add(1)
		h := Harvest
		if v.cfg.HarvestCode == 450 {
			h = HarvestSoft
		}
		return h.With(fmt.Errorf("client %s is past %d unknown recipients in %s", hkey, v.cfg.HarvestLimit, v.cfg.HarvestWindow))
	}
	var res result
	switch rs.mode {
	case route.VerifyList:
		switch changed, err := rs.list.maybeReload(v.now()); {
		case err != nil:
			v.stats.listErrors.Add(1)
			v.log.Warn("recipients file not reloaded, keeping the previous list", zapRoute(rs.name), zapErr(err))
		case changed:
			v.stats.listReloads.Add(1)
		}
		// RFC 5321 §4.5.1: every domain must take mail for postmaster,
		// listed or not.
		if rs.list.cur.Load().Contains(local, domain) || strings.EqualFold(local, "postmaster") {
			res = result{outcome: known}
		} else {
			res = result{outcome: unknown, rep: reply.NoSuchUser.With(fmt.Errorf("not in the recipients file of route %s", rs.name))}
		}
	case route.VerifyCallahead:
		res = v.callahead(ctx, rs, local+"@"+domain, addr)
	}
	switch res.outcome {
	case known:
		return nil
	case unknown:
		v.stats.unknown.Add(1)
		v.harvestNote(hkey)
		return res.rep
	default:
		if v.cfg.CallaheadTempfail == TempfailAccept {
			return nil
		}
		return res.rep
	}
}

// callahead answers from the cache or from a probe, shared by every
// check that asks for the same key meanwhile.
func (v *Verifier) callahead(ctx context.Context, rs *routeState, norm, addr string) result {
	key := rs.name + "\x00" + norm
	if e, ok := v.cache.Get(key); ok {
		if v.now().Before(e.expires) {
			v.stats.cacheHits.Add(1)
			return e.res
		}
		v.cache.Remove(key)
	}
	if sh := v.opt.Shared; sh != nil {
		if b, ok := sh.Get(ctx, key); ok {
			if res, ttl, ok := v.decodeShared(b); ok {
				v.stats.cacheHits.Add(1)
				v.cache.Add(key, entry{res: res, expires: v.now().Add(ttl)})
				return res
			}
		}
	}
	v.fmu.Lock()
	if v.closed {
		v.fmu.Unlock()
		return result{outcome: tempfail, rep: Tempfail.With(errors.New("verifier closed"))}
	}
	f, joined := v.flights[key]
	if !joined {
		f = &flight{done: make(chan struct{})}
		v.flights[key] = f
		v.wg.Add(1)
		go v.run(rs.backend, key, addr, f)
	}
	v.fmu.Unlock()
	if joined {
		v.stats.shared.Add(1)
	}
	select {
	case <-f.done:
		return f.res
	case <-ctx.Done():
		return result{outcome: tempfail, rep: Tempfail.With(fmt.Errorf("waiting for the callahead: %w", ctx.Err()))}
	}
}

// encodeShared writes a known or unknown answer for the shared cache:
// "k", or "u" and the reply ("550 5.1.1 text").
func encodeShared(r result) []byte {
	if r.outcome == known {
		return []byte("k")
	}
	return []byte(fmt.Sprintf("u%d %s %s", r.rep.Code, r.rep.Enhanced, r.rep.Text))
}

// decodeShared reads what encodeShared wrote (another node's answer) and
// the local lifetime to give it; anything else is ignored.
func (v *Verifier) decodeShared(b []byte) (result, time.Duration, bool) {
	switch {
	case len(b) == 1 && b[0] == 'k':
		return result{outcome: known}, v.cfg.PositiveTTL, true
	case len(b) > 1 && b[0] == 'u':
		rep, err := reply.Parse(string(b[1:]))
		if err != nil || !rep.Permanent() {
			return result{}, 0, false
		}
		return result{outcome: unknown, rep: rep}, v.cfg.NegativeTTL, true
	}
	return result{}, 0, false
}

// run probes, caches the answer and wakes the waiting checks.
func (v *Verifier) run(b *backend, key, addr string, f *flight) {
	defer v.wg.Done()
	ctx, cancel := context.WithTimeout(v.ctx, v.cfg.ProbeTimeout)
	res := b.probe(ctx, addr)
	cancel()
	ttl := v.cfg.TempfailTTL
	switch res.outcome {
	case known:
		ttl = v.cfg.PositiveTTL
	case unknown:
		ttl = v.cfg.NegativeTTL
	}
	if ttl > 0 && v.ctx.Err() == nil {
		v.cache.Add(key, entry{res: res, expires: v.now().Add(ttl)})
		if sh := v.opt.Shared; sh != nil && res.outcome != tempfail {
			sctx, cancel := context.WithTimeout(v.ctx, time.Second)
			sh.Set(sctx, key, encodeShared(res), ttl)
			cancel()
		}
	}
	v.fmu.Lock()
	f.res = res
	delete(v.flights, key)
	v.fmu.Unlock()
	close(f.done)
}

// harvestKey is the unit counted: an IPv4 address, or the /64 of an
// IPv6 address, the smallest block a site is usually given (RFC 6177),
// so that rotating through one's own /64 does not reset the count.
func harvestKey(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

func (v *Verifier) harvestOver(key string) bool {
	if v.clients == nil || key == "" {
		return false
	}
	v.hmu.Lock()
	defer v.hmu.Unlock()
	h, ok := v.clients.Get(key)
	if !ok {
		return false
	}
	if v.now().Sub(h.start) >= v.cfg.HarvestWindow {
		v.clients.Remove(key)
		return false
	}
	return h.n >= v.cfg.HarvestLimit
}

func (v *Verifier) harvestNote(key string) {
	if v.clients == nil || key == "" {
		return
	}
	now := v.now()
	v.hmu.Lock()
	defer v.hmu.Unlock()
	h, ok := v.clients.Get(key)
	if !ok || now.Sub(h.start) >= v.cfg.HarvestWindow {
		v.clients.Add(key, &hcount{start: now, n: 1})
		return
	}
	h.n++
}

// Reload re-reads every recipients file now (for SIGHUP). A file that
// fails keeps its previous list; the errors name the route key.
func (v *Verifier) Reload() error {
	var errs []error
	for name, rs := range v.routes {
		if rs.list == nil {
			continue
		}
		if err := rs.list.reload(); err != nil {
			v.stats.listErrors.Add(1)
			errs = append(errs, fmt.Errorf("routes.%s.recipients_file: %w", name, err))
			continue
		}
		v.stats.listReloads.Add(1)
	}
	return errors.Join(errs...)
}

// Close stops probes in flight (their checks get 451), closes the
// backend connections and waits for the background work to end.
func (v *Verifier) Close() error {
	v.fmu.Lock()
	v.closed = true
	v.fmu.Unlock()
	v.cancel()
	v.wg.Wait()
	for _, rs := range v.routes {
		if rs.backend != nil {
			rs.backend.close()
		}
	}
	return nil
}

// Stats returns the counters.
func (v *Verifier) Stats() Stats {
	s := &v.stats
	return Stats{
		Checks:          s.checks.Load(),
		CacheHits:       s.cacheHits.Load(),
		Shared:          s.shared.Load(),
		Probes:          s.probes.Load(),
		ProbeTempfails:  s.probeTempfails.Load(),
		Dials:           s.dials.Load(),
		Unknown:         s.unknown.Load(),
		HarvestRefusals: s.harvest.Load(),
		ListReloads:     s.listReloads.Load(),
		ListErrors:      s.listErrors.Load(),
	}
}

func zapRoute(name string) zap.Field { return zap.String("route", name) }
func zapErr(err error) zap.Field     { return zap.Error(err) }
