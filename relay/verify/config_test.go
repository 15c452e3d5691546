package verify

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/relay/route"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"positive ttl", func(c *Config) { c.PositiveTTL = 0 }, "verify.positive_ttl"},
		{"negative ttl", func(c *Config) { c.NegativeTTL = -time.Second }, "verify.negative_ttl"},
		{"tempfail ttl", func(c *Config) { c.TempfailTTL = -1 }, "verify.tempfail_ttl"},
		{"tempfail ttl long", func(c *Config) { c.TempfailTTL = 2 * time.Hour }, "verify.tempfail_ttl"},
		{"cache size", func(c *Config) { c.CacheSize = 0 }, "verify.cache_size"},
		{"probe timeout", func(c *Config) { c.ProbeTimeout = 0 }, "verify.probe_timeout"},
		{"tempfail mode", func(c *Config) { c.CallaheadTempfail = "bounce" }, "verify.callahead_tempfail"},
		{"harvest limit", func(c *Config) { c.HarvestLimit = -1 }, "verify.harvest_limit"},
		{"harvest window", func(c *Config) { c.HarvestWindow = 0 }, "verify.harvest_window"},
		{"harvest code", func(c *Config) { c.HarvestCode = 550 }, "verify.harvest_code"},
		{"harvest clients", func(c *Config) { c.HarvestClients = 0 }, "verify.harvest_clients"},
		{"max conns", func(c *Config) { c.MaxConns = 0 }, "verify.max_conns"},
		{"idle", func(c *Config) { c.IdleTimeout = 0 }, "verify.idle_timeout"},
		{"list reload", func(c *Config) { c.ListReload = 0 }, "verify.list_reload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %s", err, tt.want)
			}
		})
	}
	c := DefaultConfig()
	c.HarvestLimit, c.HarvestWindow, c.HarvestClients = 0, 0, 0
	if err := c.Validate(); err != nil {
		t.Fatalf("harvest off needs no window: %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	writeFile(t, bad, "nope\n", time.Now())
	tests := []struct {
		name  string
		route route.Route
		want  string
	}{
		{"missing file", route.Route{Type: route.TypeSMTP, Address: "h:25", VerifyRecipients: route.VerifyList, RecipientsFile: filepath.Join(dir, "none")}, "routes.r.recipients_file"},
		{"bad file", route.Route{Type: route.TypeSMTP, Address: "h:25", VerifyRecipients: route.VerifyList, RecipientsFile: bad}, "line 1"},
		{"list without file", route.Route{Type: route.TypeSMTP, Address: "h:25", VerifyRecipients: route.VerifyList}, "routes.r.recipients_file"},
		{"callahead mx", route.Route{Type: route.TypeMX, VerifyRecipients: route.VerifyCallahead}, "routes.r.verify_recipients"},
		{"bad mode", route.Route{Type: route.TypeSMTP, Address: "h:25", VerifyRecipients: "ldap"}, "routes.r.verify_recipients"},
		{"bad address", route.Route{Type: route.TypeSMTP, Address: "nope", VerifyRecipients: route.VerifyCallahead}, "routes.r.address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(DefaultConfig(), map[string]route.Route{"r": tt.route}, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %s", err, tt.want)
			}
		})
	}
	if _, err := New(Config{}, nil, Options{}); err == nil {
		t.Fatal("zero Config accepted")
	}
}
