package bayes

import (
	"errors"
	"fmt"
	"net/mail"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config is the `bayes:` section of moat's configuration.
type Config struct {
	// Enabled turns the classifier on. Default false.
	Enabled bool `mapstructure:"enabled"`
	// Store is "bbolt" (<data_dir>/bayes.db) or "redis" (the
	// cluster.redis server, shared by a fleet). Default "": redis when
	// cluster.redis is set, else bbolt.
	Store string `mapstructure:"store"`
	// MinSpam and MinHam are the learned messages of each class before
	// bayes.ready is true. Default 200 each.
	MinSpam int64 `mapstructure:"min_spam"`
	MinHam  int64 `mapstructure:"min_ham"`
	// MaxTokens bounds the distinct tokens read from (and stored for) one
	// message. Default 1000.
	MaxTokens int `mapstructure:"max_tokens"`
	// TokenTTL (Redis only) expires a token this long after the last
	// message holding it was learned. Default 0: never.
	TokenTTL time.Duration `mapstructure:"token_ttl"`
	// Autolearn learns clear spam and clear ham as it passes.
	Autolearn AutolearnConfig `mapstructure:"autolearn"`
	// Learn are the other learning sources of a running daemon.
	Learn LearnConfig `mapstructure:"learn"`
}

// LearnConfig is `bayes.learn:`: what the daemon learns from operations
// (see the package README, "Learning from operations").
type LearnConfig struct {
	// ReleasedAsHam learns a message released from quarantine as ham.
	// Default true.
	ReleasedAsHam bool `mapstructure:"released_as_ham"`
	// SpamTraps are addresses that no person uses: mail to one is learned
	// as spam, and mail to traps only is discarded. Each must still be
	// accepted at RCPT (a local user or alias, or a relay domain).
	SpamTraps []string `mapstructure:"spam_traps"`
	// JunkScanInterval is how often the local mailboxes' Junk folders are
	// scanned (moved in: spam; moved back to the inbox: ham). Default 5m;
	// 0 turns the scan off.
	JunkScanInterval time.Duration `mapstructure:"junk_scan_interval"`
	// QueueSize bounds the learning jobs waiting for the one learning
	// worker (spam traps, autolearn); a job that finds it full is dropped
	// and counted. Default 256.
	QueueSize int `mapstructure:"queue_size"`
}

// Traps returns the spam trap addresses, lower-cased.
func (l LearnConfig) Traps() []string {
	out := make([]string, 0, len(l.SpamTraps))
	for _, a := range l.SpamTraps {
		out = append(out, strings.ToLower(strings.TrimSpace(a)))
	}
	return out
}

// maxSpamTraps bounds bayes.learn.spam_traps.
const maxSpamTraps = 10000

// AutolearnConfig is `bayes.autolearn:`.
type AutolearnConfig struct {
	// Enabled: default false (see the package README: autolearning on the
	// classifier's own verdict feeds its mistakes back into it).
	Enabled bool `mapstructure:"enabled"`
	// SpamAbove: a ready classifier's probability above which a message
	// is learned as spam. Default 0.99.
	SpamAbove float64 `mapstructure:"spam_above"`
	// HamBelow: the probability below which it is learned as ham.
	// Default 0.01.
	HamBelow float64 `mapstructure:"ham_below"`
	// SpamScore and HamScore are what the daemon's autolearn goes by: the
	// rules' final score of an inbound message without the score of the
	// rules that read bayes facts (as SpamAssassin leaves its Bayes score
	// out): at least SpamScore is learned as spam, at most HamScore as
	// ham. Defaults 12 and 0.1 (SpamAssassin's).
	SpamScore float64 `mapstructure:"spam_score"`
	HamScore  float64 `mapstructure:"ham_score"`
}

// Store names.
const (
	StoreBolt  = "bbolt"
	StoreRedis = "redis"
)

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		MinSpam:   200,
		MinHam:    200,
		MaxTokens: defaultMaxTokens,
		Autolearn: AutolearnConfig{SpamAbove: 0.99, HamBelow: 0.01, SpamScore: 12, HamScore: 0.1},
		Learn:     LearnConfig{ReleasedAsHam: true, JunkScanInterval: 5 * time.Minute, QueueSize: 256},
	}
}

// maxMaxTokens bounds bayes.max_tokens.
const maxMaxTokens = 10000

// Validate checks the values; errors name the key.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.Store {
	case "", StoreBolt, StoreRedis:
	default:
		add("bayes.store: %q is not bbolt or redis", c.Store)
	}
	if c.MinSpam < 1 {
		add("bayes.min_spam: %d is less than 1", c.MinSpam)
	}
	if c.MinHam < 1 {
		add("bayes.min_ham: %d is less than 1", c.MinHam)
	}
	if c.MaxTokens < 1 || c.MaxTokens > maxMaxTokens {
		add("bayes.max_tokens: %d is not within 1..%d", c.MaxTokens, maxMaxTokens)
	}
	if c.TokenTTL < 0 {
		add("bayes.token_ttl: %v is negative", c.TokenTTL)
	}
	a := c.Autolearn
	if a.SpamAbove <= 0.5 || a.SpamAbove >= 1 {
		add("bayes.autolearn.spam_above: %v is not within 0.5..1", a.SpamAbove)
	}
	if a.HamBelow <= 0 || a.HamBelow >= 0.5 {
		add("bayes.autolearn.ham_below: %v is not within 0..0.5", a.HamBelow)
	}
	if a.HamScore >= a.SpamScore {
		add("bayes.autolearn.ham_score: %v is not below spam_score %v", a.HamScore, a.SpamScore)
	}
	l := c.Learn
	if l.JunkScanInterval < 0 || l.JunkScanInterval > 0 && l.JunkScanInterval < time.Second {
		add("bayes.learn.junk_scan_interval: %v is neither 0 (off) nor at least 1s", l.JunkScanInterval)
	}
	if l.QueueSize < 1 || l.QueueSize > 100000 {
		add("bayes.learn.queue_size: %d is not within 1..100000", l.QueueSize)
	}
	if len(l.SpamTraps) > maxSpamTraps {
		add("bayes.learn.spam_traps: %d addresses, at most %d", len(l.SpamTraps), maxSpamTraps)
	}
	for i, t := range l.Traps() {
		if err := validTrap(t); err != nil {
			add("bayes.learn.spam_traps[%d]: %q %v", i, l.SpamTraps[i], err)
		}
	}
	return errors.Join(errs...)
}

// validTrap checks a lower-cased spam trap: a bare addr-spec (RFC 5321
// §4.1.2 Mailbox: local-part "@" domain), no display name, no brackets.
func validTrap(a string) error {
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 || len(a) > 254 {
		return errors.New("is not local@domain")
	}
	p, err := mail.ParseAddress(a)
	if err != nil || p.Name != "" || !strings.EqualFold(p.Address, a) {
		return errors.New("is not a bare address")
	}
	if strings.ContainsAny(a[at+1:], "[]") {
		return errors.New("has an address literal for a domain")
	}
	return nil
}

// StoreKind resolves Store: redis when asked or when a Redis server is
// configured, else bbolt. Asking for redis without one is an error.
func (c Config) StoreKind(redisConfigured bool) (string, error) {
	switch {
	case c.Store == StoreRedis && !redisConfigured:
		return "", errors.New("bayes.store: redis needs cluster.redis.address")
	case c.Store == StoreRedis, c.Store == "" && redisConfigured:
		return StoreRedis, nil
	}
	return StoreBolt, nil
}

// Options returns the Classifier options of the config.
func (c Config) Options() Options {
	return Options{
		Tokens:  TokenOptions{MaxTokens: c.MaxTokens},
		MinSpam: c.MinSpam,
		MinHam:  c.MinHam,
	}
}

// Autolearn decides whether a classified message is clear enough to be
// learned: spam above SpamAbove, ham below HamBelow, only when autolearn
// is on and the classifier is ready. It returns ClassNone otherwise.
func (a AutolearnConfig) Autolearn(r Result) Class {
	switch {
	case !a.Enabled || !r.Ready:
		return ClassNone
	case r.Probability > a.SpamAbove:
		return ClassSpam
	case r.Probability < a.HamBelow:
		return ClassHam
	}
	return ClassNone
}

// StoreOptions says where the stores of OpenStore live.
type StoreOptions struct {
	// DataDir holds bayes.db for the bbolt store.
	DataDir string
	// Redis is the client of cluster.redis, nil when none is configured;
	// KeyPrefix is cluster.redis.key_prefix.
	Redis     redis.UniversalClient
	KeyPrefix string
	// RedisTimeout bounds each Redis call (for a live session, keep it as
	// short as cluster.redis.timeout allows). Default 2s.
	RedisTimeout time.Duration
	// Bolt opens the bbolt file (lock timeout, NoSync, read-only).
	Bolt BoltOptions
}

// OpenStore opens the store the configuration names: Redis when
// StoreKind says so (the caller keeps ownership of the client), else
// <DataDir>/bayes.db.
func (c Config) OpenStore(o StoreOptions) (Store, error) {
	kind, err := c.StoreKind(o.Redis != nil)
	if err != nil {
		return nil, err
	}
	if kind == StoreRedis {
		return NewRedisStore(o.Redis, RedisOptions{KeyPrefix: o.KeyPrefix, TokenTTL: c.TokenTTL, Timeout: o.RedisTimeout}), nil
	}
	return OpenBolt(filepath.Join(o.DataDir, "bayes.db"), o.Bolt)
}
