package srs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// day20000 is 2024-10-04, day 20000 since the epoch: stamp "RA"
// (20000 mod 1024 = 544 = 17·32 + 0).
var day20000 = time.Unix(20000*86400+3600, 0)

func newAt(t *testing.T, now time.Time, secrets ...string) *Rewriter {
	t.Helper()
	r, err := New(Options{Domain: "Fwd.Example.", Secrets: secrets, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The expected values were computed outside Go (python3 hmac/base64)
// from the libsrs2 definition: HMAC-SHA1 over the lower-cased stamp,
// domain and local part, base64, first 4 characters.
func TestForwardVectors(t *testing.T) {
	r := newAt(t, day20000, "tops3cret")
	for _, c := range []struct{ in, want string }{
		{"alice@example.com", "SRS0=pvKO=RA=example.com=alice@fwd.example"},
		{"", ""}, // <> is never rewritten
		{"someone@FWD.example", "someone@FWD.example"},
		{"SRS0=HHHH=TT=d.example=bob@fwd2.example", "SRS1=" + hash([]byte("tops3cret"), "fwd2.example", "=HHHH=TT=d.example=bob") + "=fwd2.example==HHHH=TT=d.example=bob@fwd.example"},
		{"SRS1=XXXX=fwd.example==HHHH=TT=d.example=bob@fwd3.example", "SRS1=POOP=fwd.example==HHHH=TT=d.example=bob@fwd.example"},
	} {
		got, err := r.Forward(c.in)
		if err != nil || got != c.want {
			t.Errorf("Forward(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	if _, err := r.Forward("no-at-sign"); err == nil {
		t.Error("Forward of an address without domain: no error")
	}
}

func TestRoundTrip(t *testing.T) {
	r := newAt(t, day20000, "new", "old")
	for _, s := range []string{"alice@example.com", "a=b=c@example.com", "Mixed.Case@Example.COM", "x+tag@sub.example.org"} {
		f, err := r.Forward(s)
		if err != nil {
			t.Fatal(err)
		}
		back, err := r.Reverse(f)
		if err != nil || back != s {
			t.Errorf("Reverse(Forward(%q)) = %q, %v", s, back, err)
		}
		// Case folded on the way (some MTAs do): still reverses.
		if back, err := r.Reverse(strings.ToLower(f)); err != nil || !strings.EqualFold(back, s) {
			t.Errorf("Reverse(lower(%q)) = %q, %v", f, back, err)
		}
	}
	// SRS1 reverses to the SRS0 address at the first forwarder.
	f, _ := r.Forward("SRS0=HHHH=TT=d.example=bob@fwd2.example")
	back, err := r.Reverse(f)
	if err != nil || back != "SRS0=HHHH=TT=d.example=bob@fwd2.example" {
		t.Errorf("SRS1 reverse: %q, %v", back, err)
	}
}

func TestRotation(t *testing.T) {
	old := newAt(t, day20000, "old")
	f, _ := old.Forward("alice@example.com")
	rotated := newAt(t, day20000, "new", "old")
	if _, err := rotated.Reverse(f); err != nil {
		t.Errorf("an address signed with the old secret no longer reverses: %v", err)
	}
	dropped := newAt(t, day20000, "new")
	if _, err := dropped.Reverse(f); !errors.Is(err, ErrBadHash) {
		t.Errorf("old secret dropped: %v, want ErrBadHash", err)
	}
	g, _ := rotated.Forward("alice@example.com")
	if g == f {
		t.Error("rotated rewriter still signs with the old secret")
	}
}

func TestReverseRefuses(t *testing.T) {
	r := newAt(t, day20000, "tops3cret")
	good, _ := r.Forward("alice@example.com") // SRS0=pvKO=RA=example.com=alice@fwd.example
	cases := []struct {
		addr string
		want error
	}{
		{"alice@fwd.example", ErrNotSRS},
		{"SRS0=pvKO=RA=example.com=alice@other.example", ErrNotSRS},
		{"SRS0=pvKP=RA=example.com=alice@fwd.example", ErrBadHash},
		{"SRS0=pvKO=RA=example.com=mallory@fwd.example", ErrBadHash},
		{"SRS0=pvKO=RA=example.net=alice@fwd.example", ErrBadHash},
		{"SRS0=pvK=RA=example.com=alice@fwd.example", ErrBadHash},
		{"SRS0=pvKO=RA=example.com@fwd.example", ErrMalformed},
		{"SRS0=pvKO=RA==alice@fwd.example", ErrMalformed},
		{"SRS1=AAAA=fwd2.example@fwd.example", ErrMalformed},
		{"SRS1=AAAA==HHHH=TT=d=l@fwd.example", ErrMalformed},
		{"SRS1=AAAA=fwd2.example==HHHH=TT=d.example=bob@fwd.example", ErrBadHash},
		{"SRS0@fwd.example", ErrNotSRS},
		{strings.Repeat("a", MaxAddress) + "@fwd.example", ErrMalformed},
	}
	for _, c := range cases {
		if _, err := r.Reverse(c.addr); !errors.Is(err, c.want) {
			t.Errorf("Reverse(%q) = %v, want %v", c.addr, err, c.want)
		}
	}
	if _, err := r.Reverse(good); err != nil {
		t.Errorf("Reverse(%q): %v", good, err)
	}
}

func TestAge(t *testing.T) {
	signer := newAt(t, day20000, "s")
	f, _ := signer.Forward("alice@example.com")
	for _, c := range []struct {
		days int
		ok   bool
	}{{0, true}, {1, true}, {21, true}, {22, false}, {500, false}, {-1, false}, {1024, true}} {
		v := newAt(t, day20000.Add(time.Duration(c.days)*day), "s")
		_, err := v.Reverse(f)
		if c.ok && err != nil || !c.ok && !errors.Is(err, ErrExpired) {
			t.Errorf("%d days later: %v, want ok=%v", c.days, err, c.ok)
		}
	}
	// A stamp with a character outside the alphabet.
	if _, err := signer.Reverse("SRS0=" + hash([]byte("s"), "R1", "example.com", "alice") + "=R1=example.com=alice@fwd.example"); !errors.Is(err, ErrMalformed) {
		t.Errorf("bad stamp character: %v", err)
	}
}

func TestConfig(t *testing.T) {
	dir := t.TempDir()
	sf := filepath.Join(dir, "srs.secrets")
	os.WriteFile(sf, []byte("# rotate: add a line on top\nnew-secret\n\nold-secret\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("# nothing\n"), 0o600)
	for _, c := range []struct {
		cfg  Config
		want string // substring of the error; "" = valid
	}{
		{Config{}, ""},
		{Config{Domain: "srs.example.org", SecretFile: sf}, ""},
		{Config{SecretFile: sf}, "srs.domain: required"},
		{Config{Domain: "srs.example.org"}, "srs.secret_file: required"},
		{Config{Domain: "localhost", SecretFile: sf}, "srs.domain"},
		{Config{Domain: "a@b.example", SecretFile: sf}, "srs.domain"},
		{Config{Domain: "srs.example.org", SecretFile: empty}, "srs.secret_file: "},
		{Config{Domain: "srs.example.org", SecretFile: filepath.Join(dir, "missing")}, "srs.secret_file: "},
		{Config{Domain: "srs.example.org", SecretFile: sf, MaxAge: 2000 * day}, "srs.max_age"},
	} {
		err := c.cfg.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
	r, err := NewFromConfig(Config{Domain: "srs.example.org", SecretFile: sf})
	if err != nil || r == nil || len(r.secrets) != 2 || string(r.secrets[0]) != "new-secret" {
		t.Fatalf("NewFromConfig: %v %+v", err, r)
	}
	if r, err := NewFromConfig(Config{}); r != nil || err != nil {
		t.Errorf("off: %v %v", r, err)
	}
}

func FuzzReverse(f *testing.F) {
	r, _ := New(Options{Domain: "fwd.example", Secrets: []string{"s"}, Now: func() time.Time { return day20000 }})
	good, _ := r.Forward("alice@example.com")
	g1, _ := r.Forward("SRS0=HHHH=TT=d.example=bob@fwd2.example")
	for _, s := range []string{good, g1, "SRS0=@fwd.example", "SRS1===@fwd.example", "srs0-a-b-c-d@fwd.example", "", "@", "SRS0=pvKO=RA=example.com=alice"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		back, err := r.Reverse(addr)
		if err == nil {
			// Only addresses we could have made reverse: forwarding the
			// result again at the same moment gives back a valid address.
			if back == "" || !strings.Contains(back, "@") {
				t.Fatalf("Reverse(%q) = %q without error", addr, back)
			}
		}
		if fw, err := r.Forward(addr); err == nil && addr != "" && fw == "" {
			t.Fatalf("Forward(%q) empty", addr)
		}
	})
}
