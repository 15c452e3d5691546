// Package tlsrpt is SMTP TLS Reporting (RFC 8460): the result of each
// outbound TLS attempt, as the delivery code records it, and the daily
// aggregate reports built from those results.
//
// This file holds the result type the delivery code (relay/smtpout)
// emits for every session it opens to a mail exchanger; the recording
// and the reports are built on it.
package tlsrpt

// PolicyType is the policy that applied to a session (RFC 8460 §4.3,
// "policy-type").
type PolicyType string

const (
	PolicySTS      PolicyType = "sts"             // MTA-STS (RFC 8461)
	PolicyTLSA     PolicyType = "tlsa"            // DANE (RFC 7672)
	PolicyNotFound PolicyType = "no-policy-found" // neither published
)

// ResultType names why a session failed (RFC 8460 §4.3, "result-type").
type ResultType string

const (
	// Negotiation failures (§4.3.1.1).
	StartTLSNotSupported    ResultType = "starttls-not-supported"
	CertificateHostMismatch ResultType = "certificate-host-mismatch"
	CertificateExpired      ResultType = "certificate-expired"
	CertificateNotTrusted   ResultType = "certificate-not-trusted"
	ValidationFailure       ResultType = "validation-failure"
	// Policy failures: DANE (§4.3.2.1).
	TLSAInvalid   ResultType = "tlsa-invalid"
	DNSSECInvalid ResultType = "dnssec-invalid"
	DANERequired  ResultType = "dane-required"
	// Policy failures: MTA-STS (§4.3.2.2).
	STSPolicyFetchError ResultType = "sts-policy-fetch-error"
	STSPolicyInvalid    ResultType = "sts-policy-invalid"
	STSWebPKIInvalid    ResultType = "sts-webpki-invalid"
)

// Result is one TLS attempt to one mail exchanger of PolicyDomain.
type Result struct {
	// PolicyDomain is the recipient domain whose policy applied (the
	// domain reports go to), in A-label form, lower case.
	PolicyDomain string
	// Policy is the policy that applied; PolicyStrings its text as
	// RFC 8460 §4.4 asks: the MTA-STS policy's lines, or each TLSA
	// record in presentation form.
	Policy        PolicyType
	PolicyStrings []string
	// MXHost is the exchanger's name, ReceivingIP its address.
	MXHost      string
	ReceivingIP string
	// Success is true when TLS was negotiated as the policy requires;
	// otherwise Failure says why and Detail adds a short free text
	// ("additional-information"), never the message or its addresses.
	Success bool
	Failure ResultType
	Detail  string
}

// Sink receives results; it must not block delivery (record in memory
// or a bounded buffer and return).
type Sink interface {
	RecordTLS(Result)
}
