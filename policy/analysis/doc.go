// Package analysis turns one parsed message (a *content.Message) into facts
// about its URLs, HTML, MIME structure, header fields and text: the inputs
// of the data-stage rules and of the Bayes classifier. It scores nothing
// and decides nothing (checks produce facts, rules decide).
//
// Analyze returns a Result at once; each fact group is computed lazily, the
// first time it is asked for, and only once (sync.Once), so a rule set that
// reads only header facts never pays for MIME decoding or HTML scanning.
// Result is safe for concurrent use.
//
// Every loop over message input is bounded (Options): parts visited, nesting
// depth, bytes decoded per part, HTML bytes tokenised per part, URLs kept,
// zip members listed; and the whole walk stops when the context given to
// Analyze is done. A group whose bound was hit says so in its Truncated
// fact. Broken input never fails: it shows up as facts.
//
// Standards followed, with the section cited where each decision is made:
//   - RFC 3986: URI syntax (scheme, authority, userinfo, host, port).
//   - RFC 5890/5891 and RFC 3492: IDNA host names and their Punycode A-labels.
//   - RFC 5322: Date (§3.3, §3.6.1), Message-ID (§3.6.4), originator and
//     destination fields (§3.6.2, §3.6.3), trace fields (§3.6.7).
//   - RFC 2045/2046: MIME headers, transfer encodings (§6), media types and
//     multipart bodies (RFC 2046 §5.1); RFC 2047 encoded words; RFC 2183
//     Content-Disposition.
//
// Host lists shipped with the package (shorteners.txt, freemail.txt) are
// embedded; their sources are written at the top of each file.
package analysis
