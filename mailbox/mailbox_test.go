package mailbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"moat/internal/reply"
	"moat/mailbox/maildir"
)

func testConfig(root string) Config {
	return Config{
		Root: root,
		Users: map[string]UserConfig{
			"alice@example.org":  {},
			"bob@example.org":    {Quota: "1K"},
			"carol@example.org":  {},
			"zed@example.net":    {},
			"dave@other.example": {},
		},
		Aliases: map[string]any{
			"team@example.org":       []any{"alice@example.org", "Bob@Example.org"},
			"all@example.org":        []any{"team@example.org", "carol@example.org", "alice@example.org"},
			"nested@example.org":     "all@example.org",
			"ext@example.org":        []string{"friend@Remote.Example", "alice@example.org"},
			"Sales@Example.ORG":      "bob+sales@example.org",
			"carol@example.org":      []any{"carol@example.org", "archive@remote.example"},
			"postmaster@example.net": "zed@example.net",
		},
		CatchAll: map[string]string{"catch.example": "alice@example.org"},
	}
}

var localDomains = []string{"example.org", "Example.NET", "catch.example", "other.example", "empty.example"}

func TestLookups(t *testing.T) {
	d, err := New(testConfig(t.TempDir()), localDomains)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr   string
		exists bool
		expand []string
		err    int // reply code when Expand fails
	}{
		{addr: "alice@example.org", exists: true, expand: []string{"alice@example.org"}},
		{addr: "ALICE@EXAMPLE.ORG", exists: true, expand: []string{"alice@example.org"}},
		{addr: "alice@example.org.", exists: true, expand: []string{"alice@example.org"}},
		{addr: "alice+news@example.org", exists: true, expand: []string{"alice@example.org"}},
		{addr: "alice+a+b@example.org", exists: true, expand: []string{"alice@example.org"}},
		{addr: "+alice@example.org", exists: false, err: 550},
		{addr: "nobody@example.org", exists: false, err: 550},
		{addr: "nobody+alice@example.org", exists: false, err: 550},
		{addr: "team@example.org", exists: true, expand: []string{"alice@example.org", "bob@example.org"}},
		{addr: "team+x@example.org", exists: true, expand: []string{"alice@example.org", "bob@example.org"}},
		{addr: "all@example.org", exists: true, expand: []string{"alice@example.org", "bob@example.org", "carol@example.org", "archive@remote.example"}},
		{addr: "nested@example.org", exists: true, expand: []string{"alice@example.org", "bob@example.org", "carol@example.org", "archive@remote.example"}},
		{addr: "ext@example.org", exists: true, expand: []string{"friend@remote.example", "alice@example.org"}},
		{addr: "sales@example.org", exists: true, expand: []string{"bob@example.org"}},
		// An alias that names itself means the user of that name.
		{addr: "carol@example.org", exists: true, expand: []string{"carol@example.org", "archive@remote.example"}},
		// postmaster: an alias, else the domain's first user, else the
		// catch-all, else the first user of all.
		{addr: "postmaster@example.net", exists: true, expand: []string{"zed@example.net"}},
		{addr: "PostMaster@example.org", exists: true, expand: []string{"alice@example.org"}},
		{addr: "postmaster@catch.example", exists: true, expand: []string{"alice@example.org"}},
		{addr: "postmaster@empty.example", exists: true, expand: []string{"alice@example.org"}},
		{addr: "postmaster", exists: true, expand: []string{"alice@example.org"}},
		{addr: "POSTMASTER", exists: true, expand: []string{"alice@example.org"}},
		{addr: "postmaster@remote.example", exists: false, expand: []string{"postmaster@remote.example"}},
		// Catch-all.
		{addr: "anything@catch.example", exists: true, expand: []string{"alice@example.org"}},
		{addr: "Any+Thing@CATCH.example", exists: true, expand: []string{"alice@example.org"}},
		{addr: "x@empty.example", exists: false, err: 550},
		// Remote addresses are not local recipients; Expand passes them on.
		{addr: "Someone@Remote.Example", exists: false, expand: []string{"Someone@remote.example"}},
		{addr: "../x@example.org", exists: false, err: 501},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			if got := d.Exists(tc.addr); got != tc.exists {
				t.Errorf("Exists = %v, want %v", got, tc.exists)
			}
			got, err := d.Expand(tc.addr)
			if tc.err != 0 {
				var r *reply.Reply
				if !errors.As(err, &r) || r.Code != tc.err {
					t.Fatalf("Expand = %v, %v; want reply %d", got, err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.expand) {
				t.Errorf("Expand = %v, %v; want %v", got, err, tc.expand)
			}
		})
	}
	if !d.IsLocalDomain("EXAMPLE.net.") || d.IsLocalDomain("remote.example") {
		t.Error("IsLocalDomain")
	}
}

func TestSubaddressOff(t *testing.T) {
	cfg := testConfig(t.TempDir())
	off := ""
	cfg.RecipientDelimiter = &off
	cfg.Users["x+y@example.org"] = UserConfig{}
	cfg.Aliases["Sales@Example.ORG"] = "bob@example.org"
	d, err := New(cfg, localDomains)
	if err != nil {
		t.Fatal(err)
	}
	if d.Exists("alice+news@example.org") {
		t.Error("subaddress resolved with the delimiter off")
	}
	if !d.Exists("x+y@example.org") {
		t.Error("a user with '+' in its name is unknown")
	}
	multi := "+-"
	cfg.RecipientDelimiter = &multi
	d, err = New(cfg, localDomains)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"alice-x@example.org", "alice+x@example.org", "x+y@example.org"} {
		if !d.Exists(a) {
			t.Errorf("%s unknown with delimiters %q", a, multi)
		}
	}
}

func TestAliasLoops(t *testing.T) {
	tests := []struct {
		name    string
		aliases map[string]any
		want    string
	}{
		{"two", map[string]any{"a@example.org": "b@example.org", "b@example.org": "a@example.org"},
			"mailboxes.aliases.a@example.org: alias loop"},
		{"self without user", map[string]any{"a@example.org": []any{"a@example.org"}},
			"mailboxes.aliases.a@example.org: alias a@example.org names itself but is no user"},
		{"deep", func() map[string]any {
			m := map[string]any{}
			for i := 0; i < 12; i++ {
				m[string(rune('a'+i))+"@example.org"] = string(rune('a'+i+1)) + "@example.org"
			}
			m["m@example.org"] = "alice@example.org"
			return m
		}(), "mailboxes.aliases.a@example.org: l@example.org: more than 10 alias hops"},
		{"unknown target", map[string]any{"a@example.org": "nobody@example.org"},
			"mailboxes.aliases.a@example.org: nobody@example.org: no such user"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Root: "/x", Users: map[string]UserConfig{"alice@example.org": {}}, Aliases: tc.aliases}
			err := cfg.Validate([]string{"example.org"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	// A catch-all pointing at an unknown address of its own domain.
	cfg := Config{Root: "/x", Users: map[string]UserConfig{"alice@example.org": {}},
		CatchAll: map[string]string{"example.net": "nobody@example.net"}}
	err := cfg.Validate([]string{"example.org", "example.net"})
	if err == nil || !strings.Contains(err.Error(), "mailboxes.catch_all.example.net: catch-all loop") {
		t.Fatalf("catch-all loop: %v", err)
	}
}

func TestValidateErrors(t *testing.T) {
	dir := t.TempDir()
	uf := filepath.Join(dir, "users")
	os.WriteFile(uf, []byte("alice@example.org:\nbad line:x:y:z\n"), 0o600)
	uf2 := filepath.Join(dir, "users2")
	os.WriteFile(uf2, []byte("# c\nalice@example.org:\nx@remote.example:\n"), 0o600)
	bad := "?"
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"root", Config{}, "mailboxes.root: must be set"},
		{"quota", Config{Root: "/x", Quota: "lots"}, "mailboxes.quota: size"},
		{"delimiter", Config{Root: "/x", RecipientDelimiter: new(string)}, ""},
		{"delimiter bad", Config{Root: "/x", RecipientDelimiter: func() *string { s := "."; return &s }()}, "mailboxes.recipient_delimiter:"},
		{"delimiter ok", Config{Root: "/x", RecipientDelimiter: &bad}, ""},
		{"user domain", Config{Root: "/x", Users: map[string]UserConfig{"a@remote.example": {}}},
			"mailboxes.users.a@remote.example: domain remote.example is not in domains.local"},
		{"user syntax", Config{Root: "/x", Users: map[string]UserConfig{"a/b@example.org": {}}},
			"mailboxes.users.a/b@example.org: local part has a character"},
		{"user twice", Config{Root: "/x", Users: map[string]UserConfig{"a@example.org": {}, "A@example.org": {}}},
			"defined twice"},
		{"user hash", Config{Root: "/x", Users: map[string]UserConfig{"a@example.org": {PasswordHash: "plain"}}},
			"mailboxes.users.a@example.org.password_hash: password hash is neither"},
		{"user quota", Config{Root: "/x", Users: map[string]UserConfig{"a@example.org": {Quota: "-1"}}},
			"mailboxes.users.a@example.org.quota:"},
		{"alias domain", Config{Root: "/x", Aliases: map[string]any{"team@remote.example": "a@example.org"}},
			"mailboxes.aliases.team@remote.example: domain remote.example is not in domains.local"},
		{"alias type", Config{Root: "/x", Aliases: map[string]any{"team@example.org": 5}},
			"mailboxes.aliases.team@example.org: want an address or a list of addresses, got int"},
		{"alias split key", Config{Root: "/x", Aliases: map[string]any{"team@example": map[string]any{"org": "x"}}},
			"split at '.'"},
		{"alias list item", Config{Root: "/x", Aliases: map[string]any{"team@example.org": []any{"a@example.org", 3}}},
			"mailboxes.aliases.team@example.org: item 1"},
		{"alias empty", Config{Root: "/x", Aliases: map[string]any{"team@example.org": []any{}}},
			"mailboxes.aliases.team@example.org: no target"},
		{"alias target", Config{Root: "/x", Aliases: map[string]any{"team@example.org": "not an address"}},
			`mailboxes.aliases.team@example.org: target "not an address"`},
		{"catch-all domain", Config{Root: "/x", CatchAll: map[string]string{"remote.example": "a@example.org"}},
			"mailboxes.catch_all.remote.example: domain is not in domains.local"},
		{"catch-all target", Config{Root: "/x", CatchAll: map[string]string{"example.org": "bad"}},
			`mailboxes.catch_all.example.org: target "bad"`},
		{"users file missing", Config{Root: "/x", UsersFile: filepath.Join(dir, "nope")},
			"mailboxes.users_file: open"},
		{"users file line", Config{Root: "/x", UsersFile: uf},
			"mailboxes.users_file: " + uf + ":2: want \"address:hash[:quota]\""},
		{"users file domain", Config{Root: "/x", UsersFile: uf2},
			"mailboxes.users_file: " + uf2 + ":3: x@remote.example: domain remote.example"},
		{"users file and map", Config{Root: "/x", UsersFile: uf2, Users: map[string]UserConfig{"Alice@example.org": {}}},
			uf2 + ":2: alice@example.org is also in mailboxes.users"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate([]string{"example.org"})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	cfg := Config{Root: "/x"}
	if err := cfg.Validate([]string{"exa mple.org"}); err == nil || !strings.Contains(err.Error(), "domains.local[0]") {
		t.Errorf("bad local domain: %v", err)
	}
}

func TestSetDefaults(t *testing.T) {
	var c Config
	c.SetDefaults("/data")
	if c.Root != filepath.Join("/data", "mailboxes") || c.RecipientDelimiter == nil || *c.RecipientDelimiter != "+" {
		t.Errorf("defaults: %+v", c)
	}
	off := ""
	c = Config{Root: "/r", RecipientDelimiter: &off}
	c.SetDefaults("/data")
	if c.Root != "/r" || *c.RecipientDelimiter != "" {
		t.Errorf("defaults overrode settings: %+v", c)
	}
}

func TestParseSize(t *testing.T) {
	tests := map[string]int64{
		"": 0, "0": 0, "100": 100, "1K": 1024, "1k": 1024, "2M": 2 << 20, "1G": 1 << 30, "1GB": 1 << 30,
		"1GiB": 1 << 30, "3T": 3 << 40, " 5 M ": 5 << 20, "10B": 10,
	}
	for in, want := range tests {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"-1", "1X", "G", "1.5G", "99999999999T", "abc"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func TestDeliver(t *testing.T) {
	root := t.TempDir()
	cfg := testConfig(root)
	d, err := New(cfg, localDomains)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	msg := "Subject: hi\r\n\r\nhello\r\n"
	for _, rcpt := range []string{"alice@example.org", "Alice+News@Example.org", "ALICE@example.org."} {
		if err := d.Deliver(ctx, rcpt, strings.NewReader(msg)); err != nil {
			t.Fatalf("Deliver(%s): %v", rcpt, err)
		}
	}
	newDir := filepath.Join(root, "example.org", "alice", "new")
	ents, err := os.ReadDir(newDir)
	if err != nil || len(ents) != 3 {
		t.Fatalf("new/ = %v, %v; want 3 files", ents, err)
	}
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(newDir, e.Name()))
		if string(b) != msg {
			t.Errorf("%s: %q", e.Name(), b)
		}
	}

	// Unknown users and aliases are permanent failures.
	for _, rcpt := range []string{"nobody@example.org", "team@example.org", "x@remote.example", "anything@catch.example"} {
		err := d.Deliver(ctx, rcpt, strings.NewReader(msg))
		var r *reply.Reply
		if !errors.As(err, &r) || r.Code != 550 || r.Enhanced != (reply.Enhanced{5, 1, 1}) {
			t.Errorf("Deliver(%s) = %v, want 550 5.1.1", rcpt, err)
		}
	}

	// bob has a 1 KiB quota: a temporary 452 4.2.2.
	big := strings.Repeat("x", 2000)
	err = d.Deliver(ctx, "bob@example.org", strings.NewReader(big))
	var r *reply.Reply
	if !errors.As(err, &r) || r.Code != 452 || !errors.Is(err, maildir.ErrQuotaExceeded) {
		t.Errorf("over quota: %v", err)
	}

	// A cancelled context stops the delivery and leaves nothing.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.Deliver(cctx, "carol@example.org", strings.NewReader(msg)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	cr := &cancelReader{cancel: nil}
	cctx, cancel = context.WithCancel(ctx)
	cr.cancel = cancel
	if err := d.Deliver(cctx, "carol@example.org", cr); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled during copy: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "example.org", "carol", "new")); len(ents) != 0 {
		t.Errorf("cancelled delivery left %v", ents)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "example.org", "carol", "tmp")); len(ents) != 0 {
		t.Errorf("cancelled delivery left %v in tmp", ents)
	}
}

// cancelReader returns some data, then cancels its context.
type cancelReader struct {
	cancel func()
	n      int
}

func (c *cancelReader) Read(p []byte) (int, error) {
	c.n++
	if c.n > 1 {
		c.cancel()
	}
	p[0] = 'x'
	return 1, nil
}

func TestSendAs(t *testing.T) {
	d, err := New(testConfig(t.TempDir()), localDomains)
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string][]string{
		"alice@example.org":  {"alice@example.org", "all@example.org", "ext@example.org", "nested@example.org", "team@example.org"},
		"Bob@Example.org":    {"bob@example.org", "all@example.org", "nested@example.org", "sales@example.org", "team@example.org"},
		"carol@example.org":  {"carol@example.org", "all@example.org", "nested@example.org"},
		"zed@example.net":    {"zed@example.net", "postmaster@example.net"},
		"dave@other.example": {"dave@other.example"},
		"nobody@example.org": nil,
		"team@example.org":   nil,
		"bad":                nil,
	}
	for u, want := range tests {
		if got := d.SendAs(u); !slices.Equal(got, want) {
			t.Errorf("SendAs(%s) = %v, want %v", u, got, want)
		}
	}
}

func BenchmarkDirectoryDeliver2K(b *testing.B) {
	d, err := New(Config{Root: b.TempDir(), Users: map[string]UserConfig{"alice@example.org": {}}}, []string{"example.org"})
	if err != nil {
		b.Fatal(err)
	}
	msg := strings.Repeat("a 2 KB message line of text, 32\n", 64)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := d.Deliver(context.Background(), "alice@example.org", strings.NewReader(msg)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExpand(b *testing.B) {
	d, err := New(testConfig(b.TempDir()), localDomains)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := d.Expand("nested@example.org"); err != nil {
			b.Fatal(err)
		}
	}
}

// RFC 5321 §4.4: final delivery puts Return-Path, with the reverse-path
// as given (<> for the null one), on top of the message.
func TestDeliverFinalAddsReturnPath(t *testing.T) {
	root := t.TempDir()
	d, err := New(testConfig(root), localDomains)
	if err != nil {
		t.Fatal(err)
	}
	msg := "Subject: hi\r\n\r\nhello\r\n"
	for _, sender := range []string{"sender@far.example", ""} {
		if err := d.DeliverFinal(context.Background(), sender, "alice@example.org", strings.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.DeliverFinal(context.Background(), "a@b\r\nX-Evil: 1", "alice@example.org", strings.NewReader(msg)); err == nil {
		t.Error("a reverse-path with a line break was delivered")
	}
	newDir := filepath.Join(root, "example.org", "alice", "new")
	ents, err := os.ReadDir(newDir)
	if err != nil || len(ents) != 2 {
		t.Fatalf("new/ = %v, %v; want 2 files", ents, err)
	}
	got := map[string]bool{}
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(newDir, e.Name()))
		got[string(b)] = true
	}
	for _, want := range []string{"Return-Path: <sender@far.example>\r\n" + msg, "Return-Path: <>\r\n" + msg} {
		if !got[want] {
			t.Errorf("no delivered file reads %q; got %v", want, got)
		}
	}
}
