package dmarcrpt

import (
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
	"moat/internal/mailname"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestParseURI(t *testing.T) {
	for _, tc := range []struct {
		in      string
		addr    string
		max     int64
		wantErr bool
	}{
		{in: "mailto:dmarc@example.com", addr: "dmarc@example.com"},
		{in: " mailto:Dmarc@Example.COM. ", addr: "Dmarc@example.com"},
		{in: "MAILTO:a@b.example!10m", addr: "a@b.example", max: 10 << 20},
		{in: "mailto:a@b.example!50k", addr: "a@b.example", max: 50 << 10},
		{in: "mailto:a@b.example!1g", addr: "a@b.example", max: 1 << 30},
		{in: "mailto:a@b.example!2t", addr: "a@b.example", max: 2 << 40},
		{in: "mailto:a@b.example!123", addr: "a@b.example", max: 123},
		{in: "mailto:a%40x@b.example", wantErr: true}, // '@' in the local part
		{in: "mailto:rep%2Bdmarc@b.example", addr: "rep+dmarc@b.example"},
		{in: "mailto:a@b.example?subject=x", addr: "a@b.example"},
		{in: "https://b.example/report", wantErr: true},
		{in: "mailto:", wantErr: true},
		{in: "mailto:a@", wantErr: true},
		{in: "mailto:@b.example", wantErr: true},
		{in: "mailto:a@b..example", wantErr: true},
		{in: "mailto:a@b.example!", wantErr: true},
		{in: "mailto:a@b.example!m", wantErr: true},
		{in: "mailto:a@b.example!10x", wantErr: true},
		{in: "mailto:a@b.example!99999999999999999999", wantErr: true},
		{in: "mailto:a@b.example!9999999999999t", wantErr: true},
		{in: "mailto:a%4@b.example", wantErr: true},
		{in: "mailto:a@b.example,c@d.example", wantErr: true},
		{in: "mailto:a b@c.example", wantErr: true},
		{in: "mailto:a@" + strings.Repeat("x", 2000) + ".example", wantErr: true},
	} {
		d, err := ParseURI(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseURI(%q) error %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && (d.Address != tc.addr || d.MaxSize != tc.max) {
			t.Errorf("ParseURI(%q) = %+v, want %s max %d", tc.in, d, tc.addr, tc.max)
		}
	}
}

func FuzzParseURI(f *testing.F) {
	for _, s := range []string{"mailto:a@b.example", "mailto:a@b.example!10m", "mailto:%41@b", "https://x", "mailto:a@b!1t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseURI(s)
		if err != nil {
			return
		}
		if d.MaxSize < 0 || !strings.HasSuffix(d.Address, "@"+d.Domain) || !mailname.ValidDomain(d.Domain) {
			t.Fatalf("ParseURI(%q) = %+v", s, d)
		}
		// What parses is an address that can be written back and parsed
		// again to the same destination.
		again, err := ParseURI("mailto:" + d.Address)
		if err != nil || again.Address != d.Address {
			t.Fatalf("ParseURI(mailto:%s) = %+v, %v", d.Address, again, err)
		}
	})
}

func TestExternal(t *testing.T) {
	for _, tc := range []struct {
		policy, dest string
		want         bool
	}{
		{"example.com", "example.com", false},
		{"mail.example.com", "reports.example.com", false},
		{"example.com", "example.net", true},
		{"a.example.co.uk", "b.example.co.uk", false},
		{"example.co.uk", "other.co.uk", true},
	} {
		if got := External(tc.policy, tc.dest); got != tc.want {
			t.Errorf("External(%s, %s) = %v", tc.policy, tc.dest, got)
		}
	}
}

// TestAuthorized: RFC 7489 §7.1 with a real DNS server: a v=DMARC1
// record authorises, a missing name or another record does not, and a
// SERVFAIL is temporary (never authorised).
func TestAuthorized(t *testing.T) {
	srv := dnstest.NewServer(t)
	srv.AddTXT("example.com._report._dmarc.thirdparty.example.", "v=DMARC1")
	srv.AddTXT("other.example._report._dmarc.thirdparty.example.", "v=spf1 -all")
	srv.AddTXT("broken.example._report._dmarc.thirdparty.example.", "v=DMARC1")
	srv.Fail("broken.example._report._dmarc.thirdparty.example.", dns.TypeTXT, dnstest.ServFail)
	r := dnsres.ForTest(srv.Addr())
	ctx := context.Background()
	if ok, err := Authorized(ctx, r, "example.com", "thirdparty.example"); !ok || err != nil {
		t.Errorf("authorised: %v %v", ok, err)
	}
	if ok, err := Authorized(ctx, r, "nobody.example", "thirdparty.example"); ok || err != nil {
		t.Errorf("no record: %v %v", ok, err)
	}
	if ok, err := Authorized(ctx, r, "other.example", "thirdparty.example"); ok || err != nil {
		t.Errorf("other record: %v %v", ok, err)
	}
	if ok, err := Authorized(ctx, r, "broken.example", "thirdparty.example"); ok || !errors.Is(err, ErrTemporary) {
		t.Errorf("servfail: %v %v", ok, err)
	}
}

func sampleRows() []Counted {
	return []Counted{
		{Count: 2, Row: Row{SourceIP: "192.0.2.7", Disposition: "none", DKIM: "pass", SPF: "fail", HeaderFrom: "example.com",
			DKIMAuth: []DKIMResult{{Domain: "example.com", Selector: "s1", Result: "pass"}},
			SPFAuth:  []SPFResult{{Domain: "bounce.other.example", Scope: "mfrom", Result: "pass"}}}},
		{Count: 5, Row: Row{SourceIP: "198.51.100.1", Disposition: "quarantine", DKIM: "fail", SPF: "fail", Reason: "",
			HeaderFrom: "example.com", SPFAuth: []SPFResult{{Domain: "example.com", Scope: "mfrom", Result: "softfail"}}}},
		{Count: 1, Row: Row{SourceIP: "2001:db8::1", Disposition: "none", DKIM: "fail", SPF: "fail", Reason: "sampled_out",
			HeaderFrom: "example.com"}},
	}
}

// TestBuildGolden: the XML matches the golden file and reads back into
// the Appendix C shape.
func TestBuildGolden(t *testing.T) {
	begin := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	meta := Meta{OrgName: "Example Receiver", Email: "dmarc-reports@receiver.example", Contact: "https://receiver.example/dmarc",
		ReportID: "20261203.example.com.abc@receiver.example", Begin: begin, End: begin.Add(24*time.Hour - time.Second)}
	pub := Published{Domain: "example.com", ADKIM: "r", ASPF: "s", P: "reject", SP: "quarantine", Pct: 50}
	got, err := Build(meta, pub, sampleRows())
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "report.xml")
	if *update {
		os.WriteFile(golden, got, 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("report differs from %s:\n%s", golden, got)
	}
	var f Feedback
	if err := xml.Unmarshal(got, &f); err != nil {
		t.Fatal(err)
	}
	if f.Metadata.DateRange.Begin != begin.Unix() || f.Policy.Pct != 50 || len(f.Records) != 3 {
		t.Fatalf("%+v", f)
	}
	// Sorted by count; a row without SPF results still has the one
	// spf element the schema requires.
	if f.Records[0].Row.Count != 5 || f.Records[2].Row.Policy.Reason[0].Type != "sampled_out" ||
		len(f.Records[2].AuthResults.SPF) != 1 || f.Records[2].AuthResults.SPF[0].Result != "none" {
		t.Fatalf("%+v", f.Records)
	}
	if _, err := Build(meta, pub, nil); err == nil {
		t.Fatal("a report without rows was built")
	}
}

func TestNames(t *testing.T) {
	b := time.Unix(1764720000, 0)
	if got := FileName("receiver.example", "example.com", b, b.Add(86399*time.Second)); got != "receiver.example!example.com!1764720000!1764806399.xml.gz" {
		t.Error(got)
	}
	if got := Subject("example.com", "receiver.example", "id1"); got != "Report Domain: example.com Submitter: receiver.example Report-ID: <id1>" {
		t.Error(got)
	}
}

func TestRowKey(t *testing.T) {
	r := sampleRows()
	if r[0].Row.Key() == r[1].Row.Key() {
		t.Fatal("different rows share a key")
	}
	same := r[0].Row
	same.DKIMAuth = append([]DKIMResult(nil), same.DKIMAuth...)
	if same.Key() != r[0].Row.Key() {
		t.Fatal("equal rows have different keys")
	}
}
