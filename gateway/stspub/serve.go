package stspub

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/netutil"
)

// Handler serves each policy to requests for its host; anything else is
// 404. Host is matched without its port and case-insensitively.
func Handler(c Config) http.Handler {
	byHost := map[string]string{}
	for _, p := range c.Publish {
		byHost[HostFor(p.Domain)] = p.Text()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		text, ok := byHost[strings.ToLower(strings.TrimSuffix(host, "."))]
		if !ok || r.URL.Path != WellKnownPath {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8") // §3.3: text/plain
		h.Set("Content-Length", strconv.Itoa(len(text)))
		h.Set("Cache-Control", "no-store") // senders cache by max_age and the id, not by HTTP
		if r.Method == http.MethodGet {
			w.Write([]byte(text))
		}
	})
}

// maxConns bounds the connections served at once.
const maxConns = 256

// Server serves the policies over HTTPS on one listener.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen binds mta_sts.listener.
func Listen(c Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", c.Listener)
	if err != nil {
		return nil, errors.New("mta_sts.listener " + strconv.Quote(c.Listener) + ": " + err.Error())
	}
	return ln, nil
}

// Serve starts serving on ln with conf (whose GetCertificate picks the
// certificate of mta-sts.<domain>); every read and write has a deadline.
func Serve(c Config, ln net.Listener, conf *tls.Config) *Server {
	conf = conf.Clone()
	if len(conf.NextProtos) == 0 {
		conf.NextProtos = []string{"http/1.1"}
	}
	s := &Server{ln: ln, srv: &http.Server{
		Handler:           Handler(c),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    8 << 10,
		TLSConfig:         conf,
	}}
	go s.srv.Serve(tls.NewListener(netutil.LimitListener(ln, maxConns), conf))
	return s
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }
