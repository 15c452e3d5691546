package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/relay/route"
	"moat/relay/spool"
)

// memSpool is an in-memory Spool; fail makes Put fail.
type memSpool struct {
	mu   sync.Mutex
	n    int
	msgs []stored
	fail error
}

type stored struct {
	env  *spool.Envelope
	data []byte
}

func (m *memSpool) NewID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n++
	return fmt.Sprintf("TEST%04d", m.n)
}

func (m *memSpool) Put(ctx context.Context, env *spool.Envelope, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.msgs = append(m.msgs, stored{env: env, data: b})
	return nil
}

func (m *memSpool) all() []stored {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]stored(nil), m.msgs...)
}

// mapDir is a Directory over a fixed map.
type mapDir struct {
	users   map[string]bool
	aliases map[string][]string
}

func (d mapDir) Exists(a string) bool {
	a = strings.ToLower(a)
	return d.users[a] || d.aliases[a] != nil
}

func (d mapDir) Expand(a string) ([]string, error) {
	a = strings.ToLower(a)
	if t, ok := d.aliases[a]; ok {
		return t, nil
	}
	if d.users[a] {
		return []string{a}, nil
	}
	return nil, errors.New("unknown")
}

type testServer struct {
	srv   *Server
	addr  string
	spool *memSpool
}

func testDir() mapDir {
	return mapDir{
		users: map[string]bool{"alice@example.org": true, "bob@example.org": true, "postmaster@example.org": true},
		aliases: map[string][]string{
			"team@example.org": {"alice@example.org", "bob@example.org"},
			"ext@example.org":  {"carol@far.example"},
		},
	}
}

func testState() *State {
	return &State{
		Router: route.NewRouter(route.Config{
			LocalDomains: []string{"example.org"},
			RelayDomains: map[string]string{"corp.example": "backend"},
			Routes:       map[string]route.Route{"backend": {Type: "smtp", Address: "127.0.0.1:1"}},
		}),
		Directory:  testDir(),
		Postmaster: "postmaster@example.org",
	}
}

// startServer runs a gateway on 127.0.0.1:0. By default the client
// (127.0.0.1) is NOT trusted.
func startServer(t *testing.T, mutate func(*Options)) *testServer {
	t.Helper()
	sp := &memSpool{}
	opt := Options{
		Hostname:  "mx.example.org",
		Listeners: []Listener{{Name: "mx", Address: "127.0.0.1:0", Mode: "mx", TLS: "none"}},
		SMTP:      DefaultSMTP(),
		State:     testState(),
		Spool:     sp,
	}
	opt.SMTP.MaxMessageSize = 64 << 10
	opt.SMTP.ReadTimeout = 5 * time.Second
	opt.SMTP.WriteTimeout = 5 * time.Second
	if mutate != nil {
		mutate(&opt)
	}
	s, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Serve(opt.Listeners[0], ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return &testServer{srv: s, addr: ln.Addr().String(), spool: sp}
}

func trusted(o *Options) {
	o.State.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
}

func has(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }
