package cluster

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Config is the `cluster:` section. With no redis address the cluster
// backend is off and every node keeps its state to itself.
type Config struct {
	Redis RedisConfig `mapstructure:"redis"`
}

// RedisConfig is `cluster.redis:`: one Redis server (or a proxy or
// Sentinel-managed address in front of one) shared by all nodes.
type RedisConfig struct {
	// Address is host:port of the server. Empty: the cluster backend is
	// off. Default empty.
	Address string `mapstructure:"address"`
	// PasswordFile holds the Redis password (AUTH), read when the client
	// is built; one line, a trailing newline is ignored. Default: none.
	PasswordFile string `mapstructure:"password_file"`
	// Username is the ACL user (Redis 6+). Default: none (the default
	// user).
	Username string `mapstructure:"username"`
	// TLS connects with TLS (system roots, server name from Address).
	// Default false.
	TLS bool `mapstructure:"tls"`
	// DB is the database number selected on connect. Default 0.
	DB int `mapstructure:"db"`
	// KeyPrefix starts every key moat writes, so that several moat
	// clusters (or other applications) can share a server. Default
	// "moat:".
	KeyPrefix string `mapstructure:"key_prefix"`
	// Timeout bounds every call to Redis, connecting included; a call
	// that takes longer falls back to local state. Default 50ms.
	Timeout time.Duration `mapstructure:"timeout"`
	// Backoff is how long Redis is skipped (local state only) after a
	// failed call. Default 1s.
	Backoff time.Duration `mapstructure:"backoff"`
	// LocalSize bounds each node-local LRU (fallback state and caches in
	// front of Redis). Default 100000.
	LocalSize int `mapstructure:"local_size"`
}

// DefaultConfig returns the documented defaults (the backend off).
func DefaultConfig() Config {
	return Config{Redis: RedisConfig{
		KeyPrefix: "moat:",
		Timeout:   50 * time.Millisecond,
		Backoff:   time.Second,
		LocalSize: 100000,
	}}
}

// Enabled reports whether a Redis server is configured.
func (c Config) Enabled() bool { return c.Redis.Address != "" }

// maxKeyPrefix bounds cluster.redis.key_prefix.
const maxKeyPrefix = 64

// Validate checks the values; errors name the full key (cluster.redis.…).
// It does not read the password file: New does.
func (c Config) Validate() error {
	r := c.Redis
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if r.Address != "" {
		host, port, err := net.SplitHostPort(r.Address)
		if err != nil {
			add("cluster.redis.address: %q is not host:port: %v", r.Address, err)
		} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
			add("cluster.redis.address: %q needs a host and a port from 1 to 65535", r.Address)
		}
	}
	if r.DB < 0 {
		add("cluster.redis.db: must not be negative")
	}
	if len(r.KeyPrefix) > maxKeyPrefix {
		add("cluster.redis.key_prefix: longer than %d bytes", maxKeyPrefix)
	}
	if strings.ContainsAny(r.KeyPrefix, " \t\r\n") {
		add("cluster.redis.key_prefix: must not contain spaces or line breaks")
	}
	if r.Timeout <= 0 || r.Timeout > 5*time.Second {
		add("cluster.redis.timeout: %s is outside (0, 5s]", r.Timeout)
	}
	if r.Backoff < 0 || r.Backoff > 5*time.Minute {
		add("cluster.redis.backoff: %s is outside [0, 5m]", r.Backoff)
	}
	if r.LocalSize < 16 {
		add("cluster.redis.local_size: %d is below 16", r.LocalSize)
	}
	if strings.ContainsAny(r.Username, " \r\n") {
		add("cluster.redis.username: must not contain spaces or line breaks")
	}
	return errors.Join(errs...)
}
