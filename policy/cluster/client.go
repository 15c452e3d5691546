package cluster

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/zap"
)

// Options wires a Client.
type Options struct {
	// Logger gets one line per change between up and down. Default: none.
	Logger *zap.Logger
	// Clock is the time of the back-off and of the timestamps written to
	// Redis (greylist first-seen, token buckets, pass expiry). Default
	// time.Now. (Redis key expiry runs on the server's clock.)
	Clock func() time.Time
	// OnStateChange, when set, is called once per change: false when Redis
	// stops answering, true when it answers again (a metric). It must not
	// block.
	OnStateChange func(up bool)
}

// Client is a Redis connection pool with the deadline, back-off and
// up/down bookkeeping every shared store goes through. It is safe for
// concurrent use. Build the views with Limiter, Greylister, GuardState
// and Cache.
type Client struct {
	rdb       *redis.Client
	addr      string
	prefix    string
	timeout   time.Duration
	backoff   time.Duration
	localSize int
	log       *zap.Logger
	clock     func() time.Time
	onState   func(bool)

	notifyMu sync.Mutex // orders the logging and hook calls of changes
	mu       sync.Mutex
	down     bool
	retryAt  time.Time

	calls, failures, skipped, changes atomic.Uint64
}

// Stats are the Client's counters.
type Stats struct {
	Up           bool   // the last call succeeded (true before the first)
	Calls        uint64 // calls sent to Redis
	Failures     uint64 // calls that failed or timed out (then local state answered)
	Skipped      uint64 // calls not sent during a back-off (local state answered)
	StateChanges uint64 // changes between up and down
}

// maxPasswordFile bounds the read of cluster.redis.password_file.
const maxPasswordFile = 4096

// New builds a Client from a validated config with the backend enabled.
// It reads the password file but does not connect: the first call does.
func New(cfg Config, opt Options) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := cfg.Redis
	if r.Address == "" {
		return nil, errors.New("cluster.redis.address: empty, the cluster backend is off")
	}
	ro, err := r.ClientOptions(r.Timeout)
	if err != nil {
		return nil, err
	}
	if opt.Logger == nil {
		opt.Logger = zap.NewNop()
	}
	if opt.Clock == nil {
		opt.Clock = time.Now
	}
	return &Client{
		rdb:       redis.NewClient(ro),
		addr:      r.Address,
		prefix:    r.KeyPrefix,
		timeout:   r.Timeout,
		backoff:   r.Backoff,
		localSize: r.LocalSize,
		log:       opt.Logger,
		clock:     opt.Clock,
		onState:   opt.OnStateChange,
	}, nil
}

func readPassword(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPasswordFile+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxPasswordFile {
		return "", fmt.Errorf("%s: longer than %d bytes", path, maxPasswordFile)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" || strings.ContainsAny(pw, "\r\n") {
		return "", fmt.Errorf("%s: must hold one non-empty line", path)
	}
	return pw, nil
}

// Close closes the connection pool. Views used after Close answer from
// local state.
func (c *Client) Close() error { return c.rdb.Close() }

// Ping checks the server under the deadline (for a readiness probe); it
// counts like any call and ignores the back-off.
func (c *Client) Ping(ctx context.Context) error {
	c.mu.Lock()
	c.retryAt = time.Time{}
	c.mu.Unlock()
	return c.do(ctx, func(ctx context.Context) error { return c.rdb.Ping(ctx).Err() })
}

// Up reports whether the last call succeeded.
func (c *Client) Up() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.down
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	return Stats{
		Up:           c.Up(),
		Calls:        c.calls.Load(),
		Failures:     c.failures.Load(),
		Skipped:      c.skipped.Load(),
		StateChanges: c.changes.Load(),
	}
}

// errSkipped is returned by do during a back-off.
var errSkipped = errors.New("cluster: redis skipped after a recent failure")

// do runs fn against Redis under the timeout, unless a recent failure
// put Redis in back-off. While down, one call per back-off period probes
// Redis; the others are skipped at once. redis.Nil (no such key) is a
// success.
func (c *Client) do(ctx context.Context, fn func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := c.clock()
	c.mu.Lock()
	if c.down {
		if now.Before(c.retryAt) {
			c.mu.Unlock()
			c.skipped.Add(1)
			return errSkipped
		}
		c.retryAt = now.Add(c.backoff) // this call is the probe
	}
	c.mu.Unlock()
	c.calls.Add(1)
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	err := fn(cctx)
	cancel()
	if err == nil || errors.Is(err, redis.Nil) {
		c.setState(true, nil)
		return err
	}
	if ctx.Err() != nil {
		return err // the caller gave up: that says nothing about Redis
	}
	c.failures.Add(1)
	c.setState(false, err)
	return err
}

// setState records the outcome of a call, and logs and reports a change.
func (c *Client) setState(up bool, cause error) {
	c.notifyMu.Lock()
	defer c.notifyMu.Unlock()
	c.mu.Lock()
	changed := c.down == up
	c.down = !up
	if !up {
		c.retryAt = c.clock().Add(c.backoff)
	}
	c.mu.Unlock()
	if !changed {
		return
	}
	c.changes.Add(1)
	if up {
		c.log.Info("cluster: redis answers again, using shared state", zap.String("address", c.addr))
	} else {
		c.log.Warn("cluster: redis unavailable, using local state", zap.String("address", c.addr),
			zap.Error(cause), zap.Duration("backoff", c.backoff))
	}
	if c.onState != nil {
		c.onState(up)
	}
}

// maxKeyLen bounds the caller's part of a key; longer keys are hashed.
const maxKeyLen = 200

// key returns the Redis key of kind ("rl:", "gl:", …) and the caller's key.
func (c *Client) key(kind, k string) string {
	if len(k) > maxKeyLen {
		sum := sha256.Sum256([]byte(k))
		k = "sha256:" + hex.EncodeToString(sum[:])
	}
	return c.prefix + kind + k
}

// millis converts d to whole milliseconds, at least 1 (PEXPIRE and SET PX
// refuse 0).
func millis(d time.Duration) int64 {
	return max(d.Milliseconds(), 1)
}

// ClientOptions are the go-redis options for this server with every call
// bounded by timeout: one attempt per call (a failure is the caller's to
// handle), the context's deadline honoured, RESP2, TLS when configured,
// and the password read from password_file. The cluster client and the
// classifier's Redis store both use them.
func (r RedisConfig) ClientOptions(timeout time.Duration) (*redis.Options, error) {
	var password string
	if r.PasswordFile != "" {
		var err error
		if password, err = readPassword(r.PasswordFile); err != nil {
			return nil, fmt.Errorf("cluster.redis.password_file: %w", err)
		}
	}
	ro := &redis.Options{
		Addr:     r.Address,
		Username: r.Username,
		Password: password,
		DB:       r.DB,
		// RESP2: understood by every Redis version and by proxies.
		Protocol:        2,
		DisableIdentity: true,
		// One attempt per call, bounded by our deadline: a failure falls
		// back to local state and starts the back-off instead.
		MaxRetries:            -1,
		DialerRetries:         1,
		DialTimeout:           timeout,
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		PoolTimeout:           timeout,
		ContextTimeoutEnabled: true,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	}
	if r.TLS {
		host, _, _ := net.SplitHostPort(r.Address)
		ro.TLSConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	return ro, nil
}
