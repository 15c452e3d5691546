package gateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"moat/gateway/smtpd"
	"moat/relay/route"
	"moat/relay/spool"
)

// Spool is the durable queue that accepted mail is written into.
type Spool interface {
	NewID() string
	// Put returns nil only when the message and its envelope are durable.
	Put(ctx context.Context, env *spool.Envelope, msg io.Reader) error
}

// Router picks the route of a recipient (relay/route.Router).
type Router interface {
	Route(rcpt string) route.Decision
}

// Directory knows the local recipients (mailbox.Directory).
type Directory interface {
	Exists(addr string) bool
	Expand(addr string) ([]string, error)
}

// State is the part of the configuration that a reload swaps at once.
// A session reads it once, at its start, and keeps that snapshot.
type State struct {
	Router          Router
	Directory       Directory
	TrustedNetworks []netip.Prefix
	// Users authenticates submission clients; nil: no AUTH anywhere.
	Users Authenticator
	// Verifier checks relay-domain recipients with the backend (list or
	// callahead, per route); nil: relay domains take any recipient.
	Verifier RecipientVerifier
	// Postmaster is where a bare "RCPT TO:<Postmaster>" goes when no
	// local domain holds the host name (RFC 5321 §4.5.1): see
	// DefaultPostmaster. Empty: such a recipient is refused.
	Postmaster string
}

// RecipientVerifier is relay/verify.Verifier.
type RecipientVerifier interface {
	Verifies(route string) bool
	Check(ctx context.Context, client netip.Addr, route, rcpt string) error
}

// Options wires a Server. Spool, Router and Directory are required.
type Options struct {
	Hostname  string
	Listeners []Listener
	SMTP      SMTP
	// TLS is used by starttls and implicit listeners; nil disables them.
	TLS    *tls.Config
	State  *State
	Spool  Spool
	Notify func(id string) // called after each durable Put (the queue manager)
	// Checks are the authentication checks and rules; nil: relay rules only.
	Checks *Checks
	Logger *zap.Logger
	// Wrap, when set, wraps each listening socket (the connection guard);
	// the wrapped listener yields only admitted connections.
	Wrap func(l net.Listener, cfg Listener) net.Listener
	// OnTimeout, when set, is told of each connection closed for a
	// timeout: the listener and the kind (smtpd.TimeoutIdle,
	// TimeoutDataRate, TimeoutData), for metrics.
	OnTimeout func(listener, kind string)
	Now       func() time.Time
}

// Server runs the SMTP listeners.
type Server struct {
	opt   Options
	log   *zap.Logger
	state atomic.Pointer[State]
	// pipe runs the checks and rules of every session's stages.
	pipe *Pipeline

	mu        sync.Mutex
	listeners []*listener
	closing   bool

	idPrefix string
	idSeq    atomic.Uint64
}

type listener struct {
	cfg  Listener
	ln   net.Listener
	smtp *smtpd.Server
	done chan struct{}
}

// New checks the options; it binds nothing.
func New(opt Options) (*Server, error) {
	if opt.Spool == nil || opt.State == nil || opt.State.Router == nil || opt.State.Directory == nil {
		return nil, errors.New("gateway: Spool, State.Router and State.Directory are required")
	}
	if err := opt.SMTP.Validate(); err != nil {
		return nil, err
	}
	if err := ValidateListeners(opt.Listeners, opt.TLS != nil); err != nil {
		return nil, err
	}
	if opt.Logger == nil {
		opt.Logger = zap.NewNop()
	}
	if opt.Notify == nil {
		opt.Notify = func(string) {}
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	s := &Server{
		opt:      opt,
		log:      opt.Logger,
		idPrefix: base32.StdEncoding.EncodeToString(b[:])[:6],
		pipe:     NewPipeline(PipelineOptions{Hostname: opt.Hostname, MaxMessageSize: opt.SMTP.MaxMessageSize, Checks: opt.Checks}),
	}
	s.state.Store(opt.State)
	return s, nil
}

// Update swaps the reloadable state; sessions already running keep theirs.
func (s *Server) Update(st *State) { s.state.Store(st) }

// Start binds every listener and serves in the background.
func (s *Server) Start() error {
	for _, cfg := range s.opt.Listeners {
		ln, err := listen(cfg.Address)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listener %s: %w", cfg.Name, err)
		}
		s.serve(cfg, ln)
	}
	return nil
}

// listen binds a TCP listener whose connections have no TCP keepalive
// (Go turns it on by default, at four setsockopt calls per connection):
// every read has a deadline (RFC 5321 §4.5.3.2), which ends the session
// of a client that vanished.
func listen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), "tcp", addr)
}

// Serve serves one already bound listener (tests, socket activation).
func (s *Server) Serve(cfg Listener, ln net.Listener) {
	s.serve(cfg, ln)
}

func (s *Server) serve(cfg Listener, ln net.Listener) {
	sc := smtpd.Config{
		Hostname:        s.opt.Hostname,
		MaxMessageBytes: s.opt.SMTP.MaxMessageSize,
		MaxRecipients:   s.opt.SMTP.MaxRecipients,
		MaxLineLength:   s.opt.SMTP.MaxLineLength,
		ReadTimeout:     s.opt.SMTP.ReadTimeout,
		MinDataRate:     s.opt.SMTP.MinDataRate,
		DataTimeout:     s.opt.SMTP.DataTimeout,
		WriteTimeout:    s.opt.SMTP.WriteTimeout,
		SMTPUTF8:        true, // RFC 6531: we store and forward UTF-8 envelopes as they are
	}
	if f := s.opt.OnTimeout; f != nil {
		sc.OnTimeout = func(kind string) { f(cfg.Name, kind) }
	}
	if cfg.TLS == "starttls" && s.opt.TLS != nil {
		sc.TLS = s.opt.TLS
	}
	srv := smtpd.New(sc, func(c *smtpd.Conn) (smtpd.Session, error) {
		return s.newSession(cfg, c)
	}, s.log.Named("smtp"))
	// The guard sees the raw socket (PROXY header, pregreet), so it sits
	// below implicit TLS.
	if s.opt.Wrap != nil {
		ln = s.opt.Wrap(ln, cfg)
	}
	if cfg.TLS == "implicit" && s.opt.TLS != nil {
		ln = tls.NewListener(ln, s.opt.TLS)
	}
	l := &listener{cfg: cfg, ln: ln, smtp: srv, done: make(chan struct{})}
	s.mu.Lock()
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	s.log.Info("listening", zap.String("listener", cfg.Name), zap.String("address", ln.Addr().String()),
		zap.String("mode", cfg.Mode), zap.String("tls", cfg.TLS))
	go func() {
		defer close(l.done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, smtpd.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.log.Error("listener stopped", zap.String("listener", cfg.Name), zap.Error(err))
		}
	}()
}

// Addr returns the bound address of the named listener, or nil.
func (s *Server) Addr(name string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		if l.cfg.Name == name {
			return l.ln.Addr()
		}
	}
	return nil
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	for _, l := range s.listeners {
		l.ln.Close()
	}
}

// Shutdown stops accepting, lets sessions finish until ctx is done, then
// tells every remaining client 421 4.3.2 and closes it (RFC 5321 §3.8).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	ls := append([]*listener(nil), s.listeners...)
	s.mu.Unlock()
	errc := make(chan error, len(ls))
	for _, l := range ls {
		go func() { errc <- l.smtp.Shutdown(ctx) }()
	}
	var err error
	for range ls {
		if e := <-errc; e != nil && err == nil && !errors.Is(e, net.ErrClosed) {
			err = e
		}
	}
	for _, l := range ls {
		<-l.done
	}
	return err
}

func (s *Server) newConnID() string {
	return fmt.Sprintf("%s%06X", s.idPrefix, s.idSeq.Add(1))
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}
