// Package sevenbit makes a MIME message fit a narrow SMTP path: no line
// over 998 octets (RFC 5321 §4.5.3.1.6, RFC 5322 §2.1.1) and, for a next
// hop that does not offer 8BITMIME, no octet above 127 (RFC 6152 §3).
// It re-encodes only the parts that need it, quoted-printable for text
// and base64 for anything else (RFC 2045 §6.7, §6.8), so that their
// content survives: what a reader decodes is what was sent. Everything
// else, including the parts that need no change, is kept byte for byte.
//
// Decisions:
//   - Scan reads a message once, as a stream, and reports what it holds
//     (Need); only a message that needs a change is converted, in memory
//     (messages are bounded by the server's size limit).
//   - A multipart body (RFC 2046 §5.1) is converted part by part, nested
//     to MaxDepth; its own transfer encoding, 8bit or binary, becomes 7bit
//     when no 8-bit octet is left. The preamble and epilogue are to be
//     ignored by readers (§5.1.1): when they do not fit, they are dropped.
//   - A message/rfc822 or message/global body is a message: converted
//     inside (RFC 2046 §5.2.1: no other encoding than 7bit, 8bit or binary
//     is allowed for it).
//   - A header line over the limit is folded before white space (RFC 5322
//     §2.2.3), which relaxed DKIM canonicalization ignores (RFC 6376
//     §3.4.2); a header that cannot be folded, and any 8-bit octet in a
//     header (which only SMTPUTF8, RFC 6532, allows), cannot be converted:
//     Convert returns an error wrapping ErrCannotConvert, and the caller
//     refuses to send (RFC 6152 §3: convert, or bounce, never send raw).
//   - A part that has no Content-Type is text/plain (RFC 2045 §5.2), or
//     message/rfc822 inside multipart/digest (RFC 2046 §5.1.5). A top-level
//     message without MIME-Version that gets a Content-Transfer-Encoding
//     gets MIME-Version: 1.0 too (RFC 2045 §4).
package sevenbit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
	"unicode/utf8"
)

// MaxLine is the longest line SMTP may carry, without its CRLF (RFC 5321
// §4.5.3.1.6).
const MaxLine = 998

// MaxDepth bounds the nesting of multiparts and messages converted; a
// deeper message cannot be converted.
const MaxDepth = 32

// MaxParts bounds the parts of one message.
const MaxParts = 10000

// Need says what in a message does not fit a narrow path.
type Need uint8

const (
	// EightBit: an octet above 127 (RFC 6152).
	EightBit Need = 1 << iota
	// LongLine: a line over MaxLine octets.
	LongLine
)

// Has reports whether n holds every bit of m.
func (n Need) Has(m Need) bool { return n&m == m }

// Reasons names the bits of n, for metrics: "8bit", "long_line".
func (n Need) Reasons() []string {
	var out []string
	if n.Has(EightBit) {
		out = append(out, "8bit")
	}
	if n.Has(LongLine) {
		out = append(out, "long_line")
	}
	return out
}

// ErrCannotConvert: the message needs a change that cannot be made without
// altering its content (an 8-bit header, a header line with no place to
// fold, a structure nested too deep).
var ErrCannotConvert = errors.New("message cannot be converted")

// Scan reads r to its end and reports what it holds. A line ends at LF;
// a CR before it is not counted.
func Scan(r io.Reader) (Need, error) {
	var n Need
	buf := make([]byte, 32<<10)
	line := 0       // octets of the current line so far
	lastCR := false // the octet before b was a CR
	for {
		k, err := r.Read(buf)
		b := buf[:k]
		if n&EightBit == 0 && hasHigh(b) {
			n |= EightBit
		}
		for len(b) > 0 && n&LongLine == 0 {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				line += len(b)
				lastCR = b[len(b)-1] == '\r'
				if line > MaxLine+1 { // +1: a CR that may end it
					n |= LongLine
				}
				break
			}
			l := line + i
			if i > 0 && b[i-1] == '\r' || i == 0 && lastCR {
				l--
			}
			if l > MaxLine {
				n |= LongLine
			}
			line, lastCR = 0, false
			b = b[i+1:]
		}
		if err == io.EOF {
			if lastCR {
				line--
			}
			if line > MaxLine {
				n |= LongLine
			}
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func hasHigh(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// Convert returns msg with what need names made to fit (EightBit: no
// octet above 127 left; LongLine: no line over MaxLine), and what it
// changed. When nothing needed a change, it returns msg itself and 0.
func Convert(msg []byte, need Need) ([]byte, Need, error) {
	c := converter{need: need}
	out, changed, err := c.entity(msg, "text/plain", 0, true)
	if err != nil {
		return nil, 0, err
	}
	if !changed {
		return msg, 0, nil
	}
	return out, c.did, nil
}

type converter struct {
	need  Need
	did   Need
	parts int
}

// fits reports whether b already fits (no 8-bit octet when need has
// EightBit, no long line when it has LongLine).
func (c *converter) fits(b []byte) bool {
	return c.problems(b) == 0
}

func (c *converter) problems(b []byte) Need {
	var n Need
	if c.need.Has(EightBit) && hasHigh(b) {
		n |= EightBit
	}
	if c.need.Has(LongLine) && longestLine(b) > MaxLine {
		n |= LongLine
	}
	return n
}

// longestLine is the length of the longest line of b without its line end.
func longestLine(b []byte) int {
	max := 0
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		l := b
		if i >= 0 {
			l, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		l = bytes.TrimSuffix(l, []byte("\r"))
		if len(l) > max {
			max = len(l)
		}
	}
	return max
}

// field is one header field, as it was (continuation lines and final
// line end included).
type field struct {
	raw  []byte
	name string // as written, without white space
}

// splitEntity cuts an entity into its header fields and its body. The
// header ends at the first empty line (RFC 5322 §2.1); an entity that
// starts with one has no header.
func splitEntity(b []byte) (fields []field, body []byte, err error) {
	i := 0
	for i < len(b) {
		next := len(b)
		if j := bytes.IndexByte(b[i:], '\n'); j >= 0 {
			next = i + j + 1
		}
		line := b[i:next]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return fields, b[next:], nil
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			f := &fields[len(fields)-1]
			f.raw = b[i-len(f.raw) : next]
		} else {
			name, _, ok := bytes.Cut(line, []byte(":"))
			if !ok {
				// Not a field: the body starts here (no empty line).
				return fields, b[i:], nil
			}
			fields = append(fields, field{raw: line, name: strings.TrimSpace(string(name))})
		}
		i = next
	}
	return fields, nil, nil
}

// value returns the unfolded value of the first field called name.
func value(fields []field, name string) (string, bool) {
	for _, f := range fields {
		if strings.EqualFold(f.name, name) {
			_, v, _ := bytes.Cut(f.raw, []byte(":"))
			s := strings.NewReplacer("\r\n", "", "\n", "").Replace(string(v))
			return strings.TrimSpace(s), true
		}
	}
	return "", false
}

// entity converts one entity (header and body). deflt is its content
// type when it names none.
func (c *converter) entity(b []byte, deflt string, depth int, top bool) ([]byte, bool, error) {
	if depth > MaxDepth {
		return nil, false, fmt.Errorf("%w: nested deeper than %d", ErrCannotConvert, MaxDepth)
	}
	c.parts++
	if c.parts > MaxParts {
		return nil, false, fmt.Errorf("%w: more than %d parts", ErrCannotConvert, MaxParts)
	}
	if c.fits(b) {
		return b, false, nil
	}
	fields, body, err := splitEntity(b)
	if err != nil {
		return nil, false, err
	}
	head, headChanged, err := c.header(fields)
	if err != nil {
		return nil, false, err
	}
	mt, params := deflt, map[string]string(nil)
	if ct, ok := value(fields, "Content-Type"); ok {
		if t, p, err := mime.ParseMediaType(ct); err == nil {
			mt, params = t, p
		} else {
			mt = "application/octet-stream" // RFC 2045 §5.2 would say text/plain; but this one is not plain
			if strings.HasPrefix(strings.ToLower(ct), "text/") {
				mt = "text/plain"
			}
		}
	}
	cteVal, _ := value(fields, "Content-Transfer-Encoding")
	cte := strings.ToLower(cteVal)
	identity := cte == "" || cte == "7bit" || cte == "8bit" || cte == "binary"

	var newBody []byte
	var newCTE string // "" keeps the field as it is
	switch {
	case c.fits(body):
		newBody = body
	case strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" && identity:
		inner := "text/plain"
		if mt == "multipart/digest" {
			inner = "message/rfc822"
		}
		newBody, err = c.multipart(body, params["boundary"], inner, depth)
		if err != nil {
			return nil, false, err
		}
		newCTE = c.sevenIfClean(cte, newBody)
	case (mt == "message/rfc822" || mt == "message/global") && identity:
		newBody, _, err = c.entity(body, "text/plain", depth+1, false)
		if err != nil {
			return nil, false, err
		}
		newCTE = c.sevenIfClean(cte, newBody)
	default:
		content := body
		switch cte {
		case "quoted-printable":
			content, err = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		case "base64":
			content, err = decodeBase64(body)
		default:
			if !identity {
				err = fmt.Errorf("unknown transfer encoding %q", cteVal)
			}
		}
		if err != nil {
			return nil, false, fmt.Errorf("%w: %v", ErrCannotConvert, err)
		}
		c.did |= c.problems(body)
		if strings.HasPrefix(mt, "text/") {
			newBody, newCTE = encodeQP(content), "quoted-printable"
		} else {
			newBody, newCTE = encodeBase64(content), "base64"
		}
	}
	if newCTE == "" && !headChanged && bytes.Equal(newBody, body) {
		return b, false, nil
	}
	var out bytes.Buffer
	out.Grow(len(b) + len(b)/3 + 128)
	for _, f := range head {
		if newCTE != "" && strings.EqualFold(f.name, "Content-Transfer-Encoding") {
			continue
		}
		out.Write(f.raw)
	}
	if newCTE != "" {
		if top {
			if _, ok := value(fields, "MIME-Version"); !ok {
				out.WriteString("MIME-Version: 1.0\r\n")
			}
			if _, ok := value(fields, "Content-Type"); !ok && newCTE == "quoted-printable" && hasHigh(body) {
				// RFC 2045 §5.2's default is US-ASCII, which 8-bit text is
				// not: say what it is, or that it is not known (RFC 1428).
				cs := "unknown-8bit"
				if utf8.Valid(body) {
					cs = "utf-8"
				}
				out.WriteString("Content-Type: text/plain; charset=" + cs + "\r\n")
			}
		}
		out.WriteString("Content-Transfer-Encoding: " + newCTE + "\r\n")
	}
	out.WriteString("\r\n")
	out.Write(newBody)
	return out.Bytes(), true, nil
}

// sevenIfClean returns "7bit" for a composite body whose encoding said
// 8bit or binary, once it holds no 8-bit octet; else "" (no change).
func (c *converter) sevenIfClean(cte string, body []byte) string {
	if (cte == "8bit" || cte == "binary") && c.need.Has(EightBit) && !hasHigh(body) {
		return "7bit"
	}
	return ""
}

// header checks and folds the header fields: an 8-bit octet cannot be
// converted; a line over MaxLine is folded before white space.
func (c *converter) header(fields []field) ([]field, bool, error) {
	changed := false
	out := fields
	for i, f := range fields {
		if c.need.Has(EightBit) && hasHigh(f.raw) {
			return nil, false, fmt.Errorf("%w: 8-bit octets in the %s header field (RFC 6532 needs SMTPUTF8)", ErrCannotConvert, f.name)
		}
		if c.need.Has(LongLine) && longestLine(f.raw) > MaxLine {
			folded, err := fold(f.raw)
			if err != nil {
				return nil, false, fmt.Errorf("%w: %s header field: %v", ErrCannotConvert, f.name, err)
			}
			if !changed {
				out = append([]field(nil), fields...)
				changed = true
			}
			out[i].raw = folded
			c.did |= LongLine
		}
	}
	return out, changed, nil
}

// fold breaks every line of a field longer than MaxLine before the last
// white space that keeps it within the limit (RFC 5322 §2.2.3: folding is
// CRLF before WSP).
func fold(raw []byte) ([]byte, error) {
	var out bytes.Buffer
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		line := raw
		if i >= 0 {
			line, raw = raw[:i+1], raw[i+1:]
		} else {
			raw = nil
		}
		body := bytes.TrimRight(line, "\r\n")
		end := line[len(body):]
		for len(body) > MaxLine {
			// The first octet of a continuation line is its WSP; a fold
			// at 0 would make an empty line.
			cut := bytes.LastIndexAny(body[1:MaxLine+1], " \t") + 1
			if cut <= 0 {
				return nil, errors.New("a line over 998 octets without white space to fold at")
			}
			out.Write(body[:cut])
			out.WriteString("\r\n")
			body = body[cut:]
		}
		out.Write(body)
		out.Write(end)
	}
	return out.Bytes(), nil
}

// multipart converts the parts of a multipart body (RFC 2046 §5.1.1).
// The line end before a delimiter line belongs to the delimiter.
func (c *converter) multipart(body []byte, boundary, inner string, depth int) ([]byte, error) {
	delim := []byte("--" + boundary)
	var out bytes.Buffer
	out.Grow(len(body) + len(body)/3)
	// Positions of delimiter lines.
	type dl struct {
		start, end int // the line, line end included
		close      bool
	}
	var dls []dl
	for i := 0; i < len(body); {
		next := len(body)
		if j := bytes.IndexByte(body[i:], '\n'); j >= 0 {
			next = i + j + 1
		}
		line := bytes.TrimRight(body[i:next], "\r\n")
		if rest, ok := bytes.CutPrefix(line, delim); ok {
			close := bytes.HasPrefix(rest, []byte("--"))
			if close {
				rest = rest[2:]
			}
			if len(bytes.Trim(rest, " \t")) == 0 {
				dls = append(dls, dl{start: i, end: next, close: close})
				if close {
					break
				}
			}
		}
		i = next
	}
	if len(dls) == 0 {
		// No parts: the whole body is a preamble nobody reads.
		return c.ignorable(body), nil
	}
	out.Write(c.ignorable(body[:dls[0].start]))
	for k, d := range dls {
		out.Write(body[d.start:d.end])
		if d.close {
			out.Write(c.ignorable(body[d.end:]))
			break
		}
		stop := len(body)
		if k+1 < len(dls) {
			stop = dls[k+1].start
		}
		part := body[d.end:stop]
		// The CRLF before the next delimiter is the delimiter's.
		content, eol := part, []byte(nil)
		if k+1 < len(dls) {
			if bytes.HasSuffix(content, []byte("\r\n")) {
				content, eol = content[:len(content)-2], []byte("\r\n")
			} else if bytes.HasSuffix(content, []byte("\n")) {
				content, eol = content[:len(content)-1], []byte("\n")
			}
		}
		conv, _, err := c.entity(content, inner, depth+1, false)
		if err != nil {
			return nil, err
		}
		out.Write(conv)
		out.Write(eol)
	}
	return out.Bytes(), nil
}

// ignorable returns a preamble or epilogue as it is when it fits, else
// nothing (RFC 2046 §5.1.1: readers ignore it).
func (c *converter) ignorable(b []byte) []byte {
	if c.fits(b) {
		return b
	}
	c.did |= c.problems(b)
	// Keep the line end that may follow, so the structure stays.
	if bytes.HasSuffix(b, []byte("\r\n")) {
		return []byte("\r\n")
	}
	return nil
}

// decodeBase64 decodes a base64 body, ignoring line ends and other
// characters outside the alphabet (RFC 2045 §6.8).
func decodeBase64(b []byte) ([]byte, error) {
	clean := make([]byte, 0, len(b))
	for _, c := range b {
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' {
			clean = append(clean, c)
		}
	}
	// Padding may be missing or cut short.
	s := strings.TrimRight(string(clean), "=")
	return base64.RawStdEncoding.DecodeString(s)
}

// encodeBase64 encodes b in lines of 76 characters, each ending in CRLF
// (RFC 2045 §6.8).
func encodeBase64(b []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(b)
	var out bytes.Buffer
	out.Grow(len(enc) + len(enc)/76*2 + 2)
	for len(enc) > 76 {
		out.WriteString(enc[:76])
		out.WriteString("\r\n")
		enc = enc[76:]
	}
	if len(enc) > 0 {
		out.WriteString(enc)
		out.WriteString("\r\n")
	}
	return out.Bytes()
}

// encodeQP encodes text as quoted-printable (RFC 2045 §6.7): line breaks
// stay line breaks (CRLF), long lines get soft breaks.
func encodeQP(b []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(b) + len(b)/8)
	w := quotedprintable.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}
