package gateway

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"moat/internal/reply"
	"moat/policy/scanner"
	"moat/rules"
)

// The external scanners (issue 22): rspamd, spamd, clamd and milters, each
// a scanner.Scanner. At DATA they start in parallel, one goroutine each,
// as soon as the message is parsed (scanStartCheck, right after the
// message check), while moat's own data checks (DKIM, DMARC, ...) run;
// the "scanners" check, the last check of the data stage, joins them
// before the data-stage rules. Their answers become the facts `scanner`
// and `virus`; a milter's reject, tempfail, discard or quarantine is the
// verdict; a scanner that cannot answer costs the message 451 4.7.0 or
// nothing (on_error); a virus found that the rules let through is refused
// or quarantined after them (virus_action), so that no configuration
// accepts one.

// The names of the scanner fact groups, as rules read them.
const (
	GroupScanner = "scanner"
	GroupVirus   = "virus"
)

// ScannerFacts are one scanner's answer: rules read scanner.NAME.score,
// scanner.NAME.symbols ... (NAME is scanners[].name).
type ScannerFacts struct {
	// Score and Threshold: the scanner's spam score and its own spam
	// threshold (rspamd, spamd; 0 for the others).
	Score     float64 `expr:"score"`
	Threshold float64 `expr:"threshold"`
	// Action is the scanner's own verdict, lower-case (scanner.Result.Action).
	Action string `expr:"action"`
	// Symbols are the rules or symbols that fired, sorted.
	Symbols []string `expr:"symbols"`
	// Error is the kind of the failure (timeout, connect, protocol,
	// refused, io), "" when it answered.
	Error string `expr:"error"`
	// Skipped: the message was larger than max_size and not sent (or the
	// session is offline and scanners are off).
	Skipped bool `expr:"skipped"`
	// OK: the scanner answered.
	OK bool `expr:"ok"`
}

// VirusFacts are what the antivirus scanners found: virus.found,
// virus.names, virus.scanner, and virus.policy (virus_action).
type VirusFacts struct {
	Found bool `expr:"found"`
	// Names are the signature names, of every scanner that found one.
	Names []string `expr:"names"`
	// Scanner is the first scanner (in configuration order) that found one.
	Scanner string `expr:"scanner"`
	// Policy is the configured virus_action: reject or quarantine.
	Policy string `expr:"policy"`
}

// ScannerFactGroups are the rules' view of the scanner facts (data
// stage). They are registered whether or not scanners are configured, so
// that rule files type-check alike; scanner.NAME of a scanner that is not
// configured reads as the zero ScannerFacts.
func ScannerFactGroups() []rules.FactGroup {
	return []rules.FactGroup{
		{Name: GroupScanner, Stage: rules.StageData, Zero: map[string]ScannerFacts{}},
		{Name: GroupVirus, Stage: rules.StageData, Zero: &VirusFacts{}},
	}
}

// ScannerSpec is one configured scanner: its configuration and client.
type ScannerSpec struct {
	Config  scanner.Config
	Scanner scanner.Scanner
}

// The values of ScannersOptions.VirusAction (virus_action).
const (
	VirusReject     = "reject"
	VirusQuarantine = "quarantine"
)

// ScannersOptions build Scanners.
type ScannersOptions struct {
	Scanners []ScannerSpec
	// VirusAction is what a virus the rules let through gets: reject
	// (554 5.7.1, the default) or quarantine.
	VirusAction string
	// Hostname is ours (milter macro j, rspamd's MTA name).
	Hostname string
	// MaxMessageSize bounds a message a milter's body replacement makes
	// (smtp.max_message_size); 0 no bound.
	MaxMessageSize int64
	// Offline leaves the scanners out (moat rules test): their facts say
	// skipped. The live daemon sets it false.
	Offline bool
	// PingInterval is how often Run pings the required scanners;
	// default 5s.
	PingInterval time.Duration
	Logger       *zap.Logger
	// Observe, Error and Verdict, when set, are told each scan's
	// latency, each failure by kind, and each answer's verdict (clean,
	// spam, infected, reject, soft_reject, greylist, tempfail, discard,
	// quarantine, skipped): the metrics.
	Observe func(scanner string, d time.Duration)
	Error   func(scanner, kind string)
	Verdict func(scanner, verdict string)
}

// Scanners are the configured scanners of the daemon. Safe for
// concurrent use.
type Scanners struct {
	opt  ScannersOptions
	list []*scanEntry
	log  *zap.Logger
	// bound is the longest scanner timeout plus stopGrace: how long the
	// data stage may wait for the scans.
	bound time.Duration
}

// scanEntry is one scanner and its health.
type scanEntry struct {
	cfg scanner.Config
	sc  scanner.Scanner

	mu      sync.Mutex
	failing bool   // the last scan or ping failed: logged once per change
	pinged  bool   // Run pinged it at least once
	pingErr error  // the last ping's error (required scanners)
	kind    string // the kind of the failure while failing
}

// NewScanners returns the scanners of opt; nil when there are none.
func NewScanners(opt ScannersOptions) *Scanners {
	if len(opt.Scanners) == 0 {
		return nil
	}
	if opt.VirusAction == "" {
		opt.VirusAction = VirusReject
	}
	if opt.PingInterval <= 0 {
		opt.PingInterval = 5 * time.Second
	}
	s := &Scanners{opt: opt, log: opt.Logger}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	for _, sp := range opt.Scanners {
		c := sp.Config
		c.SetDefaults()
		s.list = append(s.list, &scanEntry{cfg: c, sc: sp.Scanner})
		s.bound = max(s.bound, c.Timeout+stopGrace)
	}
	return s
}

// Names returns the scanners' names, in configuration order.
func (s *Scanners) Names() []string {
	var out []string
	for _, e := range s.list {
		out = append(out, e.cfg.Name)
	}
	return out
}

// scanOutcome is what one scan came to.
type scanOutcome struct {
	res     *scanner.Result
	err     error
	panic   any
	skipped bool
	took    time.Duration
}

// scanRun is the scans of one message, started by scanStartCheck.
type scanRun struct {
	cancel context.CancelFunc
	out    []chan scanOutcome // one per scanner, buffered: a scan never blocks on it
	wg     sync.WaitGroup
}

// stopGrace bounds the wait for scans that ignore their cancelled
// context when the data stage ends (a client bug): the session goes on.
const stopGrace = 2 * time.Second

// stop cancels the scans still running and waits for them, a little:
// they read the message's buffer, which is reused after DATA. It reports
// whether they all ended.
func (r *scanRun) stop() bool {
	r.cancel()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// start sends the message to every scanner, each in its own goroutine
// under its own timeout and under ctx's deadline (not its cancellation:
// ctx is the starting check's, which ends at once; its deadline is the
// message's, or the longest scanner timeout).
func (s *Scanners) start(ctx context.Context, t *Txn) *scanRun {
	base := context.WithoutCancel(ctx)
	var rctx context.Context
	var cancel context.CancelFunc
	if dl, ok := ctx.Deadline(); ok {
		rctx, cancel = context.WithDeadline(base, dl)
	} else {
		rctx, cancel = context.WithCancel(base)
	}
	run := &scanRun{cancel: cancel, out: make([]chan scanOutcome, len(s.list))}
	c := t.Facts.Conn
	req := &scanner.Request{
		Message:    t.Raw,
		ClientIP:   c.IP,
		ClientPort: c.Port,
		ClientName: c.PTR,
		HELO:       c.HELO,
		Sender:     t.Sender,
		Recipients: t.RcptAddrs(),
		AuthUser:   c.AuthUser,
		Hostname:   s.opt.Hostname,
		TLS:        c.TLS,
		QueueID:    t.QueueID,
	}
	for i, e := range s.list {
		ch := make(chan scanOutcome, 1)
		run.out[i] = ch
		if s.opt.Offline || (e.cfg.MaxSize > 0 && int64(len(t.Raw)) > e.cfg.MaxSize) {
			ch <- scanOutcome{skipped: true}
			continue
		}
		run.wg.Add(1)
		go func() {
			defer run.wg.Done()
			sctx, scancel := context.WithTimeout(rctx, e.cfg.Timeout)
			defer scancel()
			start := time.Now()
			var o scanOutcome
			func() {
				defer func() {
					if x := recover(); x != nil {
						o = scanOutcome{panic: x}
					}
				}()
				o.res, o.err = e.sc.Scan(sctx, req)
				if o.err == nil && o.res == nil {
					o.err = &scanner.Error{Scanner: e.cfg.Name, Kind: scanner.KindProtocol, Err: errors.New("no result")}
				}
			}()
			o.took = time.Since(start)
			ch <- o
		}()
	}
	return run
}

// wait returns the outcome of scan i. When ctx (the message's deadline)
// ends first, every scan is cancelled; one that does not return within
// stopGrace (a client that ignores its context) counts as a timeout.
func (r *scanRun) wait(ctx context.Context, i int, name string) scanOutcome {
	select {
	case o := <-r.out[i]:
		return o
	case <-ctx.Done():
	}
	r.cancel()
	timeout := scanOutcome{err: &scanner.Error{Scanner: name, Kind: scanner.KindTimeout, Err: ctx.Err()}}
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case o := <-r.out[i]:
		if o.err != nil {
			return timeout // cancelled by the message's deadline
		}
		return o
	case <-t.C:
		return timeout
	}
}

// Replies of the scanners.
var (
	// replyScannerFailed: a scanner with on_error tempfail could not
	// answer (RFC 3463 §3.8: X.7.0, other security status).
	replyScannerFailed = reply.New(451, 7, 0, "Message could not be scanned, please try again later")
	// replyVirus: malware found (RFC 3463 §3.8: X.7.1, delivery not authorized).
	replyVirus         = reply.New(554, 7, 1, "Message refused: it contains malware")
	replyMilterReject  = reply.New(550, 7, 1, "Message refused by content filter")
	replyMilterTempful = reply.New(451, 7, 1, "Message deferred by content filter, please try again later")
)

// join waits for the scans of t (under ctx, the check's deadline), sets
// the facts, and returns the refusal of a scanner that failed with
// on_error tempfail or of a milter that rejected or tempfailed.
func (s *Scanners) join(ctx context.Context, t *Txn) error {
	run := t.scans
	if run == nil {
		return nil
	}
	facts := make(map[string]ScannerFacts, len(s.list))
	virus := &VirusFacts{Policy: s.opt.VirusAction}
	// The first refusal counts, but a permanent one (a milter's reject)
	// wins over a temporary one: the client need not come back for it.
	var refusal *reply.Reply
	refuse := func(name string, r *reply.Reply, fields ...zap.Field) {
		if refusal == nil || (refusal.Temporary() && r.Permanent()) {
			refusal = r
			t.Refusal = Refusal{Check: "scanner:" + name, Rule: "scanner:" + name, Fields: fields}
		}
	}
	var changes []scanner.HeaderChange
	var body []byte
	var bodyFrom string
	for i, e := range s.list {
		name := e.cfg.Name
		o := run.wait(ctx, i, name)
		if o.skipped {
			facts[name] = ScannerFacts{Skipped: true}
			s.verdict(name, "skipped")
			continue
		}
		if s.opt.Observe != nil && o.took > 0 { // 0: cut by the message's deadline, still running
			s.opt.Observe(name, o.took)
		}
		if o.panic != nil {
			t.log.Error("scanner panicked", zap.String("scanner", name), zap.Any("panic", o.panic))
			s.failed(e, "panic", fmt.Errorf("panic: %v", o.panic))
			facts[name] = ScannerFacts{Error: "panic"}
			refuse(name, reply.TempLocal.With(fmt.Errorf("scanner %s panicked: %v", name, o.panic)))
			continue
		}
		if o.err != nil {
			kind := string(scanner.KindOf(o.err))
			s.failed(e, kind, o.err)
			facts[name] = ScannerFacts{Error: kind}
			if e.cfg.OnError != scanner.OnErrorAccept {
				refuse(name, replyScannerFailed.With(o.err), zap.String("scanner", name), zap.String("kind", kind))
			}
			continue
		}
		s.answered(e)
		r := o.res
		syms := append([]string(nil), r.Symbols...)
		if len(syms) > scanner.MaxSymbols {
			syms = syms[:scanner.MaxSymbols]
		}
		sort.Strings(syms)
		facts[name] = ScannerFacts{Score: r.Score, Threshold: r.Threshold, Action: strings.ToLower(r.Action), Symbols: syms, OK: true}
		s.verdict(name, verdictOf(e.cfg.Type, r))
		if r.Virus {
			if !virus.Found {
				virus.Found, virus.Scanner = true, name
			}
			for _, n := range r.VirusNames {
				if len(virus.Names) < maxVirusNames {
					virus.Names = append(virus.Names, n)
				}
			}
			t.log.Info("scanner found malware", zap.String("scanner", name), zap.Strings("names", r.VirusNames), zap.String("sender", t.Sender))
		}
		if e.cfg.Type == scanner.TypeMilter {
			switch strings.ToLower(r.Action) {
			case "reject":
				rp := replyMilterReject
				if r.Reply != nil && r.Reply.Permanent() && r.Reply.Validate() == nil {
					rp = r.Reply
				}
				t.log.Info("milter rejects the message", zap.String("scanner", name), zap.String("reply", rp.Error()))
				refuse(name, rp, zap.String("scanner", name), zap.String("action", "reject"))
			case "tempfail":
				rp := replyMilterTempful
				if r.Reply != nil && r.Reply.Temporary() && r.Reply.Validate() == nil {
					rp = r.Reply
				}
				t.log.Info("milter tempfails the message", zap.String("scanner", name), zap.String("reply", rp.Error()))
				refuse(name, rp, zap.String("scanner", name), zap.String("action", "tempfail"))
			case "discard":
				t.log.Info("milter discards the message", zap.String("scanner", name))
				t.Discard = true
			case "quarantine":
				t.log.Info("milter quarantines the message", zap.String("scanner", name))
				if t.Quarantine == "" {
					t.Quarantine = "scanner:" + name
				}
			}
			changes = append(changes, r.Changes...)
			if r.Body != nil {
				if body == nil {
					body, bodyFrom = r.Body, name
				} else {
					// The milters saw the same message in parallel, so
					// two replacements cannot both apply: the first in
					// scanners: order wins.
					t.log.Warn("milter body replacement ignored: an earlier milter replaced the body", zap.String("scanner", name), zap.String("applied", bodyFrom))
				}
			}
		}
	}
	t.Facts.SetGroup(GroupScanner, facts)
	t.Facts.SetGroup(GroupVirus, virus)
	t.scanVirus, t.scanChanges, t.scanBody, t.scanBodyFrom = virus, changes, body, bodyFrom
	if refusal != nil && refusal.Temporary() && virus.Found && s.opt.VirusAction == VirusReject {
		// Another scanner failed, but the malware is known: refused now,
		// not deferred to be found again on the retry.
		return s.refuseVirus(t, virus)
	}
	if refusal == nil {
		return nil // not a typed nil in the error
	}
	return refusal
}

// maxVirusNames bounds virus.names.
const maxVirusNames = 64

// refuseVirus is the virus policy's refusal.
func (s *Scanners) refuseVirus(t *Txn, v *VirusFacts) error {
	t.log.Info("virus_action rejects the message", zap.String("scanner", v.Scanner), zap.Strings("names", v.Names))
	t.Refusal = Refusal{Check: "scanner:" + v.Scanner, Rule: "scanner:virus",
		Fields: []zap.Field{zap.String("scanner", v.Scanner), zap.Strings("virus", v.Names)}}
	return replyVirus
}

// after applies what the scanners ask once the data-stage rules have let
// the message through (err nil): a virus is refused or quarantined
// (virus_action) unless a rule already quarantined or discarded it, and
// a milter's header changes are made to the message that is spooled.
func (s *Scanners) after(t *Txn) error {
	if v := t.scanVirus; v != nil && v.Found && !t.Discard && t.Quarantine == "" {
		if s.opt.VirusAction == VirusQuarantine {
			t.Quarantine = "scanner:virus"
			t.log.Info("virus_action quarantines the message", zap.String("scanner", v.Scanner), zap.Strings("names", v.Names))
		} else {
			return s.refuseVirus(t, v)
		}
	}
	if len(t.scanChanges) > 0 {
		t.Raw = ApplyHeaderChanges(t.Raw, t.scanChanges)
	}
	if t.scanBody != nil {
		head, _ := splitHeader(t.Raw)
		size := int64(len(head)) + 2 + int64(len(t.scanBody))
		if max := s.opt.MaxMessageSize; max > 0 && size > max {
			// A milter must not grow a message past what moat accepts
			// from a client (smtp.max_message_size): the body stays.
			t.log.Warn("milter body replacement ignored: larger than smtp.max_message_size",
				zap.String("scanner", t.scanBodyFrom), zap.Int64("size", size), zap.Int64("max", max))
		} else {
			t.Raw = ReplaceBody(t.Raw, t.scanBody)
			t.log.Info("milter replaced the body", zap.String("scanner", t.scanBodyFrom), zap.Int("body_size", len(t.scanBody)))
		}
	}
	return nil
}

// verdictOf is the bounded label of an answer.
func verdictOf(typ string, r *scanner.Result) string {
	if r.Virus {
		return "infected"
	}
	a := strings.ToLower(r.Action)
	switch typ {
	case scanner.TypeMilter:
		switch a {
		case "reject", "tempfail", "discard", "quarantine":
			return a
		}
		return "clean"
	case scanner.TypeRspamd:
		switch a {
		case "no action", "":
			return "clean"
		case "reject", "greylist":
			return a
		case "soft reject":
			return "soft_reject"
		}
		return "spam"
	}
	if a == "spam" {
		return "spam"
	}
	return "clean"
}

func (s *Scanners) verdict(name, v string) {
	if s.opt.Verdict != nil {
		s.opt.Verdict(name, v)
	}
}

// failed records a failure: counted each time, logged when the scanner
// was answering until now.
func (s *Scanners) failed(e *scanEntry, kind string, err error) {
	if s.opt.Error != nil {
		s.opt.Error(e.cfg.Name, kind)
	}
	e.mu.Lock()
	was := e.failing
	e.failing, e.kind = true, kind
	e.mu.Unlock()
	if !was {
		s.log.Warn("scanner failing", zap.String("scanner", e.cfg.Name), zap.String("kind", kind),
			zap.String("on_error", e.cfg.OnError), zap.Error(err))
	}
}

// answered records an answer: logged when the scanner was failing.
func (s *Scanners) answered(e *scanEntry) {
	e.mu.Lock()
	was, kind := e.failing, e.kind
	e.failing, e.kind = false, ""
	e.mu.Unlock()
	if was {
		s.log.Info("scanner answering again", zap.String("scanner", e.cfg.Name), zap.String("was", kind))
	}
}

// Run pings the required scanners every PingInterval until ctx ends, for
// Ready; a failure or recovery is logged once per change, as for scans.
func (s *Scanners) Run(ctx context.Context) {
	if s == nil {
		return
	}
	tick := time.NewTicker(s.opt.PingInterval)
	defer tick.Stop()
	for {
		s.pingAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pingAll pings every required scanner in parallel, each under its
// timeout.
func (s *Scanners) pingAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, e := range s.list {
		if !e.cfg.Required {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
			defer cancel()
			var err error
			func() {
				defer func() {
					if x := recover(); x != nil {
						err = fmt.Errorf("ping panicked: %v", x)
					}
				}()
				err = e.sc.Ping(pctx)
			}()
			if ctx.Err() != nil {
				return // shutting down: not the scanner's fault
			}
			e.mu.Lock()
			e.pinged, e.pingErr = true, err
			e.mu.Unlock()
			if err != nil {
				s.failed(e, string(scanner.KindOf(err)), err)
			} else {
				s.answered(e)
			}
		}()
	}
	wg.Wait()
}

// Ready fails while a required scanner does not answer its pings (or has
// not been pinged yet): /readyz.
func (s *Scanners) Ready(context.Context) error {
	if s == nil {
		return nil
	}
	var errs []error
	for _, e := range s.list {
		if !e.cfg.Required {
			continue
		}
		e.mu.Lock()
		pinged, err := e.pinged, e.pingErr
		e.mu.Unlock()
		switch {
		case !pinged:
			errs = append(errs, fmt.Errorf("scanner %s: not checked yet", e.cfg.Name))
		case err != nil:
			errs = append(errs, fmt.Errorf("scanner %s: %v", e.cfg.Name, err))
		}
	}
	return errors.Join(errs...)
}

// scanStartCheck starts the scans right after the message check, so that
// they run while the other data checks do.
type scanStartCheck struct{ s *Scanners }

func (scanStartCheck) Name() string { return "scanners_start" }

// Timeout: the scans are bounded by their own timeouts (scanners[].timeout),
// not by the authentication checks' (auth.timeout).
func (c scanStartCheck) Timeout() time.Duration { return c.s.bound }

func (c scanStartCheck) CheckData(ctx context.Context, t *Txn) error {
	t.scans = c.s.start(ctx, t)
	return nil
}

// scanJoinCheck joins the scans, last of the data checks.
type scanJoinCheck struct{ s *Scanners }

func (scanJoinCheck) Name() string { return "scanners" }

// Timeout: the join waits for the longest scanner timeout.
func (c scanJoinCheck) Timeout() time.Duration { return c.s.bound }

func (c scanJoinCheck) CheckData(ctx context.Context, t *Txn) error { return c.s.join(ctx, t) }

// endScans ends the scans of the data stage whatever happened, and
// forgets their findings.
func (t *Txn) endScans() {
	if t.scans != nil && !t.scans.stop() {
		t.rawInUse = true
	}
	t.scans, t.scanVirus, t.scanChanges, t.scanBody, t.scanBodyFrom = nil, nil, nil, nil, ""
}

var (
	_ DataChecker = scanStartCheck{}
	_ DataChecker = scanJoinCheck{}
)
