package authres

import (
	"errors"
	"fmt"
	"strings"
)

// Bounds on outside input (a header field value from the client).
const (
	maxValueLen    = 64 * 1024
	maxResults     = 100
	maxProps       = 50
	maxCommentNest = 20
)

// Result is one resinfo of an Authentication-Results field (RFC 8601 §2.2):
// method=result, an optional reason and the properties.
type Result struct {
	Method  string // lower case, e.g. "spf", "dkim"
	Version string // method-version, "" if absent
	Value   string // the result keyword, lower case, e.g. "pass"
	Reason  string
	// Props maps "ptype.property" (lower case) to the pvalue, e.g.
	// "smtp.mailfrom" → "example.org".
	Props map[string]string
}

// ErrSyntax is wrapped by every parse error.
var ErrSyntax = errors.New("authres: syntax error")

// Parse parses the value of an Authentication-Results header field (the
// text after "Authentication-Results:", possibly folded) following RFC 8601
// §2.2. It returns the authserv-id and the results; "none" (no-result)
// gives no results.
func Parse(value string) (authservID string, results []Result, err error) {
	if len(value) > maxValueLen {
		return "", nil, fmt.Errorf("%w: field too long", ErrSyntax)
	}
	p := &parser{s: value}
	if err := p.cfws(); err != nil {
		return "", nil, err
	}
	id, err := p.value(true)
	if err != nil {
		return "", nil, fmt.Errorf("%w: authserv-id: %v", ErrSyntax, err)
	}
	if err := p.cfws(); err != nil {
		return id, nil, err
	}
	// Optional authres-version (1*DIGIT).
	if !p.eof() && p.peek() != ';' {
		v, err := p.value(true)
		if err != nil || strings.Trim(v, "0123456789") != "" {
			return id, nil, fmt.Errorf("%w: bad authres-version", ErrSyntax)
		}
	}
	for {
		if err := p.cfws(); err != nil {
			return id, results, err
		}
		if p.eof() {
			break
		}
		if p.peek() != ';' {
			return id, results, fmt.Errorf("%w: want ';' at offset %d", ErrSyntax, p.i)
		}
		p.i++
		if err := p.cfws(); err != nil {
			return id, results, err
		}
		if p.eof() {
			break // tolerate a trailing ';'
		}
		r, none, err := p.resinfo()
		if err != nil {
			return id, results, err
		}
		if none {
			if len(results) > 0 {
				return id, results, fmt.Errorf("%w: 'none' after results", ErrSyntax)
			}
			continue
		}
		if len(results) >= maxResults {
			return id, results, fmt.Errorf("%w: too many results", ErrSyntax)
		}
		results = append(results, r)
	}
	return id, results, nil
}

func (p *parser) resinfo() (Result, bool, error) {
	var r Result
	m, err := p.value(true)
	if err != nil {
		return r, false, fmt.Errorf("%w: method: %v", ErrSyntax, err)
	}
	if err := p.cfws(); err != nil {
		return r, false, err
	}
	if p.eof() || p.peek() == ';' {
		if strings.EqualFold(m, "none") {
			return r, true, nil // no-result
		}
		return r, false, fmt.Errorf("%w: method %q without result", ErrSyntax, m)
	}
	method, version, _ := strings.Cut(m, "/")
	r.Method = strings.ToLower(strings.TrimSpace(method))
	r.Version = strings.TrimSpace(version)
	if !isKeyword(r.Method) {
		return r, false, fmt.Errorf("%w: bad method %q", ErrSyntax, m)
	}
	if p.peek() != '=' {
		return r, false, fmt.Errorf("%w: want '=' after method", ErrSyntax)
	}
	p.i++
	if err := p.cfws(); err != nil {
		return r, false, err
	}
	v, err := p.value(true)
	if err != nil || !isKeyword(v) {
		return r, false, fmt.Errorf("%w: bad result for %s", ErrSyntax, r.Method)
	}
	r.Value = strings.ToLower(v)
	for {
		if err := p.cfws(); err != nil {
			return r, false, err
		}
		if p.eof() || p.peek() == ';' {
			return r, false, nil
		}
		k, err := p.value(true)
		if err != nil {
			return r, false, fmt.Errorf("%w: property: %v", ErrSyntax, err)
		}
		if err := p.cfws(); err != nil {
			return r, false, err
		}
		if p.eof() || p.peek() != '=' {
			return r, false, fmt.Errorf("%w: want '=' after %q", ErrSyntax, k)
		}
		p.i++
		if err := p.cfws(); err != nil {
			return r, false, err
		}
		val, err := p.value(false)
		if err != nil {
			return r, false, fmt.Errorf("%w: value of %q: %v", ErrSyntax, k, err)
		}
		k = strings.ToLower(k)
		if k == "reason" {
			r.Reason = val
			continue
		}
		ptype, prop, ok := strings.Cut(k, ".")
		if !ok || !isKeyword(ptype) || prop == "" {
			return r, false, fmt.Errorf("%w: bad property %q", ErrSyntax, k)
		}
		if r.Props == nil {
			r.Props = map[string]string{}
		}
		if len(r.Props) >= maxProps {
			return r, false, fmt.Errorf("%w: too many properties", ErrSyntax)
		}
		r.Props[k] = val
	}
}

// isKeyword: RFC 8601 §2.2 Keyword = ALPHA/DIGIT/"-" with no leading or
// trailing "-" (we accept "_" too, seen in the wild).
func isKeyword(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

type parser struct {
	s string
	i int
}

func (p *parser) eof() bool  { return p.i >= len(p.s) }
func (p *parser) peek() byte { return p.s[p.i] }

// cfws skips folding white space and comments (RFC 5322 §3.2.2).
func (p *parser) cfws() error {
	depth := 0
	for !p.eof() {
		c := p.s[p.i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			p.i++
		case c == '(':
			depth++
			if depth > maxCommentNest {
				return fmt.Errorf("%w: comments nested too deep", ErrSyntax)
			}
			p.i++
		case c == ')' && depth > 0:
			depth--
			p.i++
		case c == '\\' && depth > 0:
			p.i += 2
		case depth > 0:
			p.i++
		default:
			return nil
		}
	}
	if depth > 0 {
		return fmt.Errorf("%w: unterminated comment", ErrSyntax)
	}
	return nil
}

// value reads a quoted-string or a run of non-special characters. With
// stopAtEq, '=' also ends the run (keys, methods, the authserv-id).
func (p *parser) value(stopAtEq bool) (string, error) {
	if p.eof() {
		return "", errors.New("unexpected end")
	}
	if p.peek() == '"' {
		p.i++
		var b strings.Builder
		for !p.eof() {
			c := p.s[p.i]
			switch c {
			case '"':
				p.i++
				return b.String(), nil
			case '\\':
				if p.i+1 < len(p.s) {
					b.WriteByte(p.s[p.i+1])
				}
				p.i += 2
			case '\r', '\n':
				p.i++ // folded quoted string: drop the line break
			default:
				b.WriteByte(c)
				p.i++
			}
		}
		return "", errors.New("unterminated quoted string")
	}
	start := p.i
	for !p.eof() {
		c := p.s[p.i]
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ';' || c == '(' || c == ')' || c == '"' || (stopAtEq && c == '=') || c < 0x20 || c == 0x7f {
			break
		}
		p.i++
	}
	if p.i == start {
		return "", fmt.Errorf("unexpected %q", p.s[p.i])
	}
	return p.s[start:p.i], nil
}
