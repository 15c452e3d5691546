package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"moat/internal/reply"
)

// Config holds the protocol settings of a Server. Zero values take the
// defaults named on each field.
type Config struct {
	// Hostname is the name in the greeting and in the EHLO reply
	// (RFC 5321 §4.1.1.1, §4.2).
	Hostname string
	// TLS, when set, makes STARTTLS available on connections that are
	// not TLS yet (RFC 3207). Implicit TLS is the listener's business:
	// a *tls.Conn anywhere in an accepted connection's wrapper chain is
	// handshaken before the greeting (RFC 8314 §3.3).
	TLS *tls.Config
	// MaxMessageBytes is advertised with SIZE and enforced on DATA and
	// BDAT (RFC 1870); 0: 25 MiB.
	MaxMessageBytes int64
	// MaxRecipients per transaction (RFC 5321 §4.5.3.1.8 asks for at
	// least 100); 0: 100.
	MaxRecipients int
	// MaxLineLength bounds every command and DATA line, counted in
	// octets with its line end (CRLF) as it came and without a leading
	// dot added for transparency, as RFC 5321 §4.5.3.1.6 counts a text
	// line (§4.5.3.1.4 and §4.5.3.1.6 are the floor); 0: 4096.
	MaxLineLength int
	// ReadTimeout bounds every read, and every idle wait, from the client
	// (RFC 5321 §4.5.3.2); 0: 5 minutes. A connection whose wrapper chain
	// has a StressTimeout() time.Duration method (the guard's, under
	// overload) gets the shorter of the two while that is not zero.
	ReadTimeout time.Duration
	// MinDataRate is the least rate, in octets a second, at which the
	// message of a DATA or BDAT transfer must come, as Postfix's
	// smtpd_min_data_rate: after N octets the transfer may have taken
	// ReadTimeout + N/MinDataRate so far. 0: no rate.
	MinDataRate int64
	// DataTimeout bounds the whole transfer of one message, from the
	// 354 reply (or the first BDAT chunk) to its end. 0: none.
	DataTimeout time.Duration
	// OnTimeout, when set, is told of each connection closed for a
	// timeout, by kind (TimeoutIdle, TimeoutDataRate, TimeoutData).
	OnTimeout func(kind string)
	// WriteTimeout bounds every write; 0: 1 minute.
	WriteTimeout time.Duration
	// SMTPUTF8 advertises and accepts RFC 6531.
	SMTPUTF8 bool
}

// NewSessionFunc makes the session of a connection. It is called at the
// client's first HELO or EHLO, and again at the first one after STARTTLS
// (RFC 3207 §4.2: all knowledge from before TLS is discarded), so Conn's
// Hostname is set. An error is the reply, as for Session.Mail (a 421
// also closes the connection).
type NewSessionFunc func(c *Conn) (Session, error)

// Server runs the SMTP protocol loop on the connections of its listeners.
type Server struct {
	cfg        Config
	newSession NewSessionFunc
	log        *zap.Logger

	// greeting and bye name the host; built once, not per connection.
	greeting, bye *reply.Reply

	rbufs sync.Pool // *[]byte of readBufSize, taken while a command or data is read
	wbufs sync.Pool // *[]byte, taken while replies wait to be written

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*Conn]struct{}
	closing   bool
	wg        sync.WaitGroup

	// handoff passes an accepted connection to a goroutine that has
	// served one and waits for the next (see run); stopped is closed when
	// the server stops accepting, and ends those waits.
	handoff chan *Conn
	stopped chan struct{}
	waiting atomic.Int32

	// idleHook, when set (by this package's tests), is called each time
	// a connection is about to wait for its next command on the socket.
	idleHook func(*Conn)
}

// New returns a Server; log may be nil. It binds nothing.
func New(cfg Config, newSession NewSessionFunc, log *zap.Logger) *Server {
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 25 << 20
	}
	if cfg.MaxRecipients <= 0 {
		cfg.MaxRecipients = 100
	}
	if cfg.MaxLineLength <= 0 {
		cfg.MaxLineLength = 4096
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 5 * time.Minute
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = time.Minute
	}
	if log == nil {
		log = zap.NewNop()
	}
	s := &Server{
		cfg:        cfg,
		newSession: newSession,
		log:        log,
		listeners:  map[net.Listener]struct{}{},
		conns:      map[*Conn]struct{}{},
		handoff:    make(chan *Conn),
		stopped:    make(chan struct{}),
		greeting:   replyGreeting.Format(cfg.Hostname),
		bye:        replyBye.WithHost(cfg.Hostname),
	}
	size := readBufSize
	if cfg.MaxLineLength+2 > size {
		size = cfg.MaxLineLength + 2
	}
	s.rbufs.New = func() any { b := make([]byte, size); return &b }
	s.wbufs.New = func() any { b := make([]byte, 0, 512); return &b }
	return s
}

// readBufSize is the size of a pooled read buffer.
const readBufSize = 8 << 10

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("smtpd: server closed")

// Serve accepts connections on ln and runs each in a goroutine of its
// own (a new one, or one that has served another connection and is
// free) until ln fails or the server is shut down (then it returns
// ErrServerClosed).
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				// A passing failure (EMFILE is reported as
				// temporary by net): back off, up to a second.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := newConn(s, nc)
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		select {
		case s.handoff <- c:
		default:
			go s.run(c)
		}
	}
}

// Bounds of the goroutines that wait for another connection after
// serving one.
const (
	maxWaiting  = 64
	waitForNext = 10 * time.Second
)

// run serves c, then waits a while for another connection to serve
// (at most maxWaiting goroutines wait). A goroutine keeps the stack it
// grew: a new one per connection grew its stack by copying, about four
// times, on every connection (DKIM and the rules run deep).
func (s *Server) run(c *Conn) {
	var next *time.Timer
	for {
		c.serve()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
		c = nil // not kept alive while waiting

		if s.waiting.Add(1) > maxWaiting {
			s.waiting.Add(-1)
			return
		}
		if next == nil {
			next = time.NewTimer(waitForNext)
		} else {
			next.Reset(waitForNext)
		}
		select {
		case c = <-s.handoff:
			s.waiting.Add(-1)
		case <-next.C:
			s.waiting.Add(-1)
			return
		case <-s.stopped:
			s.waiting.Add(-1)
			next.Stop()
			return
		}
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// closeListeners stops accepting.
func (s *Server) closeListeners() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closing {
		close(s.stopped)
	}
	s.closing = true
	var err error
	for ln := range s.listeners {
		if e := ln.Close(); e != nil && err == nil && !errors.Is(e, net.ErrClosed) {
			err = e
		}
		delete(s.listeners, ln)
	}
	return err
}

// Shutdown stops accepting and waits until every connection has ended or
// ctx is done; then it tells every client left 421 4.3.2, closes its
// connection and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.closeListeners()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return err
	case <-ctx.Done():
	}
	// RFC 5321 §3.8: the server may close with 421 when it must shut
	// down; it says so to every client still there, said EHLO or not.
	s.mu.Lock()
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	bye := reply.ShuttingDown.WithHost(s.cfg.Hostname).AppendWire(nil)
	for _, c := range conns {
		c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		c.nc.Write(bye)
		c.nc.Close()
	}
	return ctx.Err()
}

// Close stops accepting and closes every connection at once.
func (s *Server) Close() error {
	err := s.closeListeners()
	s.mu.Lock()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	return err
}
