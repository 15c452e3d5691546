package dnsres

import (
	"context"
	"testing"

	"moat/internal/dnstest"
)

// TestSpecialCharacterNames: a label may hold any octet (RFC 2181 §11).
// miekg/dns writes ' ( ) ; @ " \ and space escaped in the names it
// unpacks, so the question a server echoes and the owner names of its
// records are in that escaped form; the client must compare names as DNS
// does (octets of the wire form, ASCII case-insensitive, RFC 4343 §3), not
// as strings. The SPF case: exists:%{l}._spf.example.org for o'brien@.
func TestSpecialCharacterNames(t *testing.T) {
	srv := dnstest.NewServer(t)
	srv.Add(
		`o\'brien._spf.example.org. 300 IN A 127.0.0.2`,
		`a\(b\)c\;d\@e.example.org. 300 IN TXT "v=spf1 -all"`,
		`with\ space.example.org. 300 IN CNAME Target\'s.example.org.`,
		`target\'s.example.org. 300 IN A 192.0.2.7`,
		`esc\\back.example.org. 300 IN A 192.0.2.8`,
	)
	c := ForTest(srv.Addr())
	ctx := context.Background()

	for _, name := range []string{"o'brien._spf.example.org", `o\'brien._spf.example.org`, "O'Brien._spf.Example.ORG."} {
		ips, err := c.LookupIPAddr(ctx, name)
		if err != nil || len(ips) != 1 || ips[0].IP.String() != "127.0.0.2" {
			t.Errorf("LookupIPAddr(%q) = %v, %v", name, ips, err)
		}
	}
	if txt, err := c.LookupTXT(ctx, "a(b)c;d@e.example.org"); err != nil || len(txt) != 1 {
		t.Errorf("LookupTXT with ( ) ; @ = %v, %v", txt, err)
	}
	ips, err := c.LookupIPAddr(ctx, "with space.example.org")
	if err != nil || len(ips) != 1 || ips[0].IP.String() != "192.0.2.7" {
		t.Errorf("CNAME from a name with a space to one with ': %v, %v", ips, err)
	}
	ips, err = c.LookupIPAddr(ctx, `esc\092back.example.org`)
	if err != nil || len(ips) != 1 {
		t.Errorf("escaped backslash: %v, %v", ips, err)
	}
	if _, err := c.LookupIPAddr(ctx, "nobody's.example.org"); kindOfErr(err) != "nxdomain" {
		t.Errorf("missing name with ': %v (%s), want NXDOMAIN", err, kindOfErr(err))
	}
}

// TestPresentationName pins the comparison form.
func TestPresentationName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Example.ORG", "Example.ORG."},
		{"o'brien.example.", `o\'brien.example.`},
		{`o\'brien.example.`, `o\'brien.example.`},
		{`a\065b.example.`, "aAb.example."}, {`esc\092back.x`, `esc\\back.x.`},
		{"with space.x", `with\ space.x.`},
		{"a(b);c@d.x.", `a\(b\)\;c\@d.x.`},
	} {
		got, ok := presentationName(tc.in)
		if !ok || got != tc.want {
			t.Errorf("presentationName(%q) = %q, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
	if _, ok := presentationName("a..b"); ok {
		t.Error("empty label accepted")
	}
}

// TestTXTOctets: TXT strings come back as the octets the server sent,
// not in miekg/dns's escaped presentation form.
func TestTXTOctets(t *testing.T) {
	srv := dnstest.NewServer(t)
	srv.Add(`t.example.org. 300 IN TXT "v=spf1 a:\239\187\191x.example.net" " q\"b\\s -all"`)
	c := ForTest(srv.Addr())
	txt, err := c.LookupTXT(context.Background(), "t.example.org")
	want := "v=spf1 a:\xef\xbb\xbfx.example.net q\"b\\s -all"
	if err != nil || len(txt) != 1 || txt[0] != want {
		t.Fatalf("LookupTXT = %q, %v; want %q", txt, err, want)
	}
	for in, want := range map[string]string{`a\\b`: `a\b`, `\"`: `"`, `\255\000`: "\xff\x00", `x\`: `x\`, `\999`: "999"} {
		if got := txtOctets(in); got != want {
			t.Errorf("txtOctets(%q) = %q, want %q", in, got, want)
		}
	}
}
