package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"moat/gateway"
	"moat/gateway/guard"
	"moat/internal/dnsres"
	"moat/internal/maillog"
	"moat/mailbox"
	"moat/ops/admin"
	"moat/ops/metrics"
	"moat/policy/authlimit"
	"moat/policy/cluster"
	"moat/policy/dkimsign"
	"moat/relay/quarantine"
	"moat/relay/queue"
	"moat/relay/route"
	"moat/relay/smtpout"
	"moat/relay/spool"
	"moat/relay/transport"
	"moat/relay/verify"
	"moat/rules"
)

func serveCommand() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway (with no --config: the safe built-in default on 127.0.0.1:2525)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadChecked(path)
			if err != nil {
				for _, l := range errorLines(err) {
					fmt.Fprintln(cmd.ErrOrStderr(), l)
				}
				return exitError{1}
			}
			log, err := newLogger(cfg.Log, os.Stderr)
			if err != nil {
				return err
			}
			defer log.Sync()
			return run(cfg, path, log)
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "configuration file (YAML)")
	return cmd
}

// run starts the app and serves until SIGTERM or SIGINT.
func run(cfg *Config, path string, log *zap.Logger) error {
	a, err := newApp(cfg, log)
	if err != nil {
		return err
	}
	if err := a.start(); err != nil {
		a.close()
		return err
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	for s := range sig {
		if s == syscall.SIGHUP {
			a.reload(path)
			continue
		}
		log.Info("shutting down", zap.String("signal", s.String()))
		break
	}
	signal.Stop(sig)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.SMTP.ShutdownTimeout)
	defer cancel()
	a.shutdown(ctx)
	return nil
}

// app is the running gateway: every part, wired.
type app struct {
	// cfg is the one holder of the configuration in force: the SIGHUP
	// reload stores it, and the rule-file watcher, /readyz and the
	// session's state are built from or read what it holds. Keys that
	// only a restart applies keep their boot values in it (inForce), so
	// that what it says is what runs.
	cfg  atomic.Pointer[Config]
	boot *Config // at start: what needs a restart is compared to it
	// reloadMu makes reloads one at a time (SIGHUP, tests).
	reloadMu sync.Mutex
	// watch is the rule-file watcher of the configuration in force;
	// guarded by reloadMu after start.
	watch       *ruleWatch
	log         *zap.Logger
	resolver    *dnsres.Client
	content     *contentChecks // the content fact groups' resources
	learn       *learnOps      // learning from operations; nil: classifier off
	spool       *spool.Spool
	quarantine  *spool.Spool
	queue       *queue.Manager
	gw          *gateway.Server
	guard       *guard.Guard
	rules       *rules.Engine
	verifier    *verify.Verifier
	routing     atomic.Pointer[routing]
	certs       *gateway.Certificates
	certx       certServices // ACME and the MTA-STS listener (certs.go)
	metrics     *metrics.Metrics
	admin       *admin.Server
	scanners    *gateway.Scanners // nil: none configured
	scanDone    chan struct{}     // closed when the scanners' ping loop ends
	cluster     *cluster.Client
	reports     *reportOps   // DMARC and TLS reports; nil: off
	outTLS      *outboundTLS // outtls.go
	mailLog     *maillog.Logger
	mailLogFile *os.File

	queueCtx    context.Context
	queueCancel context.CancelFunc
	queueDone   chan struct{}
}

// newLogger builds the program log on out (standard error), as JSON or
// for the console. Entries are buffered and written at least every
// logFlushInterval, at once from level warn up, and at exit: a line per
// event written straight away cost a write(2) each, about two per
// message. A crash (kill -9) loses at most the info lines of the last
// interval; the mail and its state are in the spool, not in the log.
func newLogger(c LogConfig, out zapcore.WriteSyncer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, err
	}
	ec := zap.NewProductionEncoderConfig()
	enc := zapcore.NewJSONEncoder(ec)
	out = zapcore.Lock(out)
	// No caller annotation: finding it costs a stack walk per line, and
	// the messages name what happened.
	opts := []zap.Option{zap.ErrorOutput(out)}
	if c.Format == "console" {
		ec = zap.NewDevelopmentEncoderConfig()
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		opts = append(opts, zap.AddStacktrace(zapcore.ErrorLevel))
	}
	ws := &zapcore.BufferedWriteSyncer{WS: out, Size: 64 << 10, FlushInterval: logFlushInterval}
	core := flushFrom{Core: zapcore.NewCore(enc, ws, lvl), ws: ws, level: zapcore.WarnLevel}
	return zap.New(core, opts...), nil
}

const logFlushInterval = time.Second

// flushFrom is a core that flushes its buffered output after every entry
// at level or above.
type flushFrom struct {
	zapcore.Core
	ws    zapcore.WriteSyncer
	level zapcore.Level
}

func (f flushFrom) With(fields []zapcore.Field) zapcore.Core {
	return flushFrom{Core: f.Core.With(fields), ws: f.ws, level: f.level}
}

func (f flushFrom) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if f.Enabled(e.Level) {
		return ce.AddCore(e, f)
	}
	return ce
}

func (f flushFrom) Write(e zapcore.Entry, fields []zapcore.Field) error {
	err := f.Core.Write(e, fields)
	if e.Level >= f.level {
		if serr := f.ws.Sync(); err == nil {
			err = serr
		}
	}
	return err
}

// buildState builds the reloadable part of the gateway from a config.
// The verifier is given separately: it holds connections and caches that
// a reload keeps unless the routes changed.
func buildState(cfg *Config, v *verify.Verifier) (*gateway.State, error) {
	dir, err := mailbox.New(cfg.Mailboxes, cfg.Domains.Local)
	if err != nil {
		return nil, err
	}
	trusted, err := gateway.ParsePrefixes("trusted_networks", cfg.TrustedNetworks)
	if err != nil {
		return nil, err
	}
	rc := cfg.routeConfig()
	st := &gateway.State{
		Router:          route.NewRouter(rc),
		Directory:       dir,
		TrustedNetworks: trusted,
		Users:           dir,
		Postmaster:      gateway.DefaultPostmaster(rc),
	}
	if v != nil {
		st.Verifier = v
	}
	return st, nil
}

// newVerifier builds recipient verification for the routes that ask for
// it; in a fleet its answers are shared through Redis.
func (a *app) newVerifier(cfg *Config) (*verify.Verifier, error) {
	opt := verify.Options{Hostname: cfg.Hostname, Logger: a.log.Named("verify"), Resolver: a.resolver}
	if a.cluster != nil {
		c, err := a.cluster.Cache("callahead", cfg.Verify.CacheSize)
		if err != nil {
			return nil, err
		}
		opt.Shared = c
	}
	return verify.New(cfg.Verify, cfg.Routes, opt)
}

func newApp(cfg *Config, log *zap.Logger) (*app, error) {
	a := &app{boot: cfg, log: log, metrics: metrics.New()}
	a.cfg.Store(cfg)
	for _, w := range cfg.Warnings() {
		log.Warn("configuration", zap.String("warning", w))
	}
	if err := a.build(); err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

// build constructs every part in dependency order; on error the caller
// closes what was built.
func (a *app) build() error {
	cfg, log, m := a.cfg.Load(), a.log, a.metrics
	var err error
	dnsCfg := cfg.DNS
	dnsCfg.Observe = m.DNSObserve
	if a.resolver, err = dnsres.New(dnsCfg); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	if a.mailLog, a.mailLogFile, err = openMailLog(cfg.Log.MailLog); err != nil {
		return err
	}
	if a.spool, err = spool.Open(filepath.Join(cfg.DataDir, "spool"), spool.Options{}); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if a.quarantine, err = spool.Open(quarantine.Dir(cfg.DataDir), spool.Options{}); err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	if cfg.Cluster.Enabled() {
		if a.cluster, err = cluster.New(cfg.Cluster, cluster.Options{
			Logger:        log.Named("cluster"),
			OnStateChange: m.RedisState,
		}); err != nil {
			return err
		}
		m.RedisEnabled()
	}
	if a.verifier, err = a.newVerifier(cfg); err != nil {
		return err
	}
	if a.outTLS, err = a.newOutboundTLS(cfg); err != nil {
		return err
	}
	st, err := buildState(cfg, a.verifier)
	if err != nil {
		return err
	}
	tlsConf, err := a.buildCerts(cfg)
	if err != nil {
		return err
	}
	if a.content, err = newContentChecks(cfg, a.resolver, false); err != nil {
		return err
	}
	if a.learn, err = newLearnOps(cfg, a.content.opt.Bayes, m.Registry(), log.Named("learn")); err != nil {
		return err
	}
	if a.scanners, err = newScanners(cfg, m, log.Named("scanners")); err != nil {
		return err
	}
	a.reports = newReportOps(cfg)
	checks, err := a.buildChecks()
	if err != nil {
		return err
	}
	gopt := guard.Options{
		Hostname: cfg.Hostname,
		Resolver: a.resolver,
		Logger:   log.Named("guard"),
		OnReject: a.guardRejected,
		// Metrics: the stress-mode gauge, DNS list errors by zone.
		OnStress:     m.Stress,
		OnDNSBLError: m.DNSBLError,
	}
	if a.cluster != nil {
		gopt.Shared = a.cluster.GuardState()
	}
	if a.guard, err = guard.New(guardConfig(cfg), gopt); err != nil {
		return err
	}
	a.routing.Store(a.newRouting(cfg, st))
	qopt := queue.Options{
		Hostname: cfg.Hostname,
		Logger:   log.Named("queue"),
		MailLog:  a.mailLog,
		// Bounces go where mail to their recipient would go.
		RouteFor:   func(rcpt string) (string, bool) { return a.routing.Load().router.Route(rcpt).Route, true },
		Suppressed: m.BounceSuppressed,
	}
	cfg.Queue.Apply(&qopt)
	a.queue = queue.New(a.spool, a.transport, qopt)
	a.reports.wire(a, cfg, checks.Signer)
	m.QueueStats(a.queue.Stats)
	m.SpoolBytes(metrics.SpoolDirBytes(filepath.Join(cfg.DataDir, "spool"), 30*time.Second))
	m.SpoolFilesystem(filepath.Join(cfg.DataDir, "spool"))
	a.gw, err = gateway.New(gateway.Options{
		Hostname:  cfg.Hostname,
		Listeners: cfg.Listeners,
		SMTP:      cfg.SMTP,
		TLS:       tlsConf,
		State:     st,
		Spool:     a.spool,
		Notify:    a.queue.Notify,
		Checks:    checks,
		Logger:    log.Named("smtp"),
		Wrap: func(l net.Listener, c gateway.Listener) net.Listener {
			return m.WrapListener(c.Name, a.guard.Listen(l, c.GuardOptions(tlsConf)))
		},
		OnTimeout: m.SMTPTimeout,
	})
	if err != nil {
		return err
	}
	if cfg.Admin.Address != "" {
		token := ""
		if cfg.Admin.TokenFile != "" {
			if token, err = readToken(cfg.Admin.TokenFile); err != nil {
				return err
			}
		}
		q := quarantine.New(a.quarantine, a.spool, a.queue.Notify)
		if fn := a.learn.released(); fn != nil {
			q.OnRelease(fn, cfg.SMTP.MaxMessageSize)
		}
		if a.admin, err = admin.New(admin.Options{
			Address:     cfg.Admin.Address,
			Token:       token,
			OpenMetrics: cfg.Admin.OpenMetrics,
			Metrics:     m,
			Queue:       admin.QueueOf(a.spool, a.queue),
			Quarantine:  q,
			Ready:       a.readyChecks(),
			Logger:      log.Named("admin"),
			Version:     version,
			Started:     time.Now(),
			Listeners:   statusListeners(cfg.Listeners),
		}); err != nil {
			return err
		}
	}
	return nil
}

// openMailLog opens the mail log: a file (appended), "-" for standard
// error, "" for none.
func openMailLog(path string) (*maillog.Logger, *os.File, error) {
	switch path {
	case "":
		return maillog.Nop(), nil, nil
	case "-":
		return maillog.New(os.Stderr), nil, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("log.mail_log: %w", err)
	}
	return maillog.New(f), f, nil
}

// guardRejected counts a connection the guard refused and logs it in the
// mail log, where fail2ban reads it.
func (a *app) guardRejected(r guard.Rejection) {
	a.metrics.GuardReject(r)
	a.mailLog.Log(maillog.Event{Kind: maillog.Rejected, Client: r.Client.Addr().String(), Verdict: "guard:" + r.Reason, Reply: r.Detail})
}

// readyChecks are /readyz: the spool takes a write, the resolver answers
// (any answer; only a failure to reach a server counts), the listeners
// are up.
func (a *app) readyChecks() func(context.Context) error {
	return admin.Checks(
		admin.Check{Name: "spool", Fn: func(context.Context) error {
			// The spool stays where it was opened until a restart.
			f, err := os.CreateTemp(filepath.Join(a.boot.DataDir, "spool", "tmp"), "readyz-*")
			if err != nil {
				return err
			}
			name := f.Name()
			_, err = f.Write([]byte("ok"))
			f.Close()
			os.Remove(name)
			return err
		}},
		admin.Check{Name: "resolver", Fn: func(ctx context.Context) error {
			_, err := a.resolver.LookupTXT(ctx, a.cfg.Load().Hostname)
			if err != nil && !dnsres.IsNotFound(err) {
				return err
			}
			return nil
		}},
		// Required scanners answer their pings (scanners[].required).
		admin.Check{Name: "scanners", Fn: a.scanners.Ready},
		admin.Check{Name: "listeners", Fn: func(context.Context) error {
			for _, l := range a.cfg.Load().Listeners {
				if a.gw.Addr(l.Name) == nil {
					return fmt.Errorf("listener %s is not up", l.Name)
				}
			}
			return nil
		}},
	)
}

// guardConfig is the guard section with trusted_networks added to its
// allow list: our own networks are never rate-limited or DNSBL-checked.
func guardConfig(cfg *Config) guard.Config {
	g := cfg.Guard
	g.Allow = append(append([]string(nil), g.Allow...), cfg.TrustedNetworks...)
	return g
}

// buildChecks loads the rules and DKIM keys and assembles the checks.
func (a *app) buildChecks() (*gateway.Checks, error) {
	cfg := a.cfg.Load()
	set, err := rules.Load(cfg.Rules, cfg.ruleLoadOptions(a.content))
	if err != nil {
		return nil, err
	}
	eopt := rules.EngineOptions{Observer: a.metrics.RuleObserver()}
	if a.cluster != nil {
		eopt.Limiter = a.cluster.Limiter()
		eopt.Greylister = a.cluster.Greylister()
	}
	a.rules = rules.NewEngine(set, eopt)
	m := a.metrics
	c := &gateway.Checks{
		Rules:       a.rules,
		AuthservID:  cfg.Auth.AuthservID,
		Timeout:     cfg.Auth.Timeout,
		Quarantine:  a.quarantine,
		Observe:     m.Check,
		Verdict:     m.VerdictFrom,
		RuleHits:    m.RuleHits,
		TLS:         m.TLS,
		AuthFailure: m.AuthFailure,
		Refusal:     m.Refusal,
		Smuggling:   m.Smuggling,
		Forwarding:  m.Forwarding,
		ARCResult:   m.ARCResult,
		Reencoded:   m.Reencoded,
		MailLog:     a.mailLog,
		Extra:       pipelineChecks(cfg, a.learn.queue()),
		AfterData:   chainAfterData(a.learn.afterData(), a.reports.afterData()),
		Scanners:    a.scanners,
	}
	if cfg.Auth.Enabled {
		c.Resolver = a.resolver
	}
	var lopt authlimit.Options
	if a.cluster != nil {
		lopt.Shared = a.cluster.AuthFailures() // failed AUTH counted by the fleet
	}
	if c.AuthLimits, err = authlimit.New(cfg.Submission.Config, lopt); err != nil {
		return nil, err
	}
	if len(cfg.DKIM.Sign) > 0 {
		if c.Signer, err = dkimsign.NewSigner(cfg.DKIM.Sign); err != nil {
			return nil, err
		}
	}
	if err := setForwarding(cfg, c); err != nil {
		return nil, err
	}
	return c, nil
}

// routing is what the queue needs to hand mail on; a reload swaps it
// whole.
type routing struct {
	router     *route.Router
	dir        *mailbox.Directory
	transports map[string]transport.Transport // wrapped for metrics
	raw        map[string]transport.Transport // the transports themselves
}

// newRouting builds the transports of every route: local Maildir
// delivery, each configured route, and MX delivery.
// smtpOptions are the options of the outbound SMTP client of route name:
// timeouts, metrics, outbound TLS policy (MTA-STS, DANE, tls_policy) and
// the TLS-RPT store each session's TLS result goes to.
func (a *app) smtpOptions(cfg *Config, name string) smtpout.Options {
	o := smtpout.Options{Hostname: cfg.Hostname, Resolver: a.resolver, Timeouts: cfg.SMTPClient,
		Chained: func() { a.metrics.Chained(name) }, Reencoded: a.metrics.Reencoded,
		OutboundTLS: a.metrics.OutboundTLS, TLSResults: a.reports.tlsSink()}
	a.outTLS.apply(cfg, &o)
	return o
}

func (a *app) newRouting(cfg *Config, st *gateway.State) *routing {
	r := &routing{router: st.Router.(*route.Router), dir: st.Directory.(*mailbox.Directory)}
	dir := r.dir
	r.transports = map[string]transport.Transport{
		route.Local: transport.Func(func(ctx context.Context, msg *transport.Message, rcpts []string) []transport.Result {
			out := make([]transport.Result, len(rcpts))
			for i, rc := range rcpts {
				out[i] = transport.Result{Recipient: rc, Err: deliverLocal(ctx, dir, msg, rc)}
			}
			return out
		}),
	}
	opt := func(name string) smtpout.Options { return a.smtpOptions(cfg, name) }
	for name, rt := range cfg.Routes {
		r.transports[name] = smtpout.ForRoute(rt, opt(name))
	}
	if _, ok := r.transports[route.MX]; !ok {
		r.transports[route.MX] = smtpout.NewMX(opt(route.MX))
	}
	r.raw = r.transports
	r.transports = make(map[string]transport.Transport, len(r.raw))
	for name, t := range r.raw {
		r.transports[name] = a.metrics.WrapTransport(name, t)
	}
	return r
}

// close releases the pooled connections of the transports.
func (r *routing) close() {
	for _, t := range r.raw {
		if c, ok := t.(io.Closer); ok {
			c.Close()
		}
	}
}

func (a *app) transport(name string) (transport.Transport, bool) {
	t, ok := a.routing.Load().transports[name]
	return t, ok
}

// deliverLocal writes one message into a local mailbox (final
// delivery: the mailbox adds Return-Path).
func deliverLocal(ctx context.Context, dir *mailbox.Directory, msg *transport.Message, rcpt string) error {
	r, err := msg.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	// Junk goes to the user's junk folder (mailboxes.junk_folder).
	return dir.DeliverTo(ctx, mailbox.Delivery{Sender: msg.Sender, Mailbox: rcpt, Junk: msg.Junk}, r)
}

// bound holds every listener of the process, bound but not yet served.
type bound struct {
	smtp  []net.Listener // in the order of cfg.Listeners
	admin net.Listener   // nil: no admin listener
}

func (b *bound) close() {
	for _, ln := range b.smtp {
		ln.Close()
	}
	if b.admin != nil {
		b.admin.Close()
	}
}

// bindAll binds every listener, SMTP and admin, before any is served: a
// taken port stops the start with nothing served and nothing logged as
// listening. The error names the key (and, for admin, its environment
// variable).
func bindAll(cfg *Config, withAdmin bool) (*bound, error) {
	b := &bound{}
	// No TCP keepalive on SMTP sockets: every read has a deadline (RFC
	// 5321 §4.5.3.2), which ends the session of a vanished client.
	lc := net.ListenConfig{KeepAlive: -1}
	for i, l := range cfg.Listeners {
		ln, err := lc.Listen(context.Background(), "tcp", l.Address)
		if err != nil {
			b.close()
			return nil, fmt.Errorf("listeners[%d] (%s) address %q: %w", i, l.Name, l.Address, err)
		}
		b.smtp = append(b.smtp, ln)
	}
	if withAdmin {
		ln, err := net.Listen("tcp", cfg.Admin.Address)
		if err != nil {
			b.close()
			return nil, fmt.Errorf("admin.address (MOAT_ADMIN_ADDRESS) %q: %w", cfg.Admin.Address, err)
		}
		b.admin = ln
	}
	return b, nil
}

func (a *app) start() error {
	cfg := a.cfg.Load()
	b, err := bindAll(cfg, a.admin != nil)
	if err != nil {
		return err
	}
	// The ACME and MTA-STS listeners bind here too, before anything is served.
	if err := a.startCerts(cfg); err != nil {
		b.close()
		return err
	}
	a.queueCtx, a.queueCancel = context.WithCancel(context.Background())
	a.queueDone = make(chan struct{})
	go func() {
		defer close(a.queueDone)
		if err := a.queue.Run(a.queueCtx); err != nil {
			a.log.Error("queue manager stopped", zap.Error(err))
		}
	}()
	a.learn.start()
	a.reports.start()
	a.scanDone = make(chan struct{})
	go func() {
		defer close(a.scanDone)
		a.scanners.Run(a.queueCtx) // pings the required scanners until shutdown
	}()
	for i, l := range cfg.Listeners {
		a.gw.Serve(l, b.smtp[i])
	}
	if a.admin != nil {
		a.admin.Serve(b.admin)
	}
	a.reloadMu.Lock()
	a.watch = a.watchRules(cfg)
	a.reloadMu.Unlock()
	a.log.Info("moat started", zap.String("hostname", cfg.Hostname), zap.String("data_dir", cfg.DataDir))
	return nil
}

// ruleWatch reloads the rule files of one configuration when they change
// on disk. A configuration reload stops it and starts one for the new
// configuration, so that an edit after a SIGHUP loads the new paths,
// thresholds and lists, never the boot ones.
type ruleWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// watchRules starts the watcher of cfg's rule files; it ends with the
// queue context or stop.
func (a *app) watchRules(cfg *Config) *ruleWatch {
	ctx, cancel := context.WithCancel(a.queueCtx)
	w := &ruleWatch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		err := rules.Watch(ctx, cfg.Rules, a.rules, rules.WatchOptions{Load: cfg.ruleLoadOptions(a.content)}, func(err error) {
			a.log.Error("rules reload refused; the old rules stay", zap.Strings("errors", errorLines(err)))
		})
		if err != nil && ctx.Err() == nil {
			a.log.Warn("rule files are not watched; reload with SIGHUP", zap.Error(err))
		}
	}()
	return w
}

// stop ends the watcher and waits until it can no longer swap a rule
// set in.
func (w *ruleWatch) stop() {
	if w == nil {
		return
	}
	w.cancel()
	<-w.done
}

// reload re-reads the configuration on SIGHUP; a broken file changes
// nothing. Keys that only a restart applies are logged and keep their
// running values (inForce).
func (a *app) reload(path string) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	// The same checks as at start (and check-config): a file that would
	// not start is not reloaded either.
	loaded, err := loadChecked(path)
	if err != nil {
		a.log.Error("reload refused: configuration has errors; the running one stays", zap.Strings("errors", errorLines(err)))
		return
	}
	cur := a.cfg.Load()
	cfg, keys := inForce(a.boot, loaded)
	v := a.verifier
	if !reflect.DeepEqual(cfg.Routes, cur.Routes) || cfg.Verify != cur.Verify {
		if v, err = a.newVerifier(cfg); err != nil {
			a.log.Error("reload refused", zap.Error(err))
			return
		}
	} else if err := v.Reload(); err != nil {
		a.log.Error("recipient list reload failed; the old lists stay", zap.Error(err))
	}
	st, err := buildState(cfg, v)
	if err != nil {
		if v != a.verifier {
			v.Close()
		}
		a.log.Error("reload refused", zap.Error(err))
		return
	}
	if v != a.verifier {
		old := a.verifier
		a.verifier = v
		defer old.Close()
	}
	a.gw.Update(st)
	if old := a.routing.Swap(a.newRouting(cfg, st)); old != nil {
		old.close()
	}
	if len(keys) > 0 {
		a.log.Warn("these settings changed but take effect only after a restart", zap.Strings("keys", keys))
	}
	a.cfg.Store(cfg)
	// The old watcher goes first, so that it cannot swap in a set loaded
	// from the old paths after the new one.
	a.watch.stop()
	if err := rules.Reload(cfg.Rules, cfg.ruleLoadOptions(a.content), a.rules); err != nil {
		a.log.Error("rules reload refused; the old rules stay", zap.Strings("errors", errorLines(err)))
	}
	a.watch = a.watchRules(cfg)
	if err := a.guard.Reload(guardConfig(cfg)); err != nil {
		a.log.Error("guard reload refused; the old lists stay", zap.Error(err))
	}
	if a.certs != nil {
		if err := a.certs.Reload(); err != nil {
			a.log.Error("certificate reload failed; the old one stays", zap.Error(err))
		}
	}
	a.log.Info("configuration reloaded")
}

// inForce returns what a reload to cur puts in force: cur, except that
// the keys a reload cannot apply keep their values from boot (the parts
// built from them at start are not rebuilt); and the names of those keys
// that differ. Everything else is applied live: domains, routes,
// smtp_client, trusted_networks, mailboxes, guard, rules (but for the
// size of the in-memory greylist), verify, and the auth policy (the
// actions of auth.dmarc_reject and the others, which the rules apply).
func inForce(boot, cur *Config) (*Config, []string) {
	next := *cur
	var keys []string
	keep := func(key string, changed bool, restore func()) {
		if changed {
			keys = append(keys, key)
			restore()
		}
	}
	keep("hostname", boot.Hostname != cur.Hostname, func() { next.Hostname = boot.Hostname })
	keep("data_dir", boot.DataDir != cur.DataDir, func() { next.DataDir = boot.DataDir })
	keep("log", boot.Log != cur.Log, func() { next.Log = boot.Log })
	keep("tls (file names; the files themselves are reloaded)", !boot.TLS.Equal(cur.TLS), func() { next.TLS = boot.TLS })
	keep("acme", !reflect.DeepEqual(boot.ACME, cur.ACME), func() { next.ACME = boot.ACME })
	keep("mta_sts", !reflect.DeepEqual(boot.MTASTS, cur.MTASTS), func() { next.MTASTS = boot.MTASTS })
	keep("listeners", !reflect.DeepEqual(boot.Listeners, cur.Listeners), func() { next.Listeners = boot.Listeners })
	keep("smtp", boot.SMTP != cur.SMTP, func() { next.SMTP = boot.SMTP })
	keep("dns", !reflect.DeepEqual(boot.DNS, cur.DNS), func() { next.DNS = boot.DNS })
	keep("queue", boot.Queue != cur.Queue, func() { next.Queue = boot.Queue })
	keep("auth (enabled, authserv_id, timeout)",
		boot.Auth.Enabled != cur.Auth.Enabled || boot.Auth.AuthservID != cur.Auth.AuthservID || boot.Auth.Timeout != cur.Auth.Timeout,
		func() {
			next.Auth.Enabled, next.Auth.AuthservID, next.Auth.Timeout = boot.Auth.Enabled, boot.Auth.AuthservID, boot.Auth.Timeout
		})
	keep("dkim", !reflect.DeepEqual(boot.DKIM, cur.DKIM), func() { next.DKIM = boot.DKIM })
	keep("submission", boot.Submission != cur.Submission, func() { next.Submission = boot.Submission })
	// The Redis client (and the shared stores of guard, rules and verify
	// built on it) is made once.
	keep("cluster", !reflect.DeepEqual(boot.Cluster, cur.Cluster), func() { next.Cluster = boot.Cluster })
	// The in-memory greylist store is sized when the engine is made.
	keep("rules.greylist.max_entries", boot.Rules.Greylist.MaxEntries != cur.Rules.Greylist.MaxEntries,
		func() { next.Rules.Greylist.MaxEntries = boot.Rules.Greylist.MaxEntries })
	keep("admin", boot.Admin != cur.Admin, func() { next.Admin = boot.Admin })
	// The URI blocklist checker and the classifier's store are made once.
	keep("uribl", !reflect.DeepEqual(boot.URIBL, cur.URIBL), func() { next.URIBL = boot.URIBL })
	keep("bayes", !reflect.DeepEqual(boot.Bayes, cur.Bayes), func() { next.Bayes = boot.Bayes })
	// The scanner clients and the virus policy are made once.
	keep("scanners", !reflect.DeepEqual(boot.Scanners, cur.Scanners), func() { next.Scanners = boot.Scanners })
	keep("virus_action", boot.VirusAction != cur.VirusAction, func() { next.VirusAction = boot.VirusAction })
	// The report store and the daily job are made once.
	keep("reports", !reflect.DeepEqual(boot.Reports, cur.Reports), func() { next.Reports = boot.Reports })
	// The MTA-STS cache and the DANE resolver are made once (outtls.go).
	keep("dane", boot.DANE != cur.DANE, func() { next.DANE = boot.DANE })
	return &next, keys
}

// shutdown stops accepting, lets sessions finish within ctx, then lets
// in-flight deliveries finish.
func (a *app) shutdown(ctx context.Context) {
	if a.admin != nil {
		a.admin.Shutdown(ctx)
	}
	if err := a.gw.Shutdown(ctx); err != nil {
		a.log.Warn("sessions cut at shutdown deadline", zap.Error(err))
	}
	a.stopCerts(ctx)
	a.queueCancel()
	a.reports.stop()
	if a.scanDone != nil {
		<-a.scanDone
	}
	a.reloadMu.Lock()
	a.watch.stop()
	a.reloadMu.Unlock()
	select {
	case <-a.queueDone:
	case <-time.After(30 * time.Second):
		a.log.Warn("queue manager did not stop in time")
	}
	a.close()
}

func (a *app) close() {
	a.learn.close() // before the classifier's store
	if err := a.content.Close(); err != nil {
		a.log.Warn("closing the classifier store", zap.Error(err))
	}
	a.outTLS.close()
	if a.cluster != nil {
		a.cluster.Close()
	}
	if a.mailLogFile != nil {
		a.mailLogFile.Close()
	}
	if r := a.routing.Load(); r != nil {
		r.close()
	}
	if a.verifier != nil {
		a.verifier.Close()
	}
	if a.spool != nil {
		a.spool.Close()
	}
	if a.quarantine != nil {
		a.quarantine.Close()
	}
}

var _ io.Closer = (*spool.Spool)(nil)
