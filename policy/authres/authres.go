// Package authres writes, parses and strips Authentication-Results header
// fields (RFC 8601).
//
//   - Header turns the facts of the spf, dkim, dmarc and iprev checks into
//     one folded Authentication-Results field (RFC 8601 §2.2, §2.7).
//   - StripOwn removes, from an incoming header block, every
//     Authentication-Results field that claims our authserv-id (RFC 8601 §5:
//     a border MTA MUST remove or rename them before adding its own).
//   - Parse reads an Authentication-Results value (RFC 8601 §2.2).
package authres

import (
	"fmt"
	"net/netip"
	"strings"

	"moat/policy"
)

// FieldName is the header field name (RFC 8601 §2.2).
const FieldName = "Authentication-Results"

// maxReasonLen bounds the comment text copied from a check's Reason.
const maxReasonLen = 120

// Results are the facts written into one Authentication-Results field. A
// nil pointer means the check did not run and is left out.
type Results struct {
	SPF   *policy.SPF
	DKIM  *policy.DKIM
	DMARC *policy.DMARC
	IPRev *policy.IPRev
	// ARC is the validation of the message's ARC chain, written as the
	// "arc" method (RFC 8617 §10.1) when a chain was found.
	ARC *policy.ARC
	// ClientIP is the connecting address, written as policy.iprev (RFC 8601
	// §3).
	ClientIP netip.Addr
}

// Header returns the complete "Authentication-Results: ..." field for
// authservID (normally the hostname), folded with one resinfo per line and
// CRLF line endings, ending in CRLF. With no results it writes the
// no-result form "; none" (RFC 8601 §2.2).
func Header(authservID string, res Results) string {
	var parts []string
	if s := res.IPRev; s != nil {
		p := "iprev=" + string(orTemp(s.Result))
		if len(s.Names) > 0 {
			p += " " + comment(s.Names[0])
		}
		if res.ClientIP.IsValid() {
			p += " policy.iprev=" + res.ClientIP.Unmap().String()
		}
		parts = append(parts, p)
	}
	if s := res.SPF; s != nil {
		// RFC 8601 §2.7.2: smtp.mailfrom, or smtp.helo for the HELO check.
		prop := "smtp.mailfrom"
		if s.Identity == "helo" {
			prop = "smtp.helo"
		}
		parts = append(parts, resinfo("spf", s.Result, s.Reason, prop, s.Domain))
	}
	if d := res.DKIM; d != nil {
		if len(d.Signatures) == 0 {
			r := d.Result
			if r == "" {
				r = policy.ResultNone
			}
			parts = append(parts, "dkim="+string(r))
		}
		for _, s := range d.Signatures {
			// RFC 8601 §2.7.1: header.d, header.i, header.s, header.a. (No
			// header.b: policy.DKIMSignature does not carry b=.)
			parts = append(parts, resinfo("dkim", s.Result, s.Reason,
				"header.d", s.Domain, "header.i", s.Identity,
				"header.s", s.Selector, "header.a", s.Algorithm))
		}
	}
	if d := res.DMARC; d != nil {
		// RFC 7489 §11.2: dmarc method, header.from. policy.dmarc is the
		// applied policy (a common, unregistered ptype.property).
		parts = append(parts, resinfo("dmarc", d.Result, d.Reason,
			"header.from", d.Domain, "policy.dmarc", d.Policy))
	}
	if a := res.ARC; a != nil && a.Result != "" && a.Result != string(policy.ResultNone) {
		// RFC 8617 §10.1: method arc, header.oldest-pass and
		// smtp.remote-ip; the chain's length and sealer as a comment.
		p := "arc=" + a.Result + " " + comment(fmt.Sprintf("i=%d d=%s", a.Instances, a.Domain))
		if a.Result == string(policy.ResultPass) {
			// 0 when every set's message signature holds, else the
			// oldest instance whose does (as dkimpy writes it).
			op := a.OldestPass
			if op == 1 {
				op = 0
			}
			p += fmt.Sprintf(" header.oldest-pass=%d", op)
		}
		if res.ClientIP.IsValid() {
			p += " smtp.remote-ip=" + res.ClientIP.Unmap().String()
		}
		parts = append(parts, p)
	}

	var b strings.Builder
	b.WriteString(FieldName + ": " + pvalue(authservID))
	if len(parts) == 0 {
		b.WriteString("; none\r\n")
		return b.String()
	}
	for _, p := range parts {
		b.WriteString(";\r\n\t")
		b.WriteString(p)
	}
	b.WriteString("\r\n")
	return b.String()
}

// resinfo is one method's result (RFC 8601 §2.2): method=result, the
// reason as a comment, then each property given as a pair of
// ptype.property and value, left out when the value is empty.
func resinfo(method string, r policy.Result, reason string, props ...string) string {
	p := method + "=" + string(orTemp(r))
	if reason != "" {
		p += " " + comment(reason)
	}
	for i := 0; i+1 < len(props); i += 2 {
		if props[i+1] != "" {
			p += " " + props[i] + "=" + pvalue(props[i+1])
		}
	}
	return p
}

func orTemp(r policy.Result) policy.Result {
	if r == "" {
		return policy.ResultNone
	}
	return r
}

// comment makes an RFC 5322 comment of free text: printable ASCII only,
// parentheses and backslashes escaped, bounded length.
func comment(s string) string {
	var b strings.Builder
	b.WriteByte('(')
	n := 0
	for i := 0; i < len(s) && n < maxReasonLen; i++ {
		c := s[i]
		switch {
		case c == '(' || c == ')' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			b.WriteByte(' ')
		default:
			b.WriteByte(c)
		}
		n++
	}
	b.WriteByte(')')
	return b.String()
}

// pvalue writes a value as a bare token when it is one (domain names,
// addresses, keywords) and as a quoted-string otherwise (RFC 8601 §2.2,
// RFC 2045 token).
func pvalue(s string) string {
	ok := s != ""
	for i := 0; i < len(s) && ok; i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte("()<>,;:\\\"[]?=", c) >= 0 {
			ok = false
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			b.WriteByte(' ')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// StripOwn returns the header block without any Authentication-Results
// field whose authserv-id equals authservID, compared case-insensitively
// (RFC 8601 §5, §2.5). An Authentication-Results field that does not parse
// far enough to read its authserv-id is removed too: it could be read as
// ours by a less careful consumer. Other fields are kept byte for byte. The
// block may end in the empty line that separates it from the body; line
// endings may be CRLF or LF.
func StripOwn(header []byte, authservID string) []byte {
	out := make([]byte, 0, len(header))
	for start := 0; start < len(header); {
		end := fieldEnd(header, start)
		field := header[start:end]
		if !isOwn(field, authservID) {
			out = append(out, field...)
		}
		start = end
	}
	return out
}

// fieldEnd returns the end of the field that starts at i: the end of its
// last line, following continuation lines that begin with SP or HTAB
// (RFC 5322 §2.2.3).
func fieldEnd(h []byte, i int) int {
	for {
		nl := indexByteFrom(h, i, '\n')
		if nl < 0 {
			return len(h)
		}
		i = nl + 1
		if i >= len(h) || (h[i] != ' ' && h[i] != '\t') {
			return i
		}
	}
}

func indexByteFrom(b []byte, from int, c byte) int {
	for j := from; j < len(b); j++ {
		if b[j] == c {
			return j
		}
	}
	return -1
}

func isOwn(field []byte, authservID string) bool {
	colon := indexByteFrom(field, 0, ':')
	if colon < 0 {
		return false
	}
	name := strings.TrimRight(string(field[:colon]), " \t")
	if !strings.EqualFold(name, FieldName) {
		return false
	}
	p := &parser{s: string(field[colon+1:])}
	if err := p.cfws(); err != nil {
		return true
	}
	id, err := p.value(true)
	if err != nil {
		return true
	}
	return strings.EqualFold(strings.TrimSuffix(id, "."), strings.TrimSuffix(authservID, "."))
}
