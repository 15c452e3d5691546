// Package uribl asks domain-name DNS lists (RFC 5782 "RHSBL"/URI lists:
// Spamhaus DBL, SURBL, URIBL and the like) about the hosts of a message's
// URLs and about its sender and From domains, and turns the answers into
// the uribl facts (score, hits, listed, errors, skipped). It finds; the
// rules decide.
//
// What is asked (see Reduce and QueryName): each host is reduced to its
// registered domain, or to an IP address for IP literals; the names are
// de-duplicated, the envelope sender and From domains go first, then URL
// hosts in the order given, and at most max_lookups names are asked per
// message (the rest are counted in Facts.Skipped). A domain is asked as a
// prefix of the zone (RFC 5782 §2.2); an address, only of zones marked
// `ips`, reversed by octets (IPv4, §2.1) or nibbles (IPv6, §2.4). A domain
// that is a URL shortener or the sender's own is asked like any other:
// the lists themselves decide what they list.
//
// How answers are read: an A record answer means "listed" (RFC 5782
// §2.1), filtered by the zone's match filters (single codes, ranges or
// bitmasks, §2.3); NXDOMAIN or no A record means "not listed". These are
// failures, never a listing and never a "not listed":
//   - a timeout (the one deadline for the whole message ends the check),
//     SERVFAIL, REFUSED or network error from the resolver;
//   - an answer in 127.255.255.0/24, which Spamhaus uses for errors
//     (127.255.255.252: typing error in the list name; 127.255.255.254:
//     query through a public or open resolver; 127.255.255.255: too many
//     queries), and any answer in a zone's error_codes (e.g. 127.0.1.255
//     for DBL, "IP queries not allowed"; 127.0.0.1 for URIBL, "query
//     refused");
//   - an answer outside 127.0.0.0/8, where list answers are (RFC 5782
//     §2.1, §2.3), such as a resolver that rewrites NXDOMAIN gives.
//
// A failure counts in Facts.Errors (zones that failed at least once) and
// adds nothing to the score. Answers, "not listed" included, are cached
// in a bounded LRU (shared code: dnsbl.Answers) for cache_ttl; failures
// are not cached.
package uribl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"moat/internal/dnsres"
	"moat/policy/dnsbl"
)

// maxInputs bounds the host strings one Check looks at (after that,
// each further input counts as skipped without being examined).
const maxInputs = 1000

// Input is what one message offers to the lists.
type Input struct {
	// Domains are the URL hosts found in the message (lower-case; IP
	// literals allowed), in the order found.
	Domains []string
	// FromDomains are the RFC5322.From domains and the envelope sender
	// (RFC5321.MailFrom) domain; they are asked first.
	FromDomains []string
}

// Facts are what rules read, under `uribl.`.
type Facts struct {
	// Score is the sum of the weights of the zone entries that listed at
	// least one name of the message: an entry counts once per message,
	// however many of the message's names it lists, so that one campaign
	// spreading its links over many domains does not multiply the score
	// (and a threshold means the same for every message).
	Score float64 `expr:"score"`
	// Hits are the zones (as configured, lower-case, no trailing dot)
	// that listed at least one name, each once, allow lists (negative
	// weight) excluded: `"dbl.spamhaus.org" in uribl.hits`.
	Hits []string `expr:"hits"`
	// Domains are the names listed by a zone in Hits (registered
	// domains, or IP addresses in text form), each once.
	Domains []string `expr:"domains"`
	// Listed is true when Hits is not empty.
	Listed bool `expr:"listed"`
	// FromListed is true when a sender or From domain is among Domains.
	FromListed bool `expr:"from_listed"`
	// Errors is the number of zones for which at least one lookup failed
	// (timeout, SERVFAIL, REFUSED, an error code): not a listing, and not
	// a "not listed" either.
	Errors int `expr:"errors"`
	// Skipped is the number of names not asked because of max_lookups.
	Skipped int `expr:"skipped"`
}

// Listing is one name listed by one zone entry.
type Listing struct {
	Name   string     // the registered domain or the address asked
	Zone   string     // the zone
	Answer netip.Addr // the answer that matched
	Weight float64    // the entry's weight
	From   bool       // the name is a sender/From domain
}

// Failure is one lookup that gave no usable answer.
type Failure struct {
	Zone string
	Name string // the registered domain or address asked
	Err  error
}

// Result is the outcome of one Check: the facts, plus details for logs.
type Result struct {
	Facts
	Listings []Listing
	Failed   []Failure
	// Asked are the names asked, in priority order.
	Asked []string
}

// CodeError is the failure of a lookup answered with an error code (see
// the package doc).
type CodeError struct {
	Answer netip.Addr
}

func (e *CodeError) Error() string {
	return fmt.Sprintf("uribl: the list answered %s, an error code, not a listing", e.Answer)
}

// Options wires a Checker.
type Options struct {
	// Now is the clock for cache expiry; default time.Now.
	Now func() time.Time
}

// Checker asks the configured lists. It is safe for concurrent use.
type Checker struct {
	entries    []entry
	zones      []zoneInfo // distinct zones, each asked once per name
	maxLookups int
	parallel   int
	timeout    time.Duration
	answers    *dnsbl.Answers
}

type entry struct {
	zone    int // index in Checker.zones
	weight  float64
	filters []dnsbl.Filter
	ips     bool
}

type zoneInfo struct {
	name   string
	ips    bool           // some entry takes IP addresses
	errors []dnsbl.Filter // error codes of all its entries
}

// New builds a Checker; it does no lookups.
func New(cfg Config, r dnsres.Resolver, opt Options) (*Checker, error) {
	if err := cfg.Validate("uribl"); err != nil {
		return nil, err
	}
	if r == nil {
		return nil, errors.New("uribl: a resolver is required")
	}
	cfg = cfg.withDefaults()
	answers, err := dnsbl.NewAnswers(dnsbl.AnswersOptions{Resolver: r, Size: cfg.CacheSize, TTL: cfg.CacheTTL, Now: opt.Now})
	if err != nil {
		return nil, err
	}
	c := &Checker{maxLookups: cfg.MaxLookups, parallel: cfg.Parallel, timeout: cfg.Timeout, answers: answers}
	index := map[string]int{}
	for _, z := range cfg.Zones {
		name := zoneKey(z.Zone)
		zi, ok := index[name]
		if !ok {
			zi = len(c.zones)
			index[name] = zi
			c.zones = append(c.zones, zoneInfo{name: name})
		}
		w := z.Weight
		if w == 0 {
			w = 1
		}
		e := entry{zone: zi, weight: w, ips: z.IPs}
		for _, m := range z.Match {
			f, _ := dnsbl.ParseFilter(m) // validated above
			e.filters = append(e.filters, f)
		}
		for _, m := range z.ErrorCodes {
			f, _ := dnsbl.ParseFilter(m)
			c.zones[zi].errors = append(c.zones[zi].errors, f)
		}
		if z.IPs {
			c.zones[zi].ips = true
		}
		c.entries = append(c.entries, e)
	}
	return c, nil
}

// Enabled reports whether any zone is configured.
func (c *Checker) Enabled() bool { return c != nil && len(c.entries) > 0 }

// subject is one name to ask, with where it came from.
type subject struct {
	Subject
	key  string
	from bool
}

// subjects reduces, de-duplicates, orders and caps the input; skipped is
// the number of distinct names left out by max_lookups, plus the inputs
// past maxInputs (not examined).
func (c *Checker) subjects(in Input) (out []subject, skipped int) {
	anyIPZone := false
	for _, z := range c.zones {
		anyIPZone = anyIPZone || z.ips
	}
	seen := map[string]bool{}
	examined := 0
	add := func(hosts []string, from bool) {
		for _, h := range hosts {
			if examined == maxInputs {
				skipped++
				continue
			}
			examined++
			s, ok := Reduce(h)
			if !ok || (s.IsIP() && !anyIPZone) {
				continue // nothing to ask: not counted as skipped
			}
			k := s.String()
			if seen[k] {
				continue
			}
			seen[k] = true
			if len(out) == c.maxLookups {
				skipped++
				continue
			}
			out = append(out, subject{Subject: s, key: k, from: from})
		}
	}
	add(in.FromDomains, true)
	add(in.Domains, false)
	return out, skipped
}

type job struct {
	subj  int
	zone  int
	qname string
}

type outcome struct {
	job   int
	addrs []netip.Addr
	err   error
}

// Check asks every list about the names of in, in parallel (at most
// `parallel` queries in flight), all under one deadline: the earlier of
// ctx's and the configured timeout. When the deadline passes, Check
// returns at once; the lookups still unanswered count as failures.
func (c *Checker) Check(ctx context.Context, in Input) Result {
	var res Result
	if !c.Enabled() {
		return res
	}
	subs, skipped := c.subjects(in)
	res.Skipped = skipped
	var jobs []job
	for si, s := range subs {
		res.Asked = append(res.Asked, s.key)
		for zi, z := range c.zones {
			if s.IsIP() && !z.ips {
				continue
			}
			if q, ok := QueryName(s.Subject, z.name); ok {
				jobs = append(jobs, job{subj: si, zone: zi, qname: q})
			}
		}
	}
	if len(jobs) == 0 {
		return res
	}

	done := make([]bool, len(jobs))
	outcomes := make([]outcome, len(jobs))
	received := 0
	// Answers in the cache need no goroutine.
	var misses []int
	for i, j := range jobs {
		if addrs, ok := c.answers.Cached(j.qname); ok {
			outcomes[i], done[i] = outcome{job: i, addrs: addrs}, true
			received++
			continue
		}
		misses = append(misses, i)
	}
	if len(misses) == 0 {
		c.evaluate(&res, subs, jobs, outcomes)
		return res
	}

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	queue := make(chan int, len(misses))
	for _, i := range misses {
		queue <- i
	}
	close(queue)
	// Buffered for every job, so that a worker never blocks on sending
	// after Check has returned at the deadline.
	results := make(chan outcome, len(misses))
	workers := min(c.parallel, len(misses))
	for range workers {
		go func() {
			for i := range queue {
				results <- c.lookup(ctx, i, jobs[i].qname)
			}
		}()
	}

collect:
	for received < len(jobs) {
		select {
		case o := <-results:
			outcomes[o.job], done[o.job] = o, true
			received++
		case <-ctx.Done():
			break collect
		}
	}
	// What arrived together with the deadline still counts.
drain:
	for received < len(jobs) {
		select {
		case o := <-results:
			outcomes[o.job], done[o.job] = o, true
			received++
		default:
			break drain
		}
	}
	for i := range jobs {
		if !done[i] {
			outcomes[i] = outcome{job: i, err: fmt.Errorf("uribl: no answer before the deadline: %w", context.DeadlineExceeded)}
		}
	}
	c.evaluate(&res, subs, jobs, outcomes)
	return res
}

// lookup asks for one query name; a panic below it becomes a failure of
// that lookup, not a crash of the server.
func (c *Checker) lookup(ctx context.Context, i int, qname string) (o outcome) {
	o.job = i
	defer func() {
		if p := recover(); p != nil {
			o.addrs, o.err = nil, fmt.Errorf("uribl: lookup of %s panicked: %v", qname, p)
		}
	}()
	if err := ctx.Err(); err != nil {
		o.err = err
		return o
	}
	o.addrs, o.err = c.answers.Lookup(ctx, qname)
	return o
}

// evaluate turns the outcomes into facts.
func (c *Checker) evaluate(res *Result, subs []subject, jobs []job, outcomes []outcome) {
	failedZone := make([]bool, len(c.zones))
	entryHit := make([]bool, len(c.entries))
	zoneHit := make([]bool, len(c.zones))
	listedName := map[string]bool{}
	for i, j := range jobs {
		o := outcomes[i]
		z := c.zones[j.zone]
		s := subs[j.subj]
		err := o.err
		if err == nil {
			err = z.checkCodes(o.addrs)
		}
		if err != nil {
			failedZone[j.zone] = true
			res.Failed = append(res.Failed, Failure{Zone: z.name, Name: s.key, Err: err})
			continue
		}
		for ei, e := range c.entries {
			if e.zone != j.zone || (s.IsIP() && !e.ips) {
				continue
			}
			a, ok := e.match(o.addrs)
			if !ok {
				continue
			}
			res.Listings = append(res.Listings, Listing{Name: s.key, Zone: z.name, Answer: a, Weight: e.weight, From: s.from})
			if !entryHit[ei] {
				entryHit[ei] = true
				res.Score += e.weight
			}
			if e.weight < 0 {
				continue // an allow list: no hit, no listed name
			}
			if !zoneHit[j.zone] {
				zoneHit[j.zone] = true
				res.Hits = append(res.Hits, z.name)
			}
			if !listedName[s.key] {
				listedName[s.key] = true
				res.Domains = append(res.Domains, s.key)
				res.FromListed = res.FromListed || s.from
			}
		}
	}
	for _, f := range failedZone {
		if f {
			res.Errors++
		}
	}
	res.Listed = len(res.Hits) > 0
}

// checkCodes returns a *CodeError when an answer is an error code or lies
// outside 127.0.0.0/8 (see the package doc).
func (z zoneInfo) checkCodes(addrs []netip.Addr) error {
	for _, a := range addrs {
		if !a.Is4() || a.As4()[0] != 127 {
			return &CodeError{Answer: a}
		}
		b := a.As4()
		if b[1] == 255 && b[2] == 255 { // 127.255.255.0/24: Spamhaus error codes
			return &CodeError{Answer: a}
		}
		for _, f := range z.errors {
			if f.Match(a) {
				return &CodeError{Answer: a}
			}
		}
	}
	return nil
}

// match returns the first answer the entry's filters accept (any answer
// when it has none; error codes were excluded before).
func (e entry) match(addrs []netip.Addr) (netip.Addr, bool) {
	for _, a := range addrs {
		if len(e.filters) == 0 {
			return a, true
		}
		for _, f := range e.filters {
			if f.Match(a) {
				return a, true
			}
		}
	}
	return netip.Addr{}, false
}
