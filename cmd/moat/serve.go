package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"moat/gateway"
	"moat/gateway/guard"
	"moat/internal/dnsres"
	"moat/mailbox"
	"moat/policy/dkimsign"
	"moat/relay/queue"
	"moat/relay/route"
	"moat/relay/smtpout"
	"moat/relay/spool"
	"moat/relay/transport"
	"moat/rules"
)

func serveCommand() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway (with no --config: the safe built-in default on 127.0.0.1:2525)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path)
			if err != nil {
				for _, l := range errorLines(err) {
					fmt.Fprintln(cmd.ErrOrStderr(), l)
				}
				return exitError{1}
			}
			log, err := newLogger(cfg.Log)
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
	cfg        *Config
	log        *zap.Logger
	resolver   *dnsres.Client
	spool      *spool.Spool
	quarantine *spool.Spool
	queue      *queue.Manager
	gw         *gateway.Server
	guard      *guard.Guard
	rules      *rules.Engine
	certs      *gateway.Certificates

	queueCtx    context.Context
	queueCancel context.CancelFunc
	queueDone   chan struct{}
}

func newLogger(c LogConfig) (*zap.Logger, error) {
	zc := zap.NewProductionConfig()
	if c.Format == "console" {
		zc = zap.NewDevelopmentConfig()
		zc.Development = false
		zc.DisableStacktrace = true
		zc.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
	}
	lvl, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, err
	}
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.Sampling = nil
	return zc.Build()
}

// state builds the reloadable part of the gateway from a config.
func buildState(cfg *Config) (*gateway.State, error) {
	dir, err := mailbox.New(cfg.Mailboxes, cfg.Domains.Local)
	if err != nil {
		return nil, err
	}
	trusted, err := gateway.ParsePrefixes("trusted_networks", cfg.TrustedNetworks)
	if err != nil {
		return nil, err
	}
	return &gateway.State{
		Router:          route.NewRouter(cfg.routeConfig()),
		Directory:       dir,
		TrustedNetworks: trusted,
	}, nil
}

func newApp(cfg *Config, log *zap.Logger) (*app, error) {
	a := &app{cfg: cfg, log: log}
	var err error
	if a.resolver, err = dnsres.New(cfg.DNS); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	if a.spool, err = spool.Open(filepath.Join(cfg.DataDir, "spool"), spool.Options{}); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	st, err := buildState(cfg)
	if err != nil {
		a.spool.Close()
		return nil, err
	}
	if a.quarantine, err = spool.Open(filepath.Join(cfg.DataDir, "quarantine"), spool.Options{}); err != nil {
		a.close()
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	var tlsConf *tls.Config
	if cfg.TLS.Configured() {
		if a.certs, err = gateway.LoadCertificates(cfg.TLS); err != nil {
			a.close()
			return nil, err
		}
		tlsConf = a.certs.ServerConfig()
	}
	checks, err := a.buildChecks()
	if err != nil {
		a.close()
		return nil, err
	}
	if a.guard, err = guard.New(guardConfig(cfg), guard.Options{
		Hostname: cfg.Hostname,
		Resolver: a.resolver,
		Logger:   log.Named("guard"),
	}); err != nil {
		a.close()
		return nil, err
	}
	dir := st.Directory.(*mailbox.Directory)
	qopt := queue.Options{
		Hostname: cfg.Hostname,
		Logger:   log.Named("queue"),
		// Bounces go where mail to their recipient would go.
		RouteFor: func(rcpt string) (string, bool) { return st.Router.Route(rcpt).Route, true },
	}
	cfg.Queue.Apply(&qopt)
	a.queue = queue.New(a.spool, a.transports(dir), qopt)
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
			return a.guard.Listen(l, guard.ListenerOptions{
				Name:          c.Name,
				GreetDelay:    c.GreetDelay,
				ProxyProtocol: c.ProxyProtocol,
				ImplicitTLS:   c.TLS == "implicit",
			})
		},
	})
	if err != nil {
		a.close()
		return nil, err
	}
	return a, nil
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
	cfg := a.cfg
	set, err := rules.Load(cfg.Rules, cfg.ruleLoadOptions())
	if err != nil {
		return nil, err
	}
	a.rules = rules.NewEngine(set, rules.EngineOptions{})
	c := &gateway.Checks{
		Rules:      a.rules,
		AuthservID: cfg.Auth.AuthservID,
		Timeout:    cfg.Auth.Timeout,
		Quarantine: a.quarantine,
	}
	if cfg.Auth.Enabled {
		c.Resolver = a.resolver
	}
	if len(cfg.DKIM.Sign) > 0 {
		if c.Signer, err = dkimsign.NewSigner(cfg.DKIM.Sign); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// transports maps route names to how mail on that route is handed on.
func (a *app) transports(dir *mailbox.Directory) func(string) (transport.Transport, bool) {
	local := transport.Func(func(ctx context.Context, msg *transport.Message, rcpts []string) []transport.Result {
		out := make([]transport.Result, len(rcpts))
		for i, r := range rcpts {
			out[i] = transport.Result{Recipient: r, Err: deliverLocal(ctx, dir, msg, r)}
		}
		return out
	})
	byName := map[string]transport.Transport{"local": local}
	for name, rt := range a.cfg.Routes {
		byName[name] = smtpout.ForRoute(rt, smtpout.Options{Hostname: a.cfg.Hostname, Resolver: a.resolver})
	}
	if _, ok := byName["mx"]; !ok {
		byName["mx"] = smtpout.NewMX(smtpout.Options{Hostname: a.cfg.Hostname, Resolver: a.resolver})
	}
	return func(name string) (transport.Transport, bool) {
		t, ok := byName[name]
		return t, ok
	}
}

func deliverLocal(ctx context.Context, dir *mailbox.Directory, msg *transport.Message, rcpt string) error {
	r, err := msg.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	return dir.Deliver(ctx, rcpt, r)
}

func (a *app) start() error {
	a.queueCtx, a.queueCancel = context.WithCancel(context.Background())
	a.queueDone = make(chan struct{})
	go func() {
		defer close(a.queueDone)
		if err := a.queue.Run(a.queueCtx); err != nil {
			a.log.Error("queue manager stopped", zap.Error(err))
		}
	}()
	if err := a.gw.Start(); err != nil {
		return err
	}
	go func() {
		// Rule files are also reloaded when they change on disk.
		err := rules.Watch(a.queueCtx, a.cfg.Rules, a.rules, rules.WatchOptions{Load: a.cfg.ruleLoadOptions()}, func(err error) {
			a.log.Error("rules reload refused; the old rules stay", zap.Strings("errors", errorLines(err)))
		})
		if err != nil && a.queueCtx.Err() == nil {
			a.log.Warn("rule files are not watched; reload with SIGHUP", zap.Error(err))
		}
	}()
	a.log.Info("moat started", zap.String("hostname", a.cfg.Hostname), zap.String("data_dir", a.cfg.DataDir))
	return nil
}

// reload re-reads the configuration on SIGHUP; a broken file changes
// nothing.
func (a *app) reload(path string) {
	cfg, err := loadConfig(path)
	if err != nil {
		a.log.Error("reload refused: configuration has errors; the running one stays", zap.Strings("errors", errorLines(err)))
		return
	}
	st, err := buildState(cfg)
	if err != nil {
		a.log.Error("reload refused", zap.Error(err))
		return
	}
	a.gw.Update(st)
	if err := rules.Reload(cfg.Rules, cfg.ruleLoadOptions(), a.rules); err != nil {
		a.log.Error("rules reload refused; the old rules stay", zap.Strings("errors", errorLines(err)))
	}
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

// shutdown stops accepting, lets sessions finish within ctx, then lets
// in-flight deliveries finish.
func (a *app) shutdown(ctx context.Context) {
	if err := a.gw.Shutdown(ctx); err != nil {
		a.log.Warn("sessions cut at shutdown deadline", zap.Error(err))
	}
	a.queueCancel()
	select {
	case <-a.queueDone:
	case <-time.After(30 * time.Second):
		a.log.Warn("queue manager did not stop in time")
	}
	a.close()
}

func (a *app) close() {
	if a.spool != nil {
		a.spool.Close()
	}
	if a.quarantine != nil {
		a.quarantine.Close()
	}
}

var _ io.Closer = (*spool.Spool)(nil)
