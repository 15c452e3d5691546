package tlsrpt

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestParseRecord(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "v=TLSRPTv1; rua=mailto:tls@example.com", want: []string{"mailto:tls@example.com"}},
		{in: "v=TLSRPTv1;rua=mailto:a@example.com,https://reports.example.com/tls", want: []string{"mailto:a@example.com", "https://reports.example.com/tls"}},
		{in: "v=TLSRPTv1; ext=1; rua=mailto:a@example.com;", want: []string{"mailto:a@example.com"}},
		{in: "v=TLSRPTv1", wantErr: true},
		{in: "v=TLSRPTv1; rua=", wantErr: true},
		{in: "rua=mailto:a@example.com; v=TLSRPTv1", wantErr: true},
		{in: "v=TLSRPTv2; rua=mailto:a@example.com", wantErr: true},
		{in: "v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com", wantErr: true},
		{in: "v=TLSRPTv1; junk; rua=mailto:a@example.com", wantErr: true},
		{in: "v=TLSRPTv1; rua=" + strings.Repeat("mailto:a@example.com,", 300), wantErr: true},
	} {
		got, err := ParseRecord(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseRecord(%q) error %v", tc.in, err)
			continue
		}
		if err == nil && !reflect.DeepEqual(got.RUA, tc.want) {
			t.Errorf("ParseRecord(%q) = %q", tc.in, got.RUA)
		}
	}
	// At most 16 URIs are kept from a record within the size bound.
	got, err := ParseRecord("v=TLSRPTv1; rua=" + strings.Repeat("mailto:a@example.com,", 40))
	if err != nil || len(got.RUA) != 16 {
		t.Fatalf("%d %v", len(got.RUA), err)
	}
}

func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{"v=TLSRPTv1; rua=mailto:a@b", "v=TLSRPTv1;rua=https://x,mailto:y@z", "v=TLSRPTv1; rua=,,", "v=TLSRPTv1;;;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rec, err := ParseRecord(s)
		if err != nil {
			return
		}
		if len(rec.RUA) == 0 || len(rec.RUA) > 16 {
			t.Fatalf("%q: %d URIs", s, len(rec.RUA))
		}
		for _, u := range rec.RUA {
			if u == "" || strings.ContainsAny(u, ",;") {
				t.Fatalf("%q: URI %q", s, u)
			}
		}
	})
}

// TestLookup: §3 record discovery against a real DNS server.
func TestLookup(t *testing.T) {
	srv := dnstest.NewServer(t)
	srv.AddTXT("_smtp._tls.one.example.", "v=TLSRPTv1; rua=mailto:tls@one.example")
	srv.AddTXT("_smtp._tls.one.example.", "v=spf1 -all") // discarded
	srv.AddTXT("_smtp._tls.two.example.", "v=TLSRPTv1; rua=mailto:a@two.example")
	srv.AddTXT("_smtp._tls.two.example.", "v=TLSRPTv1; rua=mailto:b@two.example")
	srv.AddTXT("_smtp._tls.bad.example.", "v=TLSRPTv1; nothing=here")
	srv.AddTXT("_smtp._tls.fail.example.", "v=TLSRPTv1; rua=mailto:a@fail.example")
	srv.Fail("_smtp._tls.fail.example.", dns.TypeTXT, dnstest.ServFail)
	r := dnsres.ForTest(srv.Addr())
	ctx := context.Background()
	if rec, err := Lookup(ctx, r, "one.example"); err != nil || len(rec.RUA) != 1 {
		t.Errorf("one: %+v %v", rec, err)
	}
	for _, d := range []string{"two.example", "bad.example", "none.example"} {
		if _, err := Lookup(ctx, r, d); !errors.Is(err, ErrNoRecord) {
			t.Errorf("%s: %v, want ErrNoRecord", d, err)
		}
	}
	if _, err := Lookup(ctx, r, "fail.example"); !errors.Is(err, ErrTemporary) {
		t.Errorf("fail: %v, want ErrTemporary", err)
	}
}

func TestAggregate(t *testing.T) {
	var a Aggregate
	sts := []string{"version: STSv1", "mode: enforce", "mx: mx1.example.com", "max_age: 86400"}
	a.Add(Result{PolicyDomain: "example.com", Policy: PolicySTS, PolicyStrings: sts, Success: true})
	a.Add(Result{PolicyDomain: "example.com", Policy: PolicySTS, PolicyStrings: sts, Success: true})
	a.Add(Result{PolicyDomain: "example.com", Policy: PolicySTS, MXHost: "MX1.example.com", ReceivingIP: "192.0.2.1", Failure: CertificateExpired, Detail: "expired 2026-01-01"})
	a.Add(Result{PolicyDomain: "example.com", Policy: PolicySTS, MXHost: "mx1.example.com", ReceivingIP: "192.0.2.1", Failure: CertificateExpired})
	if a.Success != 2 || len(a.Failures) != 1 {
		t.Fatalf("%+v", a)
	}
	for i := 0; i < maxFailureRows+50; i++ {
		a.Add(Result{Policy: PolicySTS, MXHost: "mx.example.com", ReceivingIP: fmt.Sprintf("10.0.%d.%d", i/256, i%256), Failure: ValidationFailure})
	}
	if len(a.Failures) != maxFailureRows+1 {
		t.Fatalf("%d failure rows, want the bound plus one overflow row", len(a.Failures))
	}
	var b Aggregate
	b.MergeAggregate(&a)
	if b.Success != 2 || total(&b) != total(&a) {
		t.Fatalf("merge: %d/%d", total(&b), total(&a))
	}
}

func total(a *Aggregate) int64 {
	var n int64
	for _, f := range a.Failures {
		n += f.Count
	}
	return n
}

// TestBuildGolden: the §4.4 JSON matches the golden file and reads back.
func TestBuildGolden(t *testing.T) {
	sts := []string{"version: STSv1", "mode: testing", "mx: *.mail.example.com", "max_age: 604800"}
	var a, b Aggregate
	a.Add(Result{Policy: PolicySTS, PolicyStrings: sts, Success: true})
	a.Add(Result{Policy: PolicySTS, PolicyStrings: sts, MXHost: "mx2.mail.example.com", ReceivingIP: "203.0.113.56", Failure: CertificateHostMismatch, Detail: "certificate for other.example"})
	b.Add(Result{Policy: PolicyNotFound, MXHost: "mx9.example.com", ReceivingIP: "2001:db8::25", Failure: StartTLSNotSupported})
	begin := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	got, err := Build(Meta{OrgName: "Example Sender", Contact: "tls-reports@sender.example", ReportID: "20261203.example.com.1@sender.example",
		Begin: begin, End: begin.Add(24*time.Hour - time.Second)}, "example.com", []*Aggregate{&a, &b})
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "report.json")
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
	var rep Report
	if err := json.Unmarshal(got, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.DateRange.Start != "2026-12-03T00:00:00Z" || rep.DateRange.End != "2026-12-03T23:59:59Z" || len(rep.Policies) != 2 {
		t.Fatalf("%+v", rep)
	}
	p := rep.Policies[0]
	if p.Policy.Type != PolicySTS || p.Policy.Domain != "example.com" || !reflect.DeepEqual(p.Policy.MXHost, []string{"*.mail.example.com"}) ||
		p.Summary.Success != 1 || p.Summary.Failure != 1 || p.FailureDetails[0].ResultType != CertificateHostMismatch {
		t.Fatalf("%+v", p)
	}
	// The field names are those of RFC 8460 §4.4.
	for _, k := range []string{`"organization-name"`, `"date-range"`, `"start-datetime"`, `"contact-info"`, `"report-id"`,
		`"policy-type"`, `"policy-string"`, `"policy-domain"`, `"mx-host"`, `"total-successful-session-count"`,
		`"total-failure-session-count"`, `"failure-details"`, `"result-type"`, `"receiving-mx-hostname"`,
		`"receiving-ip"`, `"failed-session-count"`, `"additional-information"`} {
		if !strings.Contains(string(got), k) {
			t.Errorf("no %s", k)
		}
	}
}
