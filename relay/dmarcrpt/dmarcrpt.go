// Package dmarcrpt is DMARC aggregate reporting (RFC 7489 §7.2): the row
// recorded for each evaluated message, the XML report built from a day
// of rows (Appendix C schema), the rua= destinations and their size
// limits (§6.2, §6.4), and the check that an external destination
// agreed to receive reports (§7.1).
//
// Decisions, with their sections:
//   - §7.2.1.1: the report is gzip-compressed XML attached to a message;
//     its file name is receiver!policy-domain!begin!end.xml.gz.
//   - §6.2: a destination's "!size" limit is compared with the whole
//     message as it would be sent; a report over the limit is not sent
//     to that destination (the report is never cut).
//   - §7.1: when the rua= host is not in the policy domain's
//     organizational domain, the TXT record
//     <policy-domain>._report._dmarc.<rua-host> must exist and begin
//     with v=DMARC1; otherwise that destination is skipped. A DNS
//     temporary failure is reported as such (try again later), never
//     as authorised.
//   - only mailto: destinations are used (§6.2 requires mailto support;
//     other schemes are skipped).
package dmarcrpt

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"golang.org/x/net/publicsuffix"

	"moat/internal/dnsres"
	"moat/internal/mailname"
)

// Published is the DMARC record that applied (§7.2.1.1 policy_published,
// plus rua= and ri= that say where and how often reports go).
type Published struct {
	Domain string   `json:"domain"`
	ADKIM  string   `json:"adkim"`
	ASPF   string   `json:"aspf"`
	P      string   `json:"p"`
	SP     string   `json:"sp,omitempty"`
	Pct    int      `json:"pct"`
	RUA    []string `json:"rua,omitempty"`
	RI     int      `json:"ri,omitempty"`
}

// DKIMResult is one DKIM signature's result (Appendix C
// DKIMAuthResultType).
type DKIMResult struct {
	Domain   string `json:"d"`
	Selector string `json:"s,omitempty"`
	Result   string `json:"r"`
}

// SPFResult is the SPF result (Appendix C SPFAuthResultType); Scope is
// "mfrom" or "helo".
type SPFResult struct {
	Domain string `json:"d"`
	Scope  string `json:"scope,omitempty"`
	Result string `json:"r"`
}

// Row is what one message contributes to a report: one <record> once
// counted (Appendix C RowType, IdentifierType, AuthResultType).
type Row struct {
	SourceIP    string `json:"ip"`
	Disposition string `json:"disp"` // none, quarantine, reject: what was done
	DKIM        string `json:"dkim"` // pass or fail: an aligned DKIM pass
	SPF         string `json:"spf"`  // pass or fail: an aligned SPF pass
	// Reason says why Disposition differs from the published policy
	// (PolicyOverrideType: forwarded, sampled_out, trusted_forwarder,
	// mailing_list, local_policy, other); "" when it does not.
	Reason     string       `json:"reason,omitempty"`
	HeaderFrom string       `json:"from"`
	DKIMAuth   []DKIMResult `json:"dkim_auth,omitempty"`
	SPFAuth    []SPFResult  `json:"spf_auth,omitempty"`
}

// Key is the row's identity for counting: equal rows add up.
func (r Row) Key() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%s|%s|%s|%s", r.SourceIP, r.Disposition, r.DKIM, r.SPF, r.Reason, r.HeaderFrom)
	for _, d := range r.DKIMAuth {
		fmt.Fprintf(&b, "|d:%s/%s/%s", d.Domain, d.Selector, d.Result)
	}
	for _, s := range r.SPFAuth {
		fmt.Fprintf(&b, "|s:%s/%s/%s", s.Domain, s.Scope, s.Result)
	}
	return b.String()
}

// Counted is a row and how many messages it stands for.
type Counted struct {
	Row   Row `json:"row"`
	Count int `json:"n"`
}

// Meta is the report's metadata (§7.2.1.1 report_metadata).
type Meta struct {
	OrgName  string
	Email    string // the reporter's address
	Contact  string // extra_contact_info; optional
	ReportID string
	Begin    time.Time
	End      time.Time
}

// Feedback is the report document (Appendix C "feedback").
type Feedback struct {
	XMLName  xml.Name       `xml:"feedback"`
	Metadata ReportMetadata `xml:"report_metadata"`
	Policy   PolicyXML      `xml:"policy_published"`
	Records  []RecordXML    `xml:"record"`
}

// ReportMetadata is Appendix C ReportMetadataType.
type ReportMetadata struct {
	OrgName   string    `xml:"org_name"`
	Email     string    `xml:"email"`
	Contact   string    `xml:"extra_contact_info,omitempty"`
	ReportID  string    `xml:"report_id"`
	DateRange DateRange `xml:"date_range"`
}

// DateRange is in seconds since the epoch, UTC.
type DateRange struct {
	Begin int64 `xml:"begin"`
	End   int64 `xml:"end"`
}

// PolicyXML is Appendix C PolicyPublishedType.
type PolicyXML struct {
	Domain string `xml:"domain"`
	ADKIM  string `xml:"adkim,omitempty"`
	ASPF   string `xml:"aspf,omitempty"`
	P      string `xml:"p"`
	SP     string `xml:"sp,omitempty"`
	Pct    int    `xml:"pct"`
}

// RecordXML is Appendix C RecordType.
type RecordXML struct {
	Row struct {
		SourceIP string `xml:"source_ip"`
		Count    int    `xml:"count"`
		Policy   struct {
			Disposition string      `xml:"disposition"`
			DKIM        string      `xml:"dkim"`
			SPF         string      `xml:"spf"`
			Reason      []ReasonXML `xml:"reason,omitempty"`
		} `xml:"policy_evaluated"`
	} `xml:"row"`
	Identifiers struct {
		HeaderFrom string `xml:"header_from"`
	} `xml:"identifiers"`
	AuthResults struct {
		DKIM []DKIMXML `xml:"dkim,omitempty"`
		SPF  []SPFXML  `xml:"spf"`
	} `xml:"auth_results"`
}

// ReasonXML is Appendix C PolicyOverrideReason.
type ReasonXML struct {
	Type    string `xml:"type"`
	Comment string `xml:"comment,omitempty"`
}

// DKIMXML is Appendix C DKIMAuthResultType.
type DKIMXML struct {
	Domain   string `xml:"domain"`
	Selector string `xml:"selector,omitempty"`
	Result   string `xml:"result"`
}

// SPFXML is Appendix C SPFAuthResultType.
type SPFXML struct {
	Domain string `xml:"domain"`
	Scope  string `xml:"scope,omitempty"`
	Result string `xml:"result"`
}

// Build returns the XML report of rows (sorted by count, then source).
func Build(meta Meta, pub Published, rows []Counted) ([]byte, error) {
	if len(rows) == 0 {
		return nil, errors.New("dmarcrpt: no rows")
	}
	f := Feedback{
		Metadata: ReportMetadata{OrgName: meta.OrgName, Email: meta.Email, Contact: meta.Contact, ReportID: meta.ReportID,
			DateRange: DateRange{Begin: meta.Begin.Unix(), End: meta.End.Unix()}},
		Policy: PolicyXML{Domain: pub.Domain, ADKIM: pub.ADKIM, ASPF: pub.ASPF, P: orNone(pub.P), SP: pub.SP, Pct: pub.Pct},
	}
	rows = append([]Counted(nil), rows...)
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].Count != rows[j].Count {
			return rows[i].Count > rows[j].Count
		}
		return rows[i].Row.Key() < rows[j].Row.Key()
	})
	for _, c := range rows {
		var r RecordXML
		r.Row.SourceIP = c.Row.SourceIP
		r.Row.Count = c.Count
		r.Row.Policy.Disposition = orNone(c.Row.Disposition)
		r.Row.Policy.DKIM = passFail(c.Row.DKIM)
		r.Row.Policy.SPF = passFail(c.Row.SPF)
		if c.Row.Reason != "" {
			r.Row.Policy.Reason = []ReasonXML{{Type: c.Row.Reason}}
		}
		r.Identifiers.HeaderFrom = c.Row.HeaderFrom
		for _, d := range c.Row.DKIMAuth {
			r.AuthResults.DKIM = append(r.AuthResults.DKIM, DKIMXML(d))
		}
		for _, s := range c.Row.SPFAuth {
			r.AuthResults.SPF = append(r.AuthResults.SPF, SPFXML(s))
		}
		if len(r.AuthResults.SPF) == 0 {
			// Appendix C: at least one spf element; "none" when SPF was
			// not evaluated for a domain.
			r.AuthResults.SPF = []SPFXML{{Domain: c.Row.HeaderFrom, Scope: "mfrom", Result: "none"}}
		}
		f.Records = append(f.Records, r)
	}
	var b bytes.Buffer
	b.WriteString(xml.Header)
	enc := xml.NewEncoder(&b)
	enc.Indent("", "  ")
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func passFail(s string) string {
	if s == "pass" {
		return "pass"
	}
	return "fail"
}

// FileName is the attachment's name (§7.2.1.1): receiver "!"
// policy-domain "!" begin "!" end ".xml.gz".
func FileName(receiver, policyDomain string, begin, end time.Time) string {
	return fmt.Sprintf("%s!%s!%d!%d.xml.gz", receiver, policyDomain, begin.Unix(), end.Unix())
}

// Subject is the report message's subject (§7.2.1.1).
func Subject(policyDomain, submitter, reportID string) string {
	return fmt.Sprintf("Report Domain: %s Submitter: %s Report-ID: <%s>", policyDomain, submitter, reportID)
}

// Destination is one mailto: rua= address and its size limit.
type Destination struct {
	Address string // local@domain
	Domain  string // lower case
	MaxSize int64  // bytes; 0: no limit
}

// maxURI bounds a rua= URI read from DNS.
const maxURI = 1024

// ParseURI parses one rua= URI (§6.4 dmarc-uri: a URI, optionally
// followed by "!" size [unit], unit k, m, g or t, powers of 1024). Only
// mailto: URIs with one address are accepted.
func ParseURI(s string) (Destination, error) {
	s = strings.TrimSpace(s)
	if len(s) > maxURI {
		return Destination{}, errors.New("rua URI too long")
	}
	uri, size, hasSize := strings.Cut(s, "!")
	var d Destination
	if hasSize {
		n, err := parseSize(size)
		if err != nil {
			return Destination{}, err
		}
		d.MaxSize = n
	}
	scheme, rest, ok := strings.Cut(uri, ":")
	if !ok || !strings.EqualFold(scheme, "mailto") {
		return Destination{}, fmt.Errorf("rua %q: not a mailto: URI", uri)
	}
	// RFC 6068: hfields after "?" are ignored; the address may be
	// percent-encoded.
	rest, _, _ = strings.Cut(rest, "?")
	addr, err := unescape(rest)
	if err != nil {
		return Destination{}, fmt.Errorf("rua %q: %v", uri, err)
	}
	if strings.Contains(addr, ",") {
		return Destination{}, fmt.Errorf("rua %q: more than one address", uri)
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return Destination{}, fmt.Errorf("rua %q: no address", uri)
	}
	local, dom := addr[:at], strings.ToLower(strings.TrimSuffix(addr[at+1:], "."))
	if !mailname.ValidDomain(dom) || !validLocal(local) {
		return Destination{}, fmt.Errorf("rua %q: not an address", uri)
	}
	d.Address, d.Domain = local+"@"+dom, dom
	return d, nil
}

func parseSize(s string) (int64, error) {
	if s == "" || len(s) > 20 {
		return 0, fmt.Errorf("rua size %q: not a size", s)
	}
	mult := int64(1)
	switch s[len(s)-1] {
	case 'k', 'K':
		mult = 1 << 10
	case 'm', 'M':
		mult = 1 << 20
	case 'g', 'G':
		mult = 1 << 30
	case 't', 'T':
		mult = 1 << 40
	}
	if mult != 1 {
		s = s[:len(s)-1]
	}
	if s == "" {
		return 0, errors.New("rua size: no digits")
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("rua size %q: not a size", s)
		}
		if n > (1<<62)/10 {
			return 0, errors.New("rua size: too large")
		}
		n = n*10 + int64(c-'0')
	}
	if n > (1<<62)/mult {
		return 0, errors.New("rua size: too large")
	}
	return n * mult, nil
}

func unescape(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return "", errors.New("bad percent-encoding")
		}
		b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
		i += 2
	}
	return b.String(), nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// validLocal accepts a dot-atom local part of printable ASCII without
// specials that would need quoting (RFC 5321 §4.1.2), at most 64 octets.
func validLocal(l string) bool {
	if l == "" || len(l) > 64 {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>[]:;@\\,\"", c) >= 0 {
			return false
		}
	}
	return true
}

// ErrTemporary wraps a DNS failure that may pass: try again later.
var ErrTemporary = errors.New("temporary DNS failure")

// External reports whether rua host dest is outside the policy domain's
// organizational domain (§7.1).
func External(policyDomain, dest string) bool {
	o1, err1 := publicsuffix.EffectiveTLDPlusOne(strings.ToLower(policyDomain))
	o2, err2 := publicsuffix.EffectiveTLDPlusOne(strings.ToLower(dest))
	if err1 != nil || err2 != nil {
		return !strings.EqualFold(policyDomain, dest)
	}
	return o1 != o2
}

// Authorized checks §7.1 for an external destination: the TXT record
// <policy-domain>._report._dmarc.<dest> exists and one of its strings
// begins with v=DMARC1. A name that does not exist, or holds no such
// record, is (false, nil); a DNS failure is (false, ErrTemporary).
func Authorized(ctx context.Context, r dnsres.Resolver, policyDomain, dest string) (bool, error) {
	name := policyDomain + "._report._dmarc." + dest
	txts, err := r.LookupTXT(ctx, name)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return false, nil
		}
		return false, fmt.Errorf("%w: %s: %v", ErrTemporary, name, err)
	}
	for _, t := range txts {
		k, v, ok := strings.Cut(strings.TrimLeft(t, " \t"), "=")
		if !ok || strings.TrimSpace(k) != "v" {
			continue
		}
		v, _, _ = strings.Cut(v, ";")
		if strings.TrimSpace(v) == "DMARC1" {
			return true, nil
		}
	}
	return false, nil
}
