package scanner

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{Name: "rspamd", Type: TypeRspamd, Address: "127.0.0.1:11333"}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // "" valid, else a substring of the error
	}{
		{"ok", func(*Config) {}, ""},
		{"url", func(c *Config) { c.Address = "http://127.0.0.1:11333" }, ""},
		{"unix", func(c *Config) { c.Type, c.Address = TypeClamd, "unix:/run/clamav/clamd.ctl" }, ""},
		{"spamd symbols", func(c *Config) { c.Type, c.Command = TypeSpamd, "SYMBOLS" }, ""},
		{"milter", func(c *Config) { c.Type, c.Address = TypeMilter, "[::1]:11332" }, ""},
		{"accept", func(c *Config) { c.OnError = OnErrorAccept }, ""},
		{"bad name", func(c *Config) { c.Name = "Rspamd" }, "x.name"},
		{"no name", func(c *Config) { c.Name = "" }, "x.name"},
		{"bad type", func(c *Config) { c.Type = "amavis" }, "x.type"},
		{"no address", func(c *Config) { c.Address = "" }, "x.address"},
		{"relative unix", func(c *Config) { c.Address = "unix:clamd.sock" }, "x.address"},
		{"url for clamd", func(c *Config) { c.Type, c.Address = TypeClamd, "http://h:1" }, "x.address"},
		{"no port", func(c *Config) { c.Address = "localhost" }, "x.address"},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, "x.timeout"},
		{"huge timeout", func(c *Config) { c.Timeout = time.Hour }, "x.timeout"},
		{"negative size", func(c *Config) { c.MaxSize = -1 }, "x.max_size"},
		{"on_error", func(c *Config) { c.OnError = "reject" }, "x.on_error"},
		{"command for rspamd", func(c *Config) { c.Command = "CHECK" }, "x.command"},
		{"bad command", func(c *Config) { c.Type, c.Command = TypeSpamd, "PROCESS" }, "x.command"},
		{"password newline", func(c *Config) { c.Password = "a\nb" }, "x.password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mutate(&c)
			err := c.Validate("x")
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one naming %s", err, tt.want)
			}
		})
	}
}

func TestValidateListUniqueNames(t *testing.T) {
	a := Config{Name: "av", Type: TypeClamd, Address: "127.0.0.1:3310"}
	err := ValidateList("scanners", []Config{a, a})
	if err == nil || !strings.Contains(err.Error(), "scanners[1].name") {
		t.Fatalf("got %v", err)
	}
	if err := ValidateList("scanners", []Config{a}); err != nil {
		t.Fatal(err)
	}
}

func TestSetDefaults(t *testing.T) {
	c := Config{Type: TypeSpamd}
	c.SetDefaults()
	if c.Timeout != DefaultTimeout || c.OnError != OnErrorTempfail || c.Command != "SYMBOLS" {
		t.Fatalf("%+v", c)
	}
}
