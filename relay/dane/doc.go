// Package dane is DANE for outbound SMTP (RFC 7672, with the TLSA record
// of RFC 6698 and the operational rules of RFC 7671): it finds out, from
// DNSSEC-validated answers, whether a mail exchanger publishes TLSA
// records, and checks the certificate chain a server presents against
// them.
//
// Trust in DNS. moat does not validate DNSSEC itself. Resolver asks a
// validating recursive resolver (a local unbound, dns.servers) with the
// DO bit and trusts an answer only when it carries AD, as Postfix does
// (RFC 7672 §2.1; RFC 6840 §5.7 asks for AD in the query too). The three
// outcomes of RFC 7672 §2.1.1 map to:
//   - secure: NOERROR or NXDOMAIN with AD;
//   - insecure: NOERROR or NXDOMAIN without AD: DANE does not apply;
//   - bogus or indeterminate: a validating resolver answers SERVFAIL, and
//     that (like a timeout or REFUSED) is a temporary error: the caller
//     defers the message and never falls back to plaintext (§2.1.1).
//
// Which records count. Only DANE-TA(2) and DANE-EE(3) are used for SMTP;
// PKIX-TA(0) and PKIX-EE(1), unknown selectors and matching types, and
// digests of the wrong length are unusable (RFC 7672 §3.1.3, RFC 7671
// §4). A secure TLSA RRset with no usable record still means the server
// supports TLS: TLS is mandatory but the certificate is not checked
// (RFC 7672 §2.2, §3.1: "unusable"; Postfix's "encrypt").
//
// Where TLSA records are looked for. The MX host's address lookup must be
// secure; when it goes through a secure CNAME chain, the TLSA records of
// the fully expanded name are tried first and those of the initial name
// second, and both names are reference identifiers (RFC 7672 §2.2.2,
// §3.2.2).
//
// Checking the server. DANE-EE(3) pins the leaf's certificate or public
// key: no name checks and no expiry checks (RFC 7672 §3.1.1). DANE-TA(2)
// pins a trust anchor: the presented chain must lead from the leaf to a
// matching certificate, within its validity, and the leaf must bear one
// of the reference identifiers (RFC 7672 §3.1.2, §3.2.2, §3.2.3). SNI
// names the TLSA base domain (§8.1).
//
// How delivery uses it, per destination domain and MX host:
//
//	hosts, secure, err := r.MX(ctx, domain)   // err: defer
//	// secure false: DANE does not apply to any host of domain.
//	res, err := r.TLSA(ctx, host, 25)         // err: defer (never plaintext)
//	switch {
//	case res.Active():   // STARTTLS required, tls.Client(conn, dane.TLSConfig(base, host, res));
//	                     // a handshake error (a *VerifyError inside) defers
//	case res.RequireTLS(): // unusable RRset: STARTTLS required, certificate not checked
//	default:             // no DANE for this host: the next policy (MTA-STS, opportunistic)
//	}
//
// A server that offers no STARTTLS when res.RequireTLS() is a failure
// (TLS-RPT "starttls-not-supported"), not a reason to send in plaintext.
package dane
