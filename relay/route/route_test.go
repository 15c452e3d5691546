package route

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDomain(t *testing.T) {
	tests := []struct {
		addr, want string
		bad        bool
	}{
		{addr: "user@Example.ORG", want: "example.org"},
		{addr: "<user@example.org.>", want: "example.org"},
		{addr: "user%other.example@example.org", want: "example.org"},
		{addr: "a!b@example.org", want: "example.org"},
		{addr: `"john doe"@example.org`, want: "example.org"},
		{addr: `"a\"b"@example.org`, want: "example.org"},
		{addr: "user@bücher.example", want: "xn--bcher-kva.example"},
		{addr: "user@BÜCHER.example", want: "xn--bcher-kva.example"},
		{addr: "user@xn--bcher-kva.example", want: "xn--bcher-kva.example"},
		{addr: "üser@example.org", want: "example.org"},
		{addr: "user@localhost", want: "localhost"},
		{addr: `"user@other.example"@example.org`, bad: true},
		{addr: "user@other.example@example.org", bad: true},
		{addr: "@relay.example:user@other.example", bad: true},
		{addr: "<@a,@b:user@c>", bad: true},
		{addr: "user@[192.0.2.1]", bad: true},
		{addr: "user@[IPv6:::1]", bad: true},
		{addr: "user@", bad: true},
		{addr: "@example.org", bad: true},
		{addr: "user", bad: true},
		{addr: "", bad: true},
		{addr: "<>", bad: true},
		{addr: "us er@example.org", bad: true},
		{addr: "user@exa mple.org", bad: true},
		{addr: "user@-example.org", bad: true},
		{addr: "user@example..org", bad: true},
		{addr: "user@exa_mple.org", bad: true},
		{addr: `"unterminated@example.org`, bad: true},
		{addr: "user@" + strings.Repeat("a", 64) + ".org", bad: true},
		{addr: strings.Repeat("a", 250) + "@example.org", bad: true},
	}
	for _, tt := range tests {
		got, err := Domain(tt.addr)
		if tt.bad {
			if err == nil {
				t.Errorf("Domain(%q) = %q, want error", tt.addr, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Domain(%q) = %q, %v; want %q", tt.addr, got, err, tt.want)
		}
	}
}

func TestRouter(t *testing.T) {
	c := Config{
		LocalDomains: []string{"Example.ORG.", "bücher.example"},
		RelayDomains: map[string]string{"corp.example": "backend", ".sub.example": "backend", "deep.sub.example": "mx", ".x.sub.example": "other"},
		Routes: map[string]Route{
			"backend": {Type: TypeSMTP, Address: "10.0.0.5:25"},
			"other":   {Type: TypeLMTP, Address: "unix:/run/lmtp"},
		},
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	r := NewRouter(c)
	tests := []struct {
		rcpt string
		want Decision
	}{
		{"a@example.org", Decision{Route: Local}},
		{"a@EXAMPLE.org.", Decision{Route: Local}},
		{"a@xn--bcher-kva.example", Decision{Route: Local}},
		{"a@BÜCHER.example", Decision{Route: Local}},
		{"a@corp.example", Decision{Route: "backend"}},
		{"a@sub.corp.example", Decision{Route: MX, Relay: true}},
		{"a@sub.example", Decision{Route: MX, Relay: true}},
		{"a@a.sub.example", Decision{Route: "backend"}},
		{"a@a.b.sub.example", Decision{Route: "backend"}},
		{"a@deep.sub.example", Decision{Route: MX}},
		{"a@y.x.sub.example", Decision{Route: "other"}},
		{"a@other.example", Decision{Route: MX, Relay: true}},
		{`"a@corp.example"@other.example`, Decision{Route: MX, Relay: true}},
		{"a@[127.0.0.1]", Decision{Route: MX, Relay: true}},
		{"@example.org:a@other.example", Decision{Route: MX, Relay: true}},
	}
	for _, tt := range tests {
		if got := r.Route(tt.rcpt); got != tt.want {
			t.Errorf("Route(%q) = %+v, want %+v", tt.rcpt, got, tt.want)
		}
	}
	c.Routes["default"] = Route{Type: TypeSMTP, Address: "smarthost.example:587", TLS: TLSRequired}
	r = NewRouter(c)
	if got := r.Route("a@other.example"); got != (Decision{Route: Default, Relay: true}) {
		t.Errorf("with default route: %+v", got)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		c    Config
		want string // substring of the error; "" for none
	}{
		{"ok", Config{LocalDomains: []string{"example.org"}, RelayDomains: map[string]string{"corp.example": "backend"},
			Routes: map[string]Route{"backend": {Type: "smtp", Address: "10.0.0.5:25", TLS: "required", Username: "u", PasswordFile: pw}}}, ""},
		{"undefined route", Config{RelayDomains: map[string]string{"corp.example": "nope"}}, "domains.relay.corp.example: route \"nope\" is not defined"},
		{"mx relay", Config{RelayDomains: map[string]string{"corp.example": "mx"}}, ""},
		{"local relay", Config{RelayDomains: map[string]string{"corp.example": "local"}}, "reserved"},
		{"reserved name", Config{Routes: map[string]Route{"mx": {Type: "mx"}}}, "routes.mx: the name \"mx\" is reserved"},
		{"bad type", Config{Routes: map[string]Route{"b": {Type: "uucp"}}}, "routes.b.type"},
		{"no type", Config{Routes: map[string]Route{"b": {}}}, "routes.b.type: missing"},
		{"bad address", Config{Routes: map[string]Route{"b": {Type: "smtp", Address: "10.0.0.5"}}}, "routes.b.address"},
		{"no address", Config{Routes: map[string]Route{"b": {Type: "lmtp"}}}, "routes.b.address: missing"},
		{"unix smtp", Config{Routes: map[string]Route{"b": {Type: "smtp", Address: "unix:/x"}}}, "routes.b.address"},
		{"unix lmtp", Config{Routes: map[string]Route{"b": {Type: "lmtp", Address: "unix:/x"}}}, ""},
		{"mx with address", Config{Routes: map[string]Route{"b": {Type: "mx", Address: "a:25"}}}, "routes.b.address"},
		{"bad tls", Config{Routes: map[string]Route{"b": {Type: "smtp", Address: "a:25", TLS: "yes"}}}, "routes.b.tls"},
		{"auth in clear", Config{Routes: map[string]Route{"b": {Type: "smtp", Address: "a:25", Username: "u", PasswordFile: pw}}}, "routes.b.tls: must be required"},
		{"auth no file", Config{Routes: map[string]Route{"b": {Type: "smtp", Address: "a:25", TLS: "required", Username: "u"}}}, "routes.b.username"},
		{"unreadable pw", Config{Routes: map[string]Route{"b": {Type: "smtp", Address: "a:25", TLS: "required", Username: "u", PasswordFile: filepath.Join(dir, "missing")}}}, "routes.b.password_file"},
		{"verify list", Config{Routes: map[string]Route{"b": {Type: "smtp", Address: "a:25", VerifyRecipients: "list"}}}, "routes.b.recipients_file"},
		{"verify bad", Config{Routes: map[string]Route{"b": {Type: "smtp", Address: "a:25", VerifyRecipients: "ldap"}}}, "routes.b.verify_recipients"},
		{"bad local", Config{LocalDomains: []string{"exa mple.org"}}, "domains.local[0]"},
		{"dup", Config{LocalDomains: []string{"example.org"}, RelayDomains: map[string]string{"EXAMPLE.org": "mx"}}, "also domains.local[0]"},
	}
	for _, tt := range tests {
		err := tt.c.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestTLSMode(t *testing.T) {
	if m := (Route{Type: TypeLMTP}).TLSMode(); m != TLSNone {
		t.Errorf("lmtp default %q", m)
	}
	if m := (Route{Type: TypeSMTP}).TLSMode(); m != TLSOpportunistic {
		t.Errorf("smtp default %q", m)
	}
}

func FuzzDomain(f *testing.F) {
	for _, s := range []string{"user@example.org", `"a@b"@c.example`, "@a:b@c", "u@[1.2.3.4]", "u@bücher.example", "<u@x.>", "a%b@c", `"\"@x`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		local, d, err := Split(addr)
		if err != nil {
			return
		}
		if d == "" || local == "" {
			t.Fatalf("Split(%q) = %q, %q with no error", addr, local, d)
		}
		if strings.ContainsAny(d, "@[] \r\n") || d != strings.ToLower(d) {
			t.Fatalf("Split(%q): domain %q not normalized", addr, d)
		}
		// The domain is stable under normalization.
		if d2, err := NormalizeDomain(d); err != nil || d2 != d {
			t.Fatalf("NormalizeDomain(%q) = %q, %v", d, d2, err)
		}
		if !strings.HasPrefix(local, `"`) && strings.Contains(local, "@") {
			t.Fatalf("Split(%q): local %q has @", addr, local)
		}
	})
}
