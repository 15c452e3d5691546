package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"moat/relay/smtpout"
	"moat/relay/tlsrpt"
)

func newOutboundTLS(reg *prometheus.Registry) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "moat_outbound_tls_total",
		Help: "Sessions to mail exchangers by TLS policy (none, opportunistic, required, verify, dane, mta-sts) and result (success, plaintext, or the RFC 8460 result type of the failure).",
	}, []string{"policy", "result"})
	reg.MustRegister(c)
	return c
}

// outboundTLSResults are the results the metric takes; anything else is
// "other", so the label set stays bounded.
var outboundTLSResults = map[string]bool{
	"success": true, "plaintext": true,
	string(tlsrpt.StartTLSNotSupported): true, string(tlsrpt.CertificateHostMismatch): true,
	string(tlsrpt.CertificateExpired): true, string(tlsrpt.CertificateNotTrusted): true,
	string(tlsrpt.ValidationFailure): true, string(tlsrpt.TLSAInvalid): true,
	string(tlsrpt.DNSSECInvalid): true, string(tlsrpt.DANERequired): true,
	string(tlsrpt.STSPolicyFetchError): true, string(tlsrpt.STSPolicyInvalid): true,
	string(tlsrpt.STSWebPKIInvalid): true,
}

// OutboundTLS counts one session to a mail exchanger
// (relay/smtpout Options.OutboundTLS).
func (m *Metrics) OutboundTLS(policy, result string) {
	switch policy {
	case smtpout.PolicyNone, smtpout.PolicyOpportunistic, smtpout.PolicyRequired,
		smtpout.PolicyVerify, smtpout.PolicyDANE, smtpout.PolicyMTASTS:
	default:
		policy = other
	}
	if !outboundTLSResults[result] {
		result = other
	}
	m.outboundTLS.WithLabelValues(policy, result).Inc()
}
