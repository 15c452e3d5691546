// Package admin is moat's admin HTTP listener (config key admin): the
// Prometheus scrape endpoint /metrics, the probes /healthz and /readyz,
// the queue API that `moat queue` talks to, the quarantine API that
// `moat quarantine` talks to, and a small status page at /.
//
// Access: when a bearer token is configured (admin.token_file), every
// route but the two probes needs "Authorization: Bearer <token>" (RFC 6750
// §2.1), compared in constant time; a missing or wrong token gets 401 with
// WWW-Authenticate (RFC 6750 §3). New refuses a non-loopback address
// without a token. Without a token (loopback only) the Host header must
// name a loopback host, so that a web page cannot reach the API through
// DNS rebinding, and state-changing requests from another origin are
// refused (net/http CrossOriginProtection).
//
// OpenMetrics (admin.open_metrics) is for containers, where Prometheus and
// the kubelet reach the pod's address and no token can be shipped: then
// /metrics, /healthz and /readyz answer any client without a token, and
// without a token every other route answers only clients connecting from
// loopback (`moat queue` run inside the container or pod), so New accepts
// a non-loopback address without a token.
//
// The status page is rendered on the server with html/template (every
// client name and address escaped), has no script and no external asset.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"moat/ops/metrics"
)

// Timeouts of the admin http.Server.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 15 * time.Second
	WriteTimeout      = 60 * time.Second // a streaming flush extends its own deadline
	IdleTimeout       = 2 * time.Minute
	MaxHeaderBytes    = 16 << 10
	readyTimeout      = 5 * time.Second
)

// Options configure a Server.
type Options struct {
	// Address is host:port to listen on (admin.address).
	Address string
	// Token is the bearer token; required when Address is not loopback,
	// unless OpenMetrics.
	Token string
	// OpenMetrics serves /metrics and the probes without a token and from
	// any Host; the other routes then need the token or, without one, a
	// client connecting from loopback.
	OpenMetrics bool
	// Metrics is served on /metrics and feeds the status page; optional.
	Metrics *metrics.Metrics
	// Queue serves the queue API and the page's queue counts; optional
	// (the API then answers 503).
	Queue QueueAPI
	// Quarantine serves the quarantine API and the page's quarantine
	// count; optional (the API then answers 503).
	Quarantine QuarantineAPI
	// Ready is /readyz: nil means ready. Its error should name the failing
	// check (see Checks).
	Ready func(ctx context.Context) error
	// Logger gets one line per failed request and on serve errors.
	Logger *zap.Logger
	// Version, Started and Listeners are shown on the status page and
	// in /api/status (statusinfo.go); optional.
	Version   string
	Started   time.Time
	Listeners []ListenerInfo
}

// Server is the admin listener.
type Server struct {
	opt      Options
	tokenSum [32]byte
	srv      *http.Server
	ln       net.Listener
	log      *zap.Logger
	done     chan struct{}
}

// New checks opt and builds the handler; it binds nothing.
func New(opt Options) (*Server, error) {
	host, _, err := net.SplitHostPort(opt.Address)
	if err != nil {
		return nil, fmt.Errorf("admin.address: %q is not host:port", opt.Address)
	}
	if opt.Token == "" && !isLoopbackHost(host) && !opt.OpenMetrics {
		return nil, fmt.Errorf("admin.address: %q is not a loopback address; set admin.token_file to expose the admin API, or admin.open_metrics to serve only /metrics and the probes beyond loopback", opt.Address)
	}
	if strings.ContainsAny(opt.Token, " \t\r\n") {
		return nil, errors.New("admin.token_file: the token must not contain white space")
	}
	if opt.Logger == nil {
		opt.Logger = zap.NewNop()
	}
	s := &Server{opt: opt, log: opt.Logger}
	if opt.Token != "" {
		s.tokenSum = sha256.Sum256([]byte(opt.Token))
	}
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          zap.NewStdLog(opt.Logger),
	}
	return s, nil
}

// Handler returns the admin routes (for tests and embedding).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", s.probe(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})))
	mux.Handle("GET /readyz", s.probe(http.HandlerFunc(s.readyz)))
	if s.opt.Metrics != nil {
		var h http.Handler = promhttp.HandlerFor(s.opt.Metrics.Registry(), promhttp.HandlerOpts{
			ErrorLog: zap.NewStdLog(s.log), MaxRequestsInFlight: 4, Timeout: 30 * time.Second,
		})
		if !s.opt.OpenMetrics {
			h = s.auth(h)
		}
		mux.Handle("GET /metrics", s.probe(h))
	}
	mux.Handle("GET /{$}", s.auth(http.HandlerFunc(s.status)))
	mux.Handle("GET /api/status", s.auth(http.HandlerFunc(s.apiStatus)))
	mux.Handle("GET /api/queue", s.auth(http.HandlerFunc(s.list)))
	mux.Handle("GET /api/queue/{id}", s.auth(idHandler(s.queueAPI, "queue", s.show)))
	mux.Handle("GET /api/queue/{id}/message", s.auth(idHandler(s.queueAPI, "queue", s.queueMessage)))
	mux.Handle("POST /api/queue/flush", s.auth(http.HandlerFunc(s.flushAll)))
	mux.Handle("POST /api/queue/{id}/flush", s.auth(s.op(QueueAPI.Flush)))
	mux.Handle("POST /api/queue/{id}/hold", s.auth(s.op(QueueAPI.Hold)))
	mux.Handle("POST /api/queue/{id}/release", s.auth(s.op(QueueAPI.Release)))
	mux.Handle("DELETE /api/queue/{id}", s.auth(s.op(QueueAPI.Delete)))
	mux.Handle("GET /api/quarantine", s.auth(http.HandlerFunc(s.quarantineList)))
	mux.Handle("GET /api/quarantine/{id}", s.auth(idHandler(s.quarantineAPI, "quarantine", s.quarantineShow)))
	mux.Handle("GET /api/quarantine/{id}/message", s.auth(idHandler(s.quarantineAPI, "quarantine", s.quarantineMessage)))
	mux.Handle("POST /api/quarantine/{id}/release", s.auth(idHandler(s.quarantineAPI, "quarantine", s.quarantineRelease)))
	mux.Handle("DELETE /api/quarantine/{id}", s.auth(idHandler(s.quarantineAPI, "quarantine", s.quarantineDelete)))
	return http.NewCrossOriginProtection().Handler(mux)
}

// probe guards /healthz, /readyz and /metrics: with OpenMetrics any client
// and Host; otherwise as the rest without a token (hostCheck).
func (s *Server) probe(next http.Handler) http.Handler {
	if s.opt.OpenMetrics {
		return next
	}
	return s.hostCheck(next)
}

// Start binds Address and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.opt.Address)
	if err != nil {
		return fmt.Errorf("admin.address: %w", err)
	}
	s.Serve(ln)
	return nil
}

// Serve serves an already bound listener in the background (the caller
// binds every listener of the process first, so that a taken port stops
// the start before anything is served). Call Start or Serve once.
func (s *Server) Serve(ln net.Listener) {
	s.ln = ln
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin listener stopped", zap.Error(err))
		}
	}()
}

// Addr is the bound address (after Start), or nil.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Shutdown stops accepting and waits for requests under way until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.ln == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	<-s.done
	return err
}

// auth requires the bearer token when one is configured (RFC 6750 §2.1).
// Both sides are hashed first so that the comparison takes the same time
// whatever the lengths.
func (s *Server) auth(next http.Handler) http.Handler {
	if s.opt.Token == "" {
		return s.hostCheck(s.loopbackPeer(next))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearer(r.Header.Get("Authorization"))
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) != 1 {
			// RFC 6750 §3: challenge; §3.1 invalid_token when one was sent.
			chal := `Bearer realm="moat"`
			if ok {
				chal += `, error="invalid_token"`
			}
			w.Header().Set("WWW-Authenticate", chal)
			http.Error(w, "401 unauthorized: a valid bearer token is required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearer extracts the token of "Bearer <token>" (scheme case-insensitive,
// RFC 7235 §2.1).
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// loopbackPeer: with OpenMetrics and no token the listener may face a
// network, so the API answers only clients connecting from loopback.
func (s *Server) loopbackPeer(next http.Handler) http.Handler {
	if !s.opt.OpenMetrics {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil || !isLoopbackHost(host) {
			http.Error(w, "403 forbidden: without admin.token_file the admin API answers only loopback clients", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// hostCheck: without a token the API is protected only by being on
// loopback, so the Host must be a loopback name too (against DNS
// rebinding).
func (s *Server) hostCheck(next http.Handler) http.Handler {
	if s.opt.Token != "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if !isLoopbackHost(strings.Trim(host, "[]")) {
			http.Error(w, "403 forbidden: Host is not a loopback name", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if s.opt.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := s.opt.Ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %s\n", oneLine(err.Error()))
			return
		}
	}
	fmt.Fprintln(w, "ready")
}

// Check is one readiness check.
type Check struct {
	Name string // "spool", "resolver", "listeners" …
	Fn   func(ctx context.Context) error
}

// Checks returns a Ready func running checks in order; the first failure
// is returned as "<name>: <error>".
func Checks(checks ...Check) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		for _, c := range checks {
			if err := c.Fn(ctx); err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
		}
		return nil
	}
}

func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}
