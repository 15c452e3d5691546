package authres

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"moat/policy"
)

func TestHeaderRoundTrip(t *testing.T) {
	res := Results{
		SPF: &policy.SPF{Result: policy.ResultPass, Domain: "example.org", Identity: "mailfrom", Reason: "matched ip4 (x)"},
		DKIM: &policy.DKIM{Result: policy.ResultPass, Signatures: []policy.DKIMSignature{
			{Result: policy.ResultPass, Domain: "example.org", Selector: "s1", Algorithm: "rsa-sha256", Identity: "@example.org"},
			{Result: policy.ResultFail, Domain: "other.net", Selector: "sel", Algorithm: "ed25519-sha256", Reason: "body hash did not verify"},
		}},
		DMARC:    &policy.DMARC{Result: policy.ResultPass, Domain: "example.org", Policy: "reject"},
		IPRev:    &policy.IPRev{Result: policy.ResultPass, Names: []string{"mail.example.org"}},
		ClientIP: netip.MustParseAddr("192.0.2.1"),
	}
	h := Header("mx.example.com", res)
	if !strings.HasPrefix(h, "Authentication-Results: mx.example.com;\r\n\t") || !strings.HasSuffix(h, "\r\n") {
		t.Fatalf("bad header %q", h)
	}
	for _, line := range strings.Split(strings.TrimSuffix(h, "\r\n"), "\r\n") {
		if len(line) > 998 {
			t.Fatalf("line too long")
		}
	}
	if strings.Contains(strings.ReplaceAll(h, "\r\n", ""), "\n") {
		t.Fatalf("bare LF in %q", h)
	}
	value := strings.TrimPrefix(h, "Authentication-Results:")
	id, results, err := Parse(value)
	if err != nil {
		t.Fatalf("Parse(%q): %v", value, err)
	}
	if id != "mx.example.com" || len(results) != 5 {
		t.Fatalf("id=%q results=%+v", id, results)
	}
	want := []Result{
		{Method: "iprev", Value: "pass", Props: map[string]string{"policy.iprev": "192.0.2.1"}},
		{Method: "spf", Value: "pass", Props: map[string]string{"smtp.mailfrom": "example.org"}},
		{Method: "dkim", Value: "pass", Props: map[string]string{"header.d": "example.org", "header.s": "s1", "header.a": "rsa-sha256", "header.i": "@example.org"}},
		{Method: "dkim", Value: "fail", Props: map[string]string{"header.d": "other.net", "header.s": "sel", "header.a": "ed25519-sha256"}},
		{Method: "dmarc", Value: "pass", Props: map[string]string{"header.from": "example.org", "policy.dmarc": "reject"}},
	}
	if !reflect.DeepEqual(results, want) {
		t.Fatalf("got %+v\nwant %+v", results, want)
	}
	if got := Header("mx", Results{}); got != "Authentication-Results: mx; none\r\n" {
		t.Fatalf("empty: %q", got)
	}
	helo := Header("mx", Results{SPF: &policy.SPF{Result: policy.ResultNone, Domain: "h.example", Identity: "helo"}})
	if !strings.Contains(helo, "spf=none smtp.helo=h.example") {
		t.Fatalf("helo: %q", helo)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		id      string
		n       int
		wantErr bool
	}{
		{"example.com; none", "example.com", 0, false},
		{" example.com 1; spf=pass smtp.mailfrom=a@b.example", "example.com", 1, false},
		{"(c) \"quoted id\" ; dkim/1 = pass (ok (nested)) reason=\"good sig\" header.d=x.org header.b=ab+/cd=", "quoted id", 1, false},
		{"mx.example.org;\r\n\tspf=fail smtp.mailfrom=x.org;\r\n\tdmarc=fail header.from=x.org;", "mx.example.org", 2, false},
		{"", "", 0, true},
		{"id; spf", "id", 0, true},
		{"id; spf=pass foo=bar", "id", 0, true},
		{"id (unterminated", "id", 0, true},
		{"id; =pass", "id", 0, true},
		{"id x; spf=pass", "id", 0, true},
	}
	for _, tt := range tests {
		id, res, err := Parse(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("Parse(%q) err=%v", tt.in, err)
			continue
		}
		if !tt.wantErr && (id != tt.id || len(res) != tt.n) {
			t.Errorf("Parse(%q) = %q, %+v", tt.in, id, res)
		}
	}
	_, res, _ := Parse("(c) \"quoted id\" ; dkim/1 = pass (ok (nested)) reason=\"good sig\" header.d=x.org header.b=ab+/cd=")
	if r := res[0]; r.Method != "dkim" || r.Version != "1" || r.Reason != "good sig" || r.Props["header.b"] != "ab+/cd=" {
		t.Errorf("got %+v", r)
	}
}

func TestStripOwn(t *testing.T) {
	in := "Received: from a\r\n\tby b\r\n" +
		"Authentication-Results: MX.Example.COM; spf=pass smtp.mailfrom=evil\r\n" +
		"authentication-results :\r\n mx.example.com;\r\n dkim=pass header.d=evil\r\n" +
		"Authentication-Results: other.example; spf=fail smtp.mailfrom=x\r\n" +
		"Authentication-Results: (bad\r\n" +
		"Authentication-Results: mx.example.com.evil; none\r\n" +
		"Subject: Authentication-Results: mx.example.com; none\r\n" +
		"\r\n"
	want := "Received: from a\r\n\tby b\r\n" +
		"Authentication-Results: other.example; spf=fail smtp.mailfrom=x\r\n" +
		"Authentication-Results: mx.example.com.evil; none\r\n" +
		"Subject: Authentication-Results: mx.example.com; none\r\n" +
		"\r\n"
	if got := string(StripOwn([]byte(in), "mx.example.com")); got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
	lf := strings.ReplaceAll(in, "\r\n", "\n")
	if got := string(StripOwn([]byte(lf), "mx.example.com")); got != strings.ReplaceAll(want, "\r\n", "\n") {
		t.Fatalf("LF: got %q", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("example.com; none")
	f.Add("mx; spf=pass smtp.mailfrom=a@b; dkim=fail (x) header.d=c header.s=\"s\\\"\"")
	f.Add("(((")
	f.Fuzz(func(t *testing.T, s string) {
		id, res, err := Parse(s)
		if err != nil {
			return
		}
		// Our own writer's output of what was parsed must parse again.
		_ = id
		for _, r := range res {
			if r.Method == "" || r.Value == "" {
				t.Fatalf("empty method/result from %q", s)
			}
		}
	})
}

func FuzzStripOwn(f *testing.F) {
	f.Add([]byte("Authentication-Results: mx; none\r\nX: y\r\n\r\n"), "mx")
	f.Add([]byte("A: b\n c\nAuthentication-Results:"), "")
	f.Fuzz(func(t *testing.T, h []byte, id string) {
		out := StripOwn(h, id)
		if len(out) > len(h) {
			t.Fatal("grew")
		}
		if id != "" && len(StripOwn(out, id)) != len(out) {
			t.Fatal("not idempotent")
		}
	})
}

func FuzzHeader(f *testing.F) {
	f.Add("mx", "example.org", "reason (with) \\ parens\r\n", "s1")
	f.Fuzz(func(t *testing.T, id, domain, reason, sel string) {
		if id == "" {
			return
		}
		h := Header(id, Results{
			SPF:  &policy.SPF{Result: policy.ResultFail, Domain: domain, Reason: reason},
			DKIM: &policy.DKIM{Signatures: []policy.DKIMSignature{{Result: policy.ResultPass, Domain: domain, Selector: sel, Reason: reason}}},
		})
		gotID, res, err := Parse(strings.TrimPrefix(h, FieldName+":"))
		if err != nil {
			t.Fatalf("own header does not parse: %q: %v", h, err)
		}
		if len(res) != 2 {
			t.Fatalf("round trip: %q → %d results", h, len(res))
		}
		if !printable(id) || !printable(domain) {
			return
		}
		if gotID != id {
			t.Fatalf("round trip: %q → %q %d", h, gotID, len(res))
		}
		if res[0].Props["smtp.mailfrom"] != domain && domain != "" {
			t.Fatalf("domain %q → %q", domain, res[0].Props["smtp.mailfrom"])
		}
	})
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}
