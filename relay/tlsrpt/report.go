package tlsrpt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"moat/internal/dnsres"
)

// Aggregate is one policy's day of results for one policy domain: the
// unit of a report's "policies" array (RFC 8460 §4.4).
type Aggregate struct {
	Policy        PolicyType `json:"type"`
	PolicyStrings []string   `json:"strings,omitempty"`
	Success       int64      `json:"ok"`
	// Failures are keyed by FailureKey.
	Failures map[string]*Failure `json:"fail,omitempty"`
}

// Failure counts the failed sessions of one result type to one
// exchanger address (§4.3 failure-details).
type Failure struct {
	Result      ResultType `json:"result"`
	MXHost      string     `json:"mx,omitempty"`
	ReceivingIP string     `json:"ip,omitempty"`
	Detail      string     `json:"info,omitempty"` // the first one seen
	Count       int64      `json:"n"`
}

// PolicyKey names the policy a result applied: type and strings.
func PolicyKey(r Result) string {
	return string(r.Policy) + "\x00" + strings.Join(r.PolicyStrings, "\x00")
}

// FailureKey names a failure's row: result type, exchanger, address.
func FailureKey(r Result) string {
	return string(r.Failure) + "|" + strings.ToLower(r.MXHost) + "|" + r.ReceivingIP
}

// maxFailureRows bounds the failure rows of one policy in a day; more
// are counted in the summary only.
const maxFailureRows = 1000

// Add counts r into a.
func (a *Aggregate) Add(r Result) {
	a.Merge(r, 1)
}

// Merge counts n results like r into a.
func (a *Aggregate) Merge(r Result, n int64) {
	if a.Policy == "" {
		a.Policy, a.PolicyStrings = r.Policy, append([]string(nil), r.PolicyStrings...)
	}
	if r.Success {
		a.Success += n
		return
	}
	if a.Failures == nil {
		a.Failures = map[string]*Failure{}
	}
	k := FailureKey(r)
	f, ok := a.Failures[k]
	if !ok {
		if len(a.Failures) >= maxFailureRows {
			k = string(r.Failure) + "||"
			if f, ok = a.Failures[k]; !ok {
				f = &Failure{Result: r.Failure}
				a.Failures[k] = f
			}
		} else {
			f = &Failure{Result: r.Failure, MXHost: strings.ToLower(r.MXHost), ReceivingIP: r.ReceivingIP, Detail: clip(r.Detail, 200)}
			a.Failures[k] = f
		}
	}
	f.Count += n
}

// MergeAggregate adds b's counts into a (same policy).
func (a *Aggregate) MergeAggregate(b *Aggregate) {
	if a.Policy == "" {
		a.Policy, a.PolicyStrings = b.Policy, b.PolicyStrings
	}
	a.Success += b.Success
	for _, f := range b.Failures {
		a.Merge(Result{Policy: b.Policy, MXHost: f.MXHost, ReceivingIP: f.ReceivingIP, Failure: f.Result, Detail: f.Detail}, f.Count)
	}
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Report is the JSON report (RFC 8460 §4.4).
type Report struct {
	OrganizationName string         `json:"organization-name"`
	DateRange        DateRange      `json:"date-range"`
	ContactInfo      string         `json:"contact-info"`
	ReportID         string         `json:"report-id"`
	Policies         []PolicyReport `json:"policies"`
}

// DateRange is §4.4 "date-range" (RFC 3339 date-times, UTC).
type DateRange struct {
	Start string `json:"start-datetime"`
	End   string `json:"end-datetime"`
}

// PolicyReport is one element of "policies".
type PolicyReport struct {
	Policy         PolicyJSON      `json:"policy"`
	Summary        Summary         `json:"summary"`
	FailureDetails []FailureDetail `json:"failure-details,omitempty"`
}

// PolicyJSON is §4.4 "policy".
type PolicyJSON struct {
	Type   PolicyType `json:"policy-type"`
	String []string   `json:"policy-string,omitempty"`
	Domain string     `json:"policy-domain"`
	MXHost []string   `json:"mx-host,omitempty"`
}

// Summary is §4.4 "summary".
type Summary struct {
	Success int64 `json:"total-successful-session-count"`
	Failure int64 `json:"total-failure-session-count"`
}

// FailureDetail is §4.4 "failure-details".
type FailureDetail struct {
	ResultType  ResultType `json:"result-type"`
	ReceivingMX string     `json:"receiving-mx-hostname,omitempty"`
	ReceivingIP string     `json:"receiving-ip,omitempty"`
	Count       int64      `json:"failed-session-count"`
	Info        string     `json:"additional-information,omitempty"`
}

// Meta is what a report says of its sender and period.
type Meta struct {
	OrgName  string
	Contact  string
	ReportID string
	Begin    time.Time // the day's first second, UTC
	End      time.Time // its last second
}

// Build returns the JSON report of one policy domain's aggregates.
func Build(meta Meta, domain string, aggs []*Aggregate) ([]byte, error) {
	if len(aggs) == 0 {
		return nil, errors.New("tlsrpt: no results")
	}
	rep := Report{
		OrganizationName: meta.OrgName,
		DateRange:        DateRange{Start: meta.Begin.UTC().Format(time.RFC3339), End: meta.End.UTC().Format(time.RFC3339)},
		ContactInfo:      meta.Contact,
		ReportID:         meta.ReportID,
	}
	for _, a := range aggs {
		p := PolicyReport{Policy: PolicyJSON{Type: a.Policy, String: a.PolicyStrings, Domain: domain}}
		if a.Policy == PolicySTS {
			// §4.4 mx-host: the MX patterns of the MTA-STS policy.
			for _, l := range a.PolicyStrings {
				if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "mx" {
					p.Policy.MXHost = append(p.Policy.MXHost, strings.TrimSpace(v))
				}
			}
		}
		p.Summary.Success = a.Success
		keys := make([]string, 0, len(a.Failures))
		for k := range a.Failures {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			f := a.Failures[k]
			p.Summary.Failure += f.Count
			p.FailureDetails = append(p.FailureDetails, FailureDetail{ResultType: f.Result, ReceivingMX: f.MXHost,
				ReceivingIP: f.ReceivingIP, Count: f.Count, Info: f.Detail})
		}
		rep.Policies = append(rep.Policies, p)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// FileName is the attachment's name (§5.3): submitter "!" policy-domain
// "!" begin "!" end ".json.gz".
func FileName(submitter, domain string, begin, end time.Time) string {
	return fmt.Sprintf("%s!%s!%d!%d.json.gz", submitter, domain, begin.Unix(), end.Unix())
}

// Subject is the report message's subject (§5.3).
func Subject(domain, submitter, reportID string) string {
	return fmt.Sprintf("Report Domain: %s Submitter: %s Report-ID: <%s>", domain, submitter, reportID)
}

// Record is a TLSRPT policy record (§3): where reports go.
type Record struct {
	RUA []string // mailto: and https: URIs, in order
}

// maxRecord bounds the TXT record read.
const maxRecord = 4096

// ParseRecord parses a TLSRPT record (§3): "v=TLSRPTv1" first, then
// fields separated by ";"; rua= is a comma-separated list of URIs and is
// required. Unknown fields are ignored.
func ParseRecord(txt string) (Record, error) {
	if len(txt) > maxRecord {
		return Record{}, errors.New("tlsrpt: record too long")
	}
	fields := strings.Split(txt, ";")
	if strings.TrimSpace(fields[0]) != "v=TLSRPTv1" {
		return Record{}, errors.New("tlsrpt: record does not begin with v=TLSRPTv1")
	}
	var rec Record
	seen := false
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			if strings.TrimSpace(f) == "" {
				continue
			}
			return Record{}, fmt.Errorf("tlsrpt: field %q without '='", strings.TrimSpace(f))
		}
		if strings.TrimSpace(k) != "rua" {
			continue
		}
		if seen {
			return Record{}, errors.New("tlsrpt: rua given twice")
		}
		seen = true
		for _, u := range strings.Split(v, ",") {
			u = strings.TrimSpace(u)
			if u == "" {
				continue
			}
			if len(rec.RUA) >= 16 {
				break
			}
			rec.RUA = append(rec.RUA, u)
		}
	}
	if len(rec.RUA) == 0 {
		return Record{}, errors.New("tlsrpt: no rua")
	}
	return rec, nil
}

// ErrTemporary wraps a DNS failure: try again later.
var ErrTemporary = errors.New("temporary DNS failure")

// ErrNoRecord says the domain publishes no (single, valid) TLSRPT record.
var ErrNoRecord = errors.New("no TLSRPT record")

// Lookup finds the TLSRPT record of domain at _smtp._tls.<domain>. §3:
// records not beginning with "v=TLSRPTv1;" are discarded; unless exactly
// one remains, the domain does not take reports.
func Lookup(ctx context.Context, r dnsres.Resolver, domain string) (Record, error) {
	name := "_smtp._tls." + domain
	txts, err := r.LookupTXT(ctx, name)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return Record{}, ErrNoRecord
		}
		return Record{}, fmt.Errorf("%w: %s: %v", ErrTemporary, name, err)
	}
	var found []string
	for _, t := range txts {
		if strings.HasPrefix(t, "v=TLSRPTv1;") || strings.TrimSpace(t) == "v=TLSRPTv1" {
			found = append(found, t)
		}
	}
	if len(found) != 1 {
		return Record{}, ErrNoRecord
	}
	rec, err := ParseRecord(found[0])
	if err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrNoRecord, err)
	}
	return rec, nil
}
