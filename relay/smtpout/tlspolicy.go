package smtpout

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"moat/relay/dane"
	"moat/relay/mtasts"
	"moat/relay/mx"
	"moat/relay/route"
	"moat/relay/tlsrpt"
)

// Outbound TLS policies: the values of `tls_policy:` and the metric's
// policy label. "" (no entry) is the automatic choice for MX delivery:
// DANE where the MX host has usable TLSA records in a DNSSEC-secure zone,
// else the domain's MTA-STS policy, else opportunistic TLS.
const (
	PolicyNone          = route.TLSNone
	PolicyOpportunistic = route.TLSOpportunistic
	PolicyRequired      = route.TLSRequired // routes only: TLS without verification
	PolicyVerify        = route.TLSVerify
	PolicyDANE          = route.TLSDANE
	PolicyMTASTS        = route.TLSMTASTS
)

// TLSPolicies is the `tls_policy:` section: recipient domain -> policy.
// A key "example.com" is that domain only; ".example.com" is every
// subdomain of it (not itself). The most specific key wins.
type TLSPolicies map[string]string

// maxTLSPolicies bounds the section.
const maxTLSPolicies = 10000

// Validate checks the section; errors name the key.
func (p TLSPolicies) Validate() error {
	if len(p) > maxTLSPolicies {
		return fmt.Errorf("tls_policy: more than %d entries", maxTLSPolicies)
	}
	var errs []error
	for k, v := range p {
		d := strings.TrimPrefix(k, ".")
		if _, err := route.NormalizeDomain(d); err != nil || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") {
			errs = append(errs, fmt.Errorf("tls_policy.%s: not a domain or .domain", k))
		}
		switch v {
		case PolicyNone, PolicyOpportunistic, PolicyVerify, PolicyDANE, PolicyMTASTS:
		default:
			errs = append(errs, fmt.Errorf("tls_policy.%s: %q is not none, opportunistic, verify, dane or mta-sts", k, v))
		}
	}
	return errors.Join(errs...)
}

// Normalized returns the map with its domains in the form routing uses
// (lower case, A-labels), so that a key written with U-labels matches.
// Keys that do not normalize are kept as they are (Validate refuses them).
func (p TLSPolicies) Normalized() TLSPolicies {
	if len(p) == 0 {
		return p
	}
	out := make(TLSPolicies, len(p))
	for k, v := range p {
		dot, d := "", k
		if strings.HasPrefix(k, ".") {
			dot, d = ".", k[1:]
		}
		if n, err := route.NormalizeDomain(d); err == nil {
			k = dot + n
		}
		out[k] = v
	}
	return out
}

// For returns the policy configured for domain, or "".
func (p TLSPolicies) For(domain string) string {
	if len(p) == 0 {
		return ""
	}
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if v, ok := p[domain]; ok {
		return v
	}
	for d := domain; ; {
		_, rest, ok := strings.Cut(d, ".")
		if !ok {
			return ""
		}
		if v, ok := p["."+rest]; ok {
			return v
		}
		d = rest
	}
}

// tlsPlan is what a session to one mail exchanger must do about TLS.
type tlsPlan struct {
	policy  string // metric label
	mode    string // route.TLSNone, TLSOpportunistic or TLSRequired
	webpki  bool   // verify the certificate against the MX name
	enforce bool   // a failed verification fails the session (else: reported only)
	dane    *dane.Result
	what    string // the error prefix: "MTA-STS policy of example.com"
	fail    error  // set: do not connect; the session fails with this
	report  tlsrpt.Result
	// fetchFail is the failed MTA-STS fetch to report (Failure set),
	// once per delivery to the domain.
	fetchFail tlsrpt.Result
}

// keyTag is the part of the pool key that keeps sessions of different
// guarantees apart: a session opened under MTA-STS testing (verification
// failures tolerated) must never carry mail that enforce protects.
func (p *tlsPlan) keyTag() string {
	tag := p.policy + "/" + p.mode
	if p.webpki {
		tag += "/webpki"
	}
	if p.enforce {
		tag += "/enforce"
	}
	if p.dane != nil {
		tag += "/tlsa"
	}
	return tag
}

// planTLS decides the TLS of each exchanger of domain. An error defers
// the whole domain.
func (c *Client) planTLS(ctx context.Context, domain string, hosts []mx.Host) ([]*tlsPlan, error) {
	mode := c.o.TLS
	if m := c.o.TLSPolicies.For(domain); m != "" {
		mode = m
	}
	plans := make([]*tlsPlan, len(hosts))
	base := tlsrpt.Result{PolicyDomain: domain, Policy: tlsrpt.PolicyNotFound}
	simple := func(policy, m string) []*tlsPlan {
		for i := range plans {
			plans[i] = &tlsPlan{policy: policy, mode: m, report: base}
		}
		return plans
	}
	switch mode {
	case route.TLSNone:
		return simple(PolicyNone, route.TLSNone), nil
	case route.TLSOpportunistic:
		return simple(PolicyOpportunistic, route.TLSOpportunistic), nil
	case route.TLSRequired:
		// As on other routes: verified against the MX name unless
		// tls_skip_verify.
		for i := range plans {
			plans[i] = &tlsPlan{policy: PolicyRequired, mode: route.TLSRequired, webpki: !c.o.TLSSkipVerify, enforce: true,
				what: "tls required for " + domain, report: base}
		}
		return plans, nil
	case route.TLSVerify:
		for i := range plans {
			plans[i] = &tlsPlan{policy: PolicyVerify, mode: route.TLSRequired, webpki: true, enforce: true,
				what: "tls_policy verify for " + domain, report: base}
		}
		return plans, nil
	}
	// DANE first (RFC 7672 §2.2; RFC 8461 §2: DANE wins over MTA-STS).
	mxSecure := false
	if (mode == "" || mode == PolicyDANE) && c.o.DANE != nil {
		_, secure, err := c.o.DANE.MX(ctx, domain)
		if err != nil {
			// RFC 7672 §2.1.1: a failed (or bogus) lookup defers.
			c.emit(tlsPlan{policy: PolicyDANE, report: withFailure(base, tlsrpt.PolicyTLSA, "", "MX lookup")}, route.TLSRequired, "", tlsrpt.DNSSECInvalid, false)
			return nil, fmt.Errorf("DANE: validating the MX records of %s: %w", domain, err)
		}
		mxSecure = secure
	}
	if mode == PolicyDANE && !mxSecure {
		c.emit(tlsPlan{policy: PolicyDANE, report: withFailure(base, tlsrpt.PolicyTLSA, "", "MX not DNSSEC-secure")}, route.TLSRequired, "", tlsrpt.DANERequired, false)
		return nil, fmt.Errorf("tls_policy dane for %s: the MX records are not DNSSEC-secure (or no validating resolver is configured)", domain)
	}
	var sts *mtasts.Lookup
	stsLookup := func() *mtasts.Lookup {
		if sts == nil {
			sts = &mtasts.Lookup{}
			if c.o.MTASTS != nil {
				l := c.o.MTASTS.Get(ctx, domain)
				sts = &l
			}
		}
		return sts
	}
	for i, h := range hosts {
		if mxSecure {
			p, ok := c.danePlan(ctx, domain, h.Name, mode == PolicyDANE, base)
			if ok {
				plans[i] = p
				continue
			}
		}
		plans[i] = c.stsPlan(domain, h.Name, mode == PolicyMTASTS, stsLookup(), base)
	}
	return plans, nil
}

// danePlan is the plan for host under DANE; ok false when the host has
// no secure TLSA records and DANE is not required (the next policy
// applies).
func (c *Client) danePlan(ctx context.Context, domain, host string, required bool, base tlsrpt.Result) (*tlsPlan, bool) {
	port, _ := strconv.Atoi(c.o.Port)
	res, err := c.o.DANE.TLSA(ctx, host, port)
	p := &tlsPlan{policy: PolicyDANE, mode: route.TLSRequired, enforce: true, what: "DANE for " + host}
	p.report = base
	p.report.Policy = tlsrpt.PolicyTLSA
	p.report.MXHost = host
	switch {
	case err != nil:
		// RFC 7672 §2.1.1: this host cannot be used; the next may be.
		p.fail = fmt.Errorf("DANE: TLSA lookup for %s: %w", host, err)
		p.report.Failure = tlsrpt.DNSSECInvalid
	case res.Active():
		p.dane = &res
		p.report.PolicyStrings = res.Strings()
	case res.RequireTLS():
		// RFC 7672 §3.1.1..3: a secure TLSA RRset without a usable record
		// still means mandatory (unauthenticated) TLS.
		p.report.PolicyStrings = res.Strings()
	case required:
		p.fail = fmt.Errorf("tls_policy dane for %s: %s has no DNSSEC-secure TLSA records", domain, host)
		p.report.Failure = tlsrpt.DANERequired
	default:
		return nil, false
	}
	return p, true
}

// stsPlan is the plan for host under the MTA-STS policy looked up, if
// any (RFC 8461 §4, §5).
func (c *Client) stsPlan(domain, host string, required bool, l *mtasts.Lookup, base tlsrpt.Result) *tlsPlan {
	pol := l.Policy
	if pol != nil && pol.Mode == mtasts.ModeNone {
		pol = nil
	}
	if pol == nil {
		p := &tlsPlan{policy: PolicyOpportunistic, mode: route.TLSOpportunistic, report: base}
		p.report.MXHost = host
		if required {
			p.policy, p.mode = PolicyMTASTS, route.TLSRequired
			p.fail = fmt.Errorf("tls_policy mta-sts for %s: no MTA-STS policy%s", domain, errSuffix(l.Err))
		}
		var fe *mtasts.FetchError
		if errors.As(l.Err, &fe) {
			// The failed fetch is reported once (RFC 8460 §4.3.2.2).
			p.fetchFail = withFailure(base, tlsrpt.PolicySTS, tlsrpt.STSPolicyFetchError, clipDetail(fe.Err.Error()))
			if fe.Invalid {
				p.fetchFail.Failure = tlsrpt.STSPolicyInvalid
			}
		}
		return p
	}
	enforce := pol.Mode == mtasts.ModeEnforce || required
	p := &tlsPlan{policy: PolicyMTASTS, mode: route.TLSOpportunistic, webpki: true, enforce: enforce,
		what: "MTA-STS policy of " + domain}
	p.report = base
	p.report.Policy = tlsrpt.PolicySTS
	p.report.PolicyStrings = pol.Strings()
	p.report.MXHost = host
	if enforce {
		p.mode = route.TLSRequired
	}
	if !pol.Match(host) {
		// §4.1: an MX host the policy does not list is not used under
		// enforce; under testing the failure is only reported.
		p.report.Detail = "MX host not in the policy"
		if enforce {
			p.fail = fmt.Errorf("%s: %s is not among the policy's mx patterns", p.what, host)
		} else {
			c.emit(*p, p.mode, "", tlsrpt.ValidationFailure, false)
			p.report.Detail = ""
		}
	}
	return p
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}

func withFailure(r tlsrpt.Result, pt tlsrpt.PolicyType, f tlsrpt.ResultType, detail string) tlsrpt.Result {
	r.Policy, r.Failure, r.Detail = pt, f, detail
	return r
}

func clipDetail(s string) string {
	if len(s) > 200 {
		return s[:200]
	}
	return s
}

// tlsConfigFor returns the configuration of the handshake to d and, for
// a verification that only reports (MTA-STS testing), where its error
// goes.
func (c *Client) tlsConfigFor(d dest, mode string) (*tls.Config, *error) {
	cfg := c.tlsConfig(d.host, mode)
	p := d.plan
	if p == nil {
		return cfg, nil
	}
	switch {
	case p.dane != nil:
		return dane.TLSConfig(cfg, d.host, *p.dane), nil
	case p.webpki:
		roots := cfg.RootCAs
		host := d.host
		var soft error
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			err := verifyWebPKI(cs, roots, host)
			if err != nil && !p.enforce {
				soft = err
				return nil
			}
			return err
		}
		return cfg, &soft
	default:
		// Opportunistic, unauthenticated TLS (RFC 7435), TLS required
		// without verification, and DANE with no usable record (RFC 7672
		// §3.1.3): MX names come from DNS, verifying them proves little.
		cfg.InsecureSkipVerify = true
		return cfg, nil
	}
}

// verifyWebPKI verifies the server's chain to roots (nil: the system's)
// for host (RFC 8461 §4.2; RFC 6125 name matching as crypto/x509 does).
func verifyWebPKI(cs tls.ConnectionState, roots *x509.CertPool, host string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: host})
	return err
}

// classify turns a failed handshake or verification into its TLS-RPT
// result type (RFC 8460 §4.3.1).
func classify(err error) tlsrpt.ResultType {
	var de *dane.VerifyError
	var he x509.HostnameError
	var ce x509.CertificateInvalidError
	var ue x509.UnknownAuthorityError
	switch {
	case errors.As(err, &de):
		return de.Kind
	case errors.As(err, &he):
		return tlsrpt.CertificateHostMismatch
	case errors.As(err, &ce) && ce.Reason == x509.Expired:
		return tlsrpt.CertificateExpired
	case errors.As(err, &ue):
		return tlsrpt.CertificateNotTrusted
	}
	return tlsrpt.ValidationFailure
}

// emit records one TLS attempt: the metric and the TLS-RPT result.
// failure is "" for success, else a TLS-RPT result type; plaintext is
// true when the session goes on in clear (the metric's "plaintext").
// addr is the exchanger's address, if connected. Sessions with TLS off
// (policy none, or the clear-text retry after a failed opportunistic
// handshake) count in the metric only.
func (c *Client) emit(p tlsPlan, mode, addr string, failure tlsrpt.ResultType, plaintext bool) {
	if c.o.OutboundTLS != nil {
		result := string(failure)
		switch {
		case plaintext:
			result = "plaintext"
		case failure == "":
			result = "success"
		}
		c.o.OutboundTLS(p.policy, result)
	}
	if c.o.TLSResults == nil || mode == route.TLSNone {
		return
	}
	r := p.report
	r.ReceivingIP = addr
	r.Success = failure == ""
	r.Failure = failure
	c.o.TLSResults.RecordTLS(r)
}

// DANEConfig is the `dane:` section: DANE for MX delivery (RFC 7672).
// The TLSA and MX lookups go to dns.servers, which must be a validating
// resolver (a local unbound) for any answer to count as secure.
type DANEConfig struct {
	// Enabled applies DANE where the MX records and the exchanger's TLSA
	// records are DNSSEC-secure. Default true.
	Enabled bool `mapstructure:"enabled"`
	// Timeout bounds each query. Default 5s.
	Timeout time.Duration `mapstructure:"timeout"`
}

// DefaultDANEConfig returns the defaults.
func DefaultDANEConfig() DANEConfig { return DANEConfig{Enabled: true, Timeout: 5 * time.Second} }

// Validate checks the section.
func (c DANEConfig) Validate() error {
	if c.Timeout <= 0 || c.Timeout > time.Minute {
		return fmt.Errorf("dane.timeout: %s is not between 0 and 1m", c.Timeout)
	}
	return nil
}
