package cluster

import (
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*RedisConfig)
		want string // "" for valid
	}{
		{"defaults (off)", func(*RedisConfig) {}, ""},
		{"address", func(r *RedisConfig) { r.Address = "127.0.0.1:6379" }, ""},
		{"ipv6", func(r *RedisConfig) { r.Address = "[::1]:6379" }, ""},
		{"no port", func(r *RedisConfig) { r.Address = "redis" }, "cluster.redis.address:"},
		{"bad port", func(r *RedisConfig) { r.Address = "redis:0" }, "cluster.redis.address:"},
		{"no host", func(r *RedisConfig) { r.Address = ":6379" }, "cluster.redis.address:"},
		{"db", func(r *RedisConfig) { r.DB = -1 }, "cluster.redis.db:"},
		{"prefix space", func(r *RedisConfig) { r.KeyPrefix = "a b" }, "cluster.redis.key_prefix:"},
		{"prefix long", func(r *RedisConfig) { r.KeyPrefix = strings.Repeat("x", 65) }, "cluster.redis.key_prefix:"},
		{"timeout zero", func(r *RedisConfig) { r.Timeout = 0 }, "cluster.redis.timeout:"},
		{"timeout long", func(r *RedisConfig) { r.Timeout = 6 * time.Second }, "cluster.redis.timeout:"},
		{"backoff", func(r *RedisConfig) { r.Backoff = -time.Second }, "cluster.redis.backoff:"},
		{"local size", func(r *RedisConfig) { r.LocalSize = 1 }, "cluster.redis.local_size:"},
		{"username", func(r *RedisConfig) { r.Username = "a\nb" }, "cluster.redis.username:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.mod(&cfg.Redis)
			err := cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error = %v, want one naming %q", err, tt.want)
			}
		})
	}
	if DefaultConfig().Enabled() {
		t.Error("the default config enables the backend")
	}
}
