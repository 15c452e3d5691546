package mtasts

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseRecord(t *testing.T) {
	tests := []struct {
		in   string
		id   string
		fail bool
	}{
		{in: "v=STSv1; id=20160831085700Z;", id: "20160831085700Z"},
		{in: "v=STSv1;id=abc", id: "abc"},
		{in: "v=STSv1; id=abc; ext=1", id: "abc"},
		{in: "v=STSv1 ;  id=abc  ;", id: "abc"},
		{in: "v=STSv1; id=" + strings.Repeat("a", 32), id: strings.Repeat("a", 32)},
		{in: "v=STSv1; id=" + strings.Repeat("a", 33), fail: true},
		{in: "v=STSv1; id=a-b", fail: true},
		{in: "v=STSv1; id=", fail: true},
		{in: "v=STSv1", fail: true},
		{in: "id=abc; v=STSv1", fail: true},
		{in: "v=STSv2; id=abc", fail: true},
		{in: "v=STSv1;; id=abc", fail: true},
		{in: "v=STSv1; junk", fail: true},
		{in: "", fail: true},
	}
	for _, tt := range tests {
		r, err := ParseRecord(tt.in)
		if tt.fail {
			if err == nil {
				t.Errorf("%q: parsed as %+v, want an error", tt.in, r)
			}
			continue
		}
		if err != nil || r.ID != tt.id {
			t.Errorf("%q: %+v, %v; want id %q", tt.in, r, err, tt.id)
		}
	}
}

func TestParseRecords(t *testing.T) {
	if _, err := ParseRecords([]string{"v=spf1 -all"}); err != ErrNoRecord {
		t.Errorf("no record: %v", err)
	}
	if r, err := ParseRecords([]string{"v=spf1 -all", "v=STSv1; id=x1"}); err != nil || r.ID != "x1" {
		t.Errorf("one record: %+v %v", r, err)
	}
	// §3.1: several records mean none usable.
	if _, err := ParseRecords([]string{"v=STSv1; id=x1", "v=STSv1; id=x2"}); err == nil || err == ErrNoRecord {
		t.Errorf("two records: %v", err)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		mode   string
		mx     []string
		maxAge time.Duration
		err    string
	}{
		{name: "rfc example", in: "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n",
			mode: "enforce", mx: []string{"mail.example.com", "*.example.net", "backupmx.example.com"}, maxAge: 604800 * time.Second},
		{name: "lf and spaces", in: "version: STSv1\nmode:testing\nmx:   MX.Example.COM.  \nmax_age: 0\n", mode: "testing", mx: []string{"mx.example.com"}},
		{name: "no final newline", in: "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 86400", mode: "enforce", mx: []string{"a.test"}, maxAge: 86400 * time.Second},
		{name: "none without mx", in: "version: STSv1\nmode: none\nmax_age: 86400\n", mode: "none", maxAge: 86400 * time.Second},
		{name: "unknown key ignored, first mode wins", in: "version: STSv1\nmode: testing\nmode: enforce\nfoo: bar\nmx: a.test\nmax_age: 1\n", mode: "testing", mx: []string{"a.test"}, maxAge: time.Second},
		{name: "max max_age", in: "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557600\n", mode: "enforce", mx: []string{"a.test"}, maxAge: 31557600 * time.Second},
		{name: "max_age too big", in: "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n", err: "max_age"},
		{name: "max_age negative", in: "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n", err: "max_age"},
		{name: "max_age junk", in: "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1d\n", err: "max_age"},
		{name: "no max_age", in: "version: STSv1\nmode: enforce\nmx: a.test\n", err: "no max_age"},
		{name: "bad version", in: "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n", err: "version"},
		{name: "no version", in: "mode: enforce\nmx: a.test\nmax_age: 1\n", err: "version"},
		{name: "bad mode", in: "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n", err: "mode"},
		{name: "no mode", in: "version: STSv1\nmx: a.test\nmax_age: 1\n", err: "no mode"},
		{name: "enforce without mx", in: "version: STSv1\nmode: enforce\nmax_age: 1\n", err: "no mx"},
		{name: "bad pattern", in: "version: STSv1\nmode: enforce\nmx: a.*.test\nmax_age: 1\n", err: "pattern"},
		{name: "bare wildcard", in: "version: STSv1\nmode: enforce\nmx: *.\nmax_age: 1\n", err: "pattern"},
		{name: "not key value", in: "version: STSv1\nmode enforce\n", err: "not key: value"},
		{name: "html", in: "<html><body>hello</body></html>", err: "not key: value"},
		{name: "too big", in: "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1\n" + strings.Repeat("x: y\n", MaxPolicySize/5+1), err: "larger"},
		{name: "too many mx", in: "version: STSv1\nmode: enforce\nmax_age: 1\n" + strings.Repeat("mx: a.test\n", maxMX+1), err: "mx patterns"},
	}
	for _, tt := range tests {
		p, err := Parse([]byte(tt.in))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: %+v, %v; want an error with %q", tt.name, p, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if p.Mode != tt.mode || !slices.Equal(p.MX, tt.mx) || p.MaxAge != tt.maxAge {
			t.Errorf("%s: %+v", tt.name, p)
		}
	}
}

func TestMatch(t *testing.T) {
	p := &Policy{Mode: ModeEnforce, MX: []string{"mail.example.com", "*.example.net"}}
	for host, want := range map[string]bool{
		"mail.example.com":   true,
		"MAIL.Example.com.":  true,
		"mx1.example.net":    true,
		"example.net":        false, // §4.1: the wildcard needs one label
		"a.b.example.net":    false, // and only one
		"mail.example.com.x": false,
		"other.example.com":  false,
		".example.net":       false,
	} {
		if got := p.Match(host); got != want {
			t.Errorf("Match(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestStrings(t *testing.T) {
	p, err := Parse([]byte("version: STSv1\nmode: enforce\nmx: a.test\nmx: *.b.test\nmax_age: 600\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"version: STSv1", "mode: enforce", "mx: a.test", "mx: *.b.test", "max_age: 600"}
	if got := p.Strings(); !slices.Equal(got, want) {
		t.Errorf("%q", got)
	}
}

// FuzzParse: any input parses or fails cleanly, and a parsed policy
// keeps the limits.
func FuzzParse(f *testing.F) {
	f.Add([]byte("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n"))
	f.Add([]byte("version: STSv1\nmode: none\nmax_age: 0\n"))
	f.Add([]byte("version: STSv1\nmode: testing\nmx: a\nmax_age: 31557600"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		if p.MaxAge < 0 || p.MaxAge > MaxAgeLimit*time.Second || len(p.MX) > maxMX {
			t.Fatalf("limits: %+v", p)
		}
		if p.Mode != ModeNone && len(p.MX) == 0 {
			t.Fatalf("no mx: %+v", p)
		}
		for _, m := range p.MX {
			p.Match(m)
		}
		// What Strings prints parses back to the same policy.
		q, err := Parse([]byte(strings.Join(p.Strings(), "\n")))
		if err != nil || q.Mode != p.Mode || q.MaxAge != p.MaxAge || !slices.Equal(q.MX, p.MX) {
			t.Fatalf("round trip: %+v -> %+v, %v", p, q, err)
		}
	})
}

// FuzzParseRecord: TXT records parse or fail cleanly; ids are valid.
func FuzzParseRecord(f *testing.F) {
	f.Add("v=STSv1; id=20160831085700Z;")
	f.Add("v=STSv1;id=a;x=y")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRecord(s)
		if err == nil && !validID(r.ID) {
			t.Fatalf("id %q", r.ID)
		}
	})
}
