package smtpd

import (
	"errors"
	"strconv"
	"strings"

	"moat/internal/reply"
)

// errBadCommand: a line that is not "VERB" or "VERB SP args".
var errBadCommand = errors.New("smtpd: bad command line")

// parseCommand splits a command line (CRLF already removed) into its
// upper-case verb and its argument. RFC 5321 §4.1.1: verbs are four
// letters followed by SP or the end of the line; STARTTLS (RFC 3207 §4)
// is the one longer verb a client may send here. An empty line gives
// an empty verb and no error.
func parseCommand(line string) (verb, arg string, err error) {
	if line == "" {
		return "", "", nil
	}
	v, rest, _ := strings.Cut(line, " ")
	if len(v) == 8 && strings.EqualFold(v, "STARTTLS") {
		return "STARTTLS", strings.TrimSpace(rest), nil
	}
	if len(v) != 4 {
		return "", "", errBadCommand
	}
	for i := 0; i < 4; i++ {
		c := v[i] | 0x20
		if c < 'a' || c > 'z' {
			return "", "", errBadCommand
		}
	}
	return strings.ToUpper(v), strings.TrimSpace(rest), nil
}

// cutPrefixFold is strings.CutPrefix without regard to case.
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// param is one esmtp-param of MAIL or RCPT (RFC 5321 §4.1.2):
// esmtp-keyword ["=" esmtp-value].
type param struct {
	key   string // upper case
	value string
	eq    bool // "=" was present
}

// maxParams bounds the parameters of one command (each needs at least two
// octets, so a 4096-octet line could carry two thousand).
const maxParams = 16

// parseParams reads the parameters after a path: SP separated, keywords
// of letters, digits and '-' (RFC 5321 §4.1.2 esmtp-keyword), values of
// printable ASCII other than '=' and SP, or UTF-8 with SMTPUTF8 (RFC 6531
// §3.3 relaxes esmtp-value); a keyword given twice is an error.
func parseParams(s string) ([]param, error) {
	var out []param
	for _, f := range strings.Fields(s) {
		if len(out) == maxParams {
			return nil, errors.New("too many parameters")
		}
		k, v, eq := strings.Cut(f, "=")
		if !isKeyword(k) {
			return nil, errors.New("malformed parameter keyword")
		}
		if eq && (v == "" || strings.ContainsAny(v, "=\x00\x7f") || hasControl(v)) {
			return nil, errors.New("malformed parameter value")
		}
		k = strings.ToUpper(k)
		for _, p := range out {
			if p.key == k {
				return nil, errors.New("parameter given twice")
			}
		}
		out = append(out, param{key: k, value: v, eq: eq})
	}
	return out, nil
}

func isKeyword(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' && i > 0) {
			return false
		}
	}
	return true
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' {
			return true
		}
	}
	return false
}

// mailOptions turns the MAIL parameters into MailOptions
// (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8, RFC 4954 §5 AUTH);
// anything else is refused with 555 (RFC 5321 §4.1.1.11), including the
// DSN and REQUIRETLS parameters, which are not advertised.
func mailOptions(ps []param, maxSize int64, utf8 bool) (*MailOptions, *reply.Reply) {
	opts := &MailOptions{}
	for _, p := range ps {
		switch p.key {
		case "SIZE":
			n, err := strconv.ParseUint(p.value, 10, 63)
			if err != nil || !p.eq {
				return nil, replySizeSyntax
			}
			if maxSize > 0 && int64(n) > maxSize {
				// RFC 1870 §6.
				return nil, replyTooBig
			}
			opts.Size = int64(n)
		case "BODY":
			switch v := BodyType(strings.ToUpper(p.value)); v {
			case Body7Bit, Body8BitMIME:
				opts.Body = v
			case bodyBinary:
				// RFC 3030 §3: not advertised here.
				return nil, replyBinaryMIME
			default:
				return nil, replyBodyValue
			}
		case "SMTPUTF8":
			if !utf8 {
				return nil, replyNoSMTPUTF8
			}
			if p.eq {
				// RFC 6531 §3.4: the parameter has no value.
				return nil, replySMTPUTF8Value
			}
			opts.UTF8 = true
		case "AUTH":
			v, ok := decodeXtext(p.value)
			if !ok || !p.eq {
				return nil, replyAuthParam
			}
			if v == "<>" {
				v = ""
			} else {
				pp := pathParser{s: v}
				mb, err := pp.mailbox()
				if err != nil || pp.s != "" {
					return nil, replyAuthMailbox
				}
				v = mb
			}
			opts.Auth = &v
		default:
			return nil, replyMailParam
		}
	}
	return opts, nil
}

// decodeXtext decodes RFC 3461 §4 xtext: "+" followed by two upper-case
// hex digits stands for one octet.
func decodeXtext(s string) (string, bool) {
	if !strings.Contains(s, "+") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '+' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || !isUpperHex(s[i+1]) || !isUpperHex(s[i+2]) {
			return "", false
		}
		n, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
		b.WriteByte(byte(n))
		i += 2
	}
	return b.String(), true
}

func isUpperHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' }

// pathParser reads the paths of RFC 5321 §4.1.2.
type pathParser struct{ s string }

func (p *pathParser) accept(c byte) bool {
	if len(p.s) > 0 && p.s[0] == c {
		p.s = p.s[1:]
		return true
	}
	return false
}

// reversePath: "<>" or a path (MAIL FROM).
func (p *pathParser) reversePath() (string, error) {
	if strings.HasPrefix(p.s, "<>") {
		p.s = p.s[2:]
		return "", nil
	}
	return p.path(false)
}

// path reads Path = "<" [ A-d-l ":" ] Mailbox ">". The source route is
// read and ignored (RFC 5321 §4.1.1.3, §C). With postmaster set, the bare
// "<Postmaster>" of RFC 5321 §4.5.1 is a path too (RCPT TO only). As
// common practice, the angle brackets may be left out.
func (p *pathParser) path(postmaster bool) (string, error) {
	bracket := p.accept('<')
	if postmaster && bracket && len(p.s) >= 11 && strings.EqualFold(p.s[:10], "postmaster") && p.s[10] == '>' {
		pm := p.s[:10]
		p.s = p.s[11:]
		return pm, nil
	}
	if p.accept('@') {
		i := strings.IndexByte(p.s, ':')
		if i < 0 {
			return "", errors.New("malformed source route")
		}
		p.s = p.s[i+1:]
	}
	mb, err := p.mailbox()
	if err != nil {
		return "", err
	}
	if bracket && !p.accept('>') {
		return "", errors.New("missing >")
	}
	return mb, nil
}

// mailbox reads Local-part "@" domain; the domain runs to SP, TAB or '>'
// and is checked by the session, which knows what it routes.
func (p *pathParser) mailbox() (string, error) {
	local, err := p.localPart()
	if err != nil {
		return "", err
	}
	if local == "" {
		return "", errors.New("empty local part")
	}
	if !p.accept('@') {
		return "", errors.New("missing @")
	}
	end := strings.IndexAny(p.s, " \t>")
	if end < 0 {
		end = len(p.s)
	}
	domain := p.s[:end]
	if domain == "" {
		return "", errors.New("empty domain")
	}
	p.s = p.s[end:]
	return local + "@" + domain, nil
}

// localPart reads a Dot-string or a Quoted-string (RFC 5321 §4.1.2); the
// quoted form is returned without quotes and escapes, as go-smtp does.
func (p *pathParser) localPart() (string, error) {
	if p.accept('"') {
		var b strings.Builder
		for {
			if p.s == "" {
				return "", errors.New("unterminated quoted string")
			}
			c := p.s[0]
			p.s = p.s[1:]
			switch c {
			case '"':
				return b.String(), nil
			case '\\':
				if p.s == "" {
					return "", errors.New("unterminated quoted string")
				}
				c = p.s[0]
				p.s = p.s[1:]
			}
			b.WriteByte(c)
		}
	}
	i := 0
	for ; i < len(p.s); i++ {
		switch p.s[i] {
		case '@':
			local := p.s[:i]
			p.s = p.s[i:]
			return local, nil
		case '(', ')', '<', '>', '[', ']', ':', ';', '\\', ',', '"', ' ', '\t':
			return "", errors.New("malformed dot-string")
		}
	}
	local := p.s
	p.s = ""
	return local, nil
}
