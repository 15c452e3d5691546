package dmarc

import (
	"bufio"
	"context"
	"net"
	"os"
	"strings"
	"testing"

	"moat/internal/dnstest"
	"moat/policy"
)

// fakeResolver answers TXT from a map; names in temp fail temporarily.
// Other lookups are not made by DMARC and fail.
type fakeResolver struct {
	dnstest.Unsupported
	txt  map[string][]string
	temp map[string]bool
}

func (f fakeResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	if f.temp[name] {
		return nil, &net.DNSError{Err: "server failure", Name: name, IsTemporary: true}
	}
	if v, ok := f.txt[name]; ok {
		return v, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// pslKnownDifferences lists PSL test inputs where OrgDomain (backed by the
// list embedded in golang.org/x/net/publicsuffix) differs from the
// reference, with the reason.
var pslKnownDifferences = map[string]string{}

// TestOrgDomainPSL runs the Public Suffix List reference tests
// (testdata/psl-tests.txt) against OrgDomain.
func TestOrgDomainPSL(t *testing.T) {
	f, err := os.Open("testdata/psl-tests.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n, pass := 0, 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "//") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			t.Fatalf("bad line %q", line)
		}
		in, want := fields[0], fields[1]
		if in == "null" {
			in = ""
		}
		if want == "null" {
			want = ""
		}
		n++
		got := OrgDomain(in)
		if got != want {
			if why, ok := pslKnownDifferences[fields[0]]; ok {
				t.Logf("known difference %q: got %q want %q: %s", in, got, want, why)
				continue
			}
			t.Errorf("OrgDomain(%q) = %q, want %q", in, got, want)
			continue
		}
		pass++
	}
	t.Logf("PSL tests: %d of %d match", pass, n)
}

// opendmarcAlignmentDiffers documents where we differ from OpenDMARC on
// purpose.
var opendmarcAlignmentDiffers = map[string]string{
	// OpenDMARC strips any number of leading and trailing dots. A domain
	// with empty labels is not a domain name (RFC 1035 §2.3.1); we compare
	// after removing one trailing root dot only.
	"5": "leading dot is not stripped (empty label)",
	"6": "leading/trailing runs of dots are not stripped (empty labels)",
}

func TestOpenDMARCAlignment(t *testing.T) {
	for _, row := range readTSV(t, "testdata/alignment-cases.tsv") {
		n, d1, d2, mode, outcome := row[0], row[1], row[2], row[3], row[4]
		strict := mode == "DMARC_RECORD_A_STRICT"
		got := Aligned(d1, d2, strict)
		want := outcome == "0"
		if why, ok := opendmarcAlignmentDiffers[n]; ok {
			if got == want {
				t.Errorf("case %s: expected to differ (%s) but agrees", n, why)
			}
			continue
		}
		if got != want {
			t.Errorf("case %s: Aligned(%q,%q,strict=%v)=%v want %v", n, d1, d2, strict, got, want)
		}
	}
}

var opendmarcParseDiffers = map[string]string{
	// RFC 7489 §6.3: p= is one of none, quarantine, reject; OpenDMARC
	// accepts a prefix.
	"5": "p=n is not a valid policy",
	// RFC 7489 §6.3: the v tag MUST be "DMARC1"; records that do not start
	// with it are not DMARC records at all. OpenDMARC reports a bad
	// version; so do we (the error), which agrees.
}

func TestOpenDMARCRecordParse(t *testing.T) {
	for _, row := range readTSV(t, "testdata/record-parse-cases.tsv") {
		n, rec, status := row[0], row[1], row[2]
		_, err := ParseRecord(rec)
		wantOK := status == "DMARC_PARSE_OKAY"
		gotOK := err == nil
		if why, ok := opendmarcParseDiffers[n]; ok {
			if gotOK == wantOK {
				t.Errorf("case %s: expected to differ (%s)", n, why)
			}
			continue
		}
		if gotOK != wantOK {
			t.Errorf("case %s %q: err=%v, want %s", n, rec, err, status)
		}
	}
}

func readTSV(t *testing.T, path string) [][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]string
	for i, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "n\t") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) < 3 {
			t.Fatalf("%s:%d: bad row", path, i+1)
		}
		rows = append(rows, f)
	}
	return rows
}

func TestEvaluate(t *testing.T) {
	r := fakeResolver{
		txt: map[string][]string{
			"_dmarc.example.com":     {"v=DMARC1; p=reject; sp=quarantine"},
			"_dmarc.strict.org":      {"v=DMARC1; p=reject; adkim=s; aspf=s"},
			"_dmarc.two.net":         {"v=DMARC1; p=none", "v=DMARC1; p=reject"},
			"_dmarc.bad.net":         {"v=DMARC1; p=bogus"},
			"_dmarc.badrua.net":      {"v=DMARC1; p=bogus; rua=mailto:a@badrua.net"},
			"_dmarc.other.net":       {"some other text", "v=spf1 -all"},
			"_dmarc.half.example":    {"v=DMARC1; p=reject; pct=50"},
			"_dmarc.sub.example.com": {"v=DMARC1; p=none"},
			"_dmarc.dup.example.com": {"v=DMARC1; p=none", "v=DMARC1; p=quarantine"},
			"_dmarc.halfq.example":   {"v=DMARC1; p=quarantine; pct=50"},
		},
		temp: map[string]bool{"_dmarc.temp.org": true, "_dmarc.example.net": true},
	}
	spfPass := func(d string) policy.SPF {
		return policy.SPF{Result: policy.ResultPass, Domain: d, Identity: "mailfrom"}
	}
	dkimPass := func(d string) policy.DKIM {
		return policy.DKIM{Result: policy.ResultPass, Signatures: []policy.DKIMSignature{{Result: policy.ResultPass, Domain: d}}}
	}
	tests := []struct {
		name              string
		in                Input
		result            policy.Result
		pol               string
		spfAlig, dkimAlig bool
		sampled           bool
	}{
		{"spf relaxed pass", Input{From: []string{"a@mail.example.com"}, SPF: spfPass("bounce.example.com")}, policy.ResultPass, "quarantine", true, false, true},
		{"dkim pass exact", Input{From: []string{"A <a@Example.COM>"}, DKIM: dkimPass("example.com")}, policy.ResultPass, "reject", false, true, true},
		{"subdomain record", Input{From: []string{"a@sub.example.com"}, DKIM: dkimPass("example.com")}, policy.ResultPass, "none", false, true, true},
		{"fail reject", Input{From: []string{"a@example.com"}, SPF: spfPass("evil.org"), DKIM: dkimPass("evil.org")}, policy.ResultFail, "reject", false, false, true},
		// RFC 7489 §4.1, RFC 7208 §2.4: with a null reverse-path the HELO
		// identity is the one SPF checked, and it counts for alignment.
		{"null sender helo spf aligns", Input{From: []string{"a@example.com"}, SPF: policy.SPF{Result: policy.ResultPass, Domain: "mx.example.com", Identity: "helo"}}, policy.ResultPass, "reject", true, false, true},
		{"null sender helo spf other domain", Input{From: []string{"a@example.com"}, SPF: policy.SPF{Result: policy.ResultPass, Domain: "mx.evil.org", Identity: "helo"}}, policy.ResultFail, "reject", false, false, true},
		{"softfail does not align", Input{From: []string{"a@example.com"}, SPF: policy.SPF{Result: policy.ResultSoftFail, Domain: "example.com", Identity: "mailfrom"}}, policy.ResultFail, "reject", false, false, true},
		{"strict spf sub fails", Input{From: []string{"a@strict.org"}, SPF: spfPass("mail.strict.org")}, policy.ResultFail, "reject", false, false, true},
		{"strict dkim exact", Input{From: []string{"a@strict.org"}, DKIM: dkimPass("strict.org")}, policy.ResultPass, "reject", false, true, true},
		{"no record", Input{From: []string{"a@norecord.org"}, SPF: spfPass("norecord.org")}, policy.ResultNone, "", false, false, true},
		{"two records", Input{From: []string{"a@two.net"}}, policy.ResultNone, "", false, false, true},
		// §6.6.3 step 5: several records at the From domain: no policy, and
		// no fallback to the organizational domain's p=reject.
		{"two records at subdomain", Input{From: []string{"a@dup.example.com"}}, policy.ResultNone, "", false, false, true},
		{"other txt", Input{From: []string{"a@other.net"}}, policy.ResultNone, "", false, false, true},
		{"bad record", Input{From: []string{"a@bad.net"}}, policy.ResultPermError, "", false, false, true},
		{"bad record with rua", Input{From: []string{"a@badrua.net"}}, policy.ResultFail, "none", false, false, true},
		{"temp at from", Input{From: []string{"a@temp.org"}}, policy.ResultTempError, "", false, false, true},
		{"temp at org", Input{From: []string{"a@x.example.net"}}, policy.ResultTempError, "", false, false, true},
		{"spf temperror aligned", Input{From: []string{"a@example.com"}, SPF: policy.SPF{Result: policy.ResultTempError, Domain: "example.com", Identity: "mailfrom"}}, policy.ResultTempError, "reject", false, false, true},
		{"spf temperror not aligned", Input{From: []string{"a@example.com"}, SPF: policy.SPF{Result: policy.ResultTempError, Domain: "evil.org", Identity: "mailfrom"}}, policy.ResultFail, "reject", false, false, true},
		{"helo spf temperror aligned", Input{From: []string{"a@example.com"}, SPF: policy.SPF{Result: policy.ResultTempError, Domain: "example.com", Identity: "helo"}}, policy.ResultTempError, "reject", false, false, true},
		{"dkim temperror aligned", Input{From: []string{"a@example.com"}, DKIM: policy.DKIM{Result: policy.ResultTempError, Signatures: []policy.DKIMSignature{{Result: policy.ResultTempError, Domain: "example.com"}}}}, policy.ResultTempError, "reject", false, false, true},
		{"aligned pass beats temperror", Input{From: []string{"a@example.com"}, SPF: policy.SPF{Result: policy.ResultTempError, Domain: "example.com", Identity: "mailfrom"}, DKIM: dkimPass("example.com")}, policy.ResultPass, "reject", false, true, true},
		{"pct sampled", Input{From: []string{"a@half.example"}, Rand: func() float64 { return 0.2 }}, policy.ResultFail, "reject", false, false, true},
		{"pct not sampled", Input{From: []string{"a@half.example"}, Rand: func() float64 { return 0.7 }}, policy.ResultFail, "quarantine", false, false, false},
		{"pct not sampled quarantine", Input{From: []string{"a@halfq.example"}, Rand: func() float64 { return 0.7 }}, policy.ResultFail, "none", false, false, false},
		{"no from", Input{}, policy.ResultPermError, "reject", false, false, false},
		{"two from fields", Input{From: []string{"a@example.com", "b@example.com"}}, policy.ResultPermError, "reject", false, false, false},
		{"from without domain", Input{From: []string{"Alice <alice>"}}, policy.ResultPermError, "reject", false, false, false},
		{"two domains", Input{From: []string{"a@example.com, b@evil.org"}}, policy.ResultPermError, "reject", false, false, false},
		{"two addresses same domain", Input{From: []string{"a@example.com, b@EXAMPLE.com"}, DKIM: dkimPass("example.com")}, policy.ResultPass, "reject", false, true, true},
		{"garbage", Input{From: []string{"<<<@@@>>>"}}, policy.ResultPermError, "reject", false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Evaluate(context.Background(), r, tt.in)
			if got.Result != tt.result || got.Policy != tt.pol || got.SPFAligned != tt.spfAlig || got.DKIMAligned != tt.dkimAlig || got.Sampled != tt.sampled {
				t.Errorf("got %+v, want result=%s policy=%q spf=%v dkim=%v sampled=%v", got, tt.result, tt.pol, tt.spfAlig, tt.dkimAlig, tt.sampled)
			}
		})
	}
}

// panicResolver panics on every lookup.
type panicResolver struct{ fakeResolver }

func (panicResolver) LookupTXT(context.Context, string) ([]string, error) { panic("boom") }

func TestEvaluatePanicIsTempError(t *testing.T) {
	got := Evaluate(context.Background(), panicResolver{}, Input{From: []string{"a@example.com"}})
	if got.Result != policy.ResultTempError {
		t.Fatalf("got %+v", got)
	}
}

func FuzzEvaluate(f *testing.F) {
	f.Add("a@example.com", "v=DMARC1; p=reject; pct=10", "example.com")
	f.Add("Alice <a@sub.example.com>, b@x", "v=DMARC1; p=none; sp=reject; adkim=s", "sub.example.com")
	f.Add("\"q\"@[1.2.3.4]", "v=DMARC1; p=bogus; rua=x", "")
	f.Fuzz(func(t *testing.T, from, record, dkimDomain string) {
		r := fakeResolver{txt: map[string][]string{}}
		if d, err := FromDomain([]string{from}); err == nil {
			r.txt["_dmarc."+d] = []string{record}
			if o := OrgDomain(d); o != "" {
				r.txt["_dmarc."+o] = []string{record}
			}
		}
		in := Input{From: []string{from}, DKIM: policy.DKIM{Signatures: []policy.DKIMSignature{{Result: policy.ResultPass, Domain: dkimDomain}}}, Rand: func() float64 { return 0.5 }}
		got := Evaluate(context.Background(), r, in)
		if got.Result == policy.ResultPass && !got.DKIMAligned && !got.SPFAligned {
			t.Fatalf("pass without alignment: %+v", got)
		}
		if strings.HasPrefix(got.Reason, "internal error") {
			t.Fatalf("panic: %s", got.Reason)
		}
	})
}

// TestPublished: the record that applied is kept as an aggregate report
// states it, with the RFC 7489 §6.3 defaults, and where it was found.
func TestPublished(t *testing.T) {
	r := fakeResolver{txt: map[string][]string{
		"_dmarc.example.com": {"v=DMARC1; p=reject; sp=quarantine; adkim=s; pct=30; ri=3600; rua=mailto:a@example.com,mailto:b@x.example!10m"},
		"_dmarc.plain.org":   {"v=DMARC1; p=none"},
	}}
	in := Input{From: []string{"a@mail.example.com"}, SPF: policy.SPF{Result: policy.ResultPass, Domain: "example.com"}}
	d := Evaluate(context.Background(), r, in)
	p := d.Published
	if p == nil || p.Domain != "example.com" || p.ADKIM != "s" || p.ASPF != "r" || p.P != "reject" || p.SP != "quarantine" ||
		p.Pct != 30 || p.RI != 3600 || len(p.RUA) != 2 || p.RUA[1] != "mailto:b@x.example!10m" {
		t.Fatalf("%+v", p)
	}
	d = Evaluate(context.Background(), r, Input{From: []string{"a@plain.org"}})
	if p := d.Published; p == nil || p.Pct != 100 || p.RI != 86400 || p.ADKIM != "r" || len(p.RUA) != 0 || d.Result != policy.ResultFail {
		t.Fatalf("%+v %+v", d, p)
	}
	if d := Evaluate(context.Background(), r, Input{From: []string{"a@none.example"}}); d.Published != nil {
		t.Fatalf("no record: %+v", d.Published)
	}
}
