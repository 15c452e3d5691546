// Package mtasts is the sending side of SMTP MTA Strict Transport
// Security (RFC 8461): it finds a domain's policy (the `_mta-sts` TXT
// record, then the policy file over HTTPS), parses it, caches it and says
// which mail exchangers it allows. What to do with the answer (refuse
// plain text, verify the certificate, defer) is relay/smtpout's.
//
// Decisions, with the RFC sections they follow:
//
//   - The TXT record (§3.1) must start with "v=STSv1" and carry an id of
//     1 to 32 letters and digits; several records that start with
//     "v=STSv1" mean no usable record.
//   - The policy is fetched from https://mta-sts.<domain>/.well-known/
//     mta-sts.txt (§3.3) with a certificate verified against that name
//     (WebPKI; the roots are injectable for tests), HTTP redirects refused
//     (§3.3 "MUST NOT follow redirects"), a 200 status and a text/plain
//     media type required (§3.2), at most 64 KiB read (§3.3 suggests the
//     limit) and a deadline on the whole fetch (Options.FetchTimeout).
//   - The policy (§3.2): lines "key: value" ending in CRLF or LF; version
//     STSv1, mode enforce, testing or none, max_age from 0 to 31557600
//     seconds, at least one mx pattern unless the mode is none; unknown
//     keys are ignored and, but for mx, only the first of a repeated key
//     counts. A pattern "*.example.com" matches exactly one leftmost
//     label (§4.1); matching is case-insensitive.
//   - Caching (§3.3, §5.1): a policy is kept until its max_age runs out.
//     A new fetch happens only when the TXT id differs from the cached
//     one's; when the TXT record is missing or its lookup fails, or the
//     fetch fails, an unexpired cached policy keeps applying. With no
//     cached policy, a failed fetch means no policy (§5: mail goes as
//     without MTA-STS), reported as a fetch error for TLS-RPT.
//   - The cache is bounded: an LRU in memory in front of a persistent
//     store (a bbolt file in data_dir, or a shared key-value store such as
//     moat's Redis cache for a fleet).
package mtasts
