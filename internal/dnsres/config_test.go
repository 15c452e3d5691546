package dnsres

import (
	"os"
	"strings"
	"testing"
	"time"
)

func writeFile(name, text string) error { return os.WriteFile(name, []byte(text), 0o600) }

func TestParseServer(t *testing.T) {
	tests := []struct{ in, want string }{
		{"127.0.0.1", "127.0.0.1:53"},
		{"127.0.0.1:5353", "127.0.0.1:5353"},
		{"::1", "[::1]:53"},
		{"[::1]", "[::1]:53"},
		{"[2001:db8::1]:853", "[2001:db8::1]:853"},
		{"", "!"},
		{"dns.example.org", "!"},
		{"dns.example.org:53", "!"},
		{"127.0.0.1:0", "!"},
		{"127.0.0.1:99999", "!"},
		{"fe80::1%eth0", "!"},
		{"[fe80::1%eth0]:53", "!"},
		{"1.2.3.4:", "!"},
	}
	for _, tc := range tests {
		got, err := ParseServer(tc.in)
		if err != nil {
			got = "!"
		}
		if got != tc.want {
			t.Errorf("ParseServer(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error, "" for none
	}{
		{"defaults", DefaultConfig(), ""},
		{"servers", Config{Servers: []string{"127.0.0.1", "[::1]:5353"}}, ""},
		{"bad server", Config{Servers: []string{"127.0.0.1", "nope"}}, "dns.servers[1]:"},
		{"negative timeout", Config{Timeout: -time.Second}, "dns.timeout:"},
		{"attempts", Config{Attempts: 6}, "dns.attempts:"},
		{"too many servers", Config{Servers: make([]string, 17)}, "dns.servers:"},
	}
	for _, tc := range tests {
		err := tc.cfg.Validate()
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := New(Config{Servers: []string{"x"}}); err == nil {
		t.Error("New accepted a bad config")
	}
}

func FuzzParseServer(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "[::1]:53", "::1", "1.2.3.4:5353", "[", "]:", "a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addr, err := ParseServer(s)
		if err != nil {
			return
		}
		// A parsed address parses again to itself.
		again, err := ParseServer(addr)
		if err != nil || again != addr {
			t.Fatalf("%q → %q → %q, %v", s, addr, again, err)
		}
	})
}
