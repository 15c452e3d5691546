package reply

import (
	"bufio"
	"errors"
	"fmt"
	"strings"
)

// Response is a reply as a client reads it from a server (RFC 5321
// §4.2): the code and the text of each line, without the code and the
// separator. It is kept apart from Reply: a server may send anything, so
// a Response is not checked the way a Reply moat sends is.
type Response struct {
	Code  int
	Lines []string
}

// MaxLines bounds a multiline reply. An EHLO reply has a line per
// extension: a few dozen at most in practice.
const MaxLines = 100

// ErrMalformed marks a reply that does not follow RFC 5321 §4.2.
var ErrMalformed = errors.New("malformed reply")

// Read reads one reply from br (RFC 5321 §4.2.1): lines "xyz-text" then
// a last "xyz text" (or a bare "xyz"), all with the same code, whose
// first digit is 2 to 5 (SMTP has no 1yz replies). A line longer than
// br's buffer, more than MaxLines lines, a bad code, a bad separator or
// a code that changes within the reply is ErrMalformed; a failing read
// is returned as it is. The caller sets the read deadline.
func Read(br *bufio.Reader) (*Response, error) {
	r := &Response{}
	for {
		b, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, fmt.Errorf("%w: line longer than %d octets", ErrMalformed, br.Size())
			}
			return nil, err
		}
		line := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if len(line) < 3 || line[0] < '2' || line[0] > '5' || !isDigit(line[1]) || !isDigit(line[2]) {
			return nil, fmt.Errorf("%w: %q", ErrMalformed, truncate(line, 64))
		}
		code := int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
		if r.Code != 0 && code != r.Code {
			return nil, fmt.Errorf("%w: code changes from %d to %d within one reply", ErrMalformed, r.Code, code)
		}
		r.Code = code
		last := true
		if len(line) > 3 {
			switch line[3] {
			case ' ':
			case '-':
				last = false
			default:
				return nil, fmt.Errorf("%w: %q", ErrMalformed, truncate(line, 64))
			}
			r.Lines = append(r.Lines, line[4:])
		} else {
			r.Lines = append(r.Lines, "")
		}
		if last {
			return r, nil
		}
		if len(r.Lines) >= MaxLines {
			return nil, fmt.Errorf("%w: more than %d lines", ErrMalformed, MaxLines)
		}
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// Enhanced returns the RFC 3463 enhanced code that starts the text, if
// there is one whose class agrees with the reply code (RFC 3463 §2, RFC
// 2034 §4).
func (r *Response) Enhanced() (Enhanced, bool) {
	if len(r.Lines) == 0 {
		return Enhanced{}, false
	}
	w, _, _ := strings.Cut(r.Lines[0], " ")
	e, err := ParseEnhanced(w)
	if err != nil || e[0] != r.Code/100 {
		return Enhanced{}, false
	}
	return e, true
}

// String is the reply made printable and short, for logs and errors:
// the code, then the lines joined by " / ", at most about 300 octets.
func (r *Response) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d", r.Code)
	for i, l := range r.Lines {
		if b.Len() > 300 {
			b.WriteString(" …")
			break
		}
		if i == 0 {
			b.WriteByte(' ')
		} else {
			b.WriteString(" / ")
		}
		for _, c := range []byte(l) {
			if c >= 0x20 && c < 0x7f {
				b.WriteByte(c)
			}
		}
	}
	return b.String()
}

// Keywords returns the extensions of an EHLO reply (RFC 5321
// §4.1.1.1), from the lines after the first: the keyword upper case,
// mapped to its parameters.
func (r *Response) Keywords() map[string]string {
	ext := map[string]string{}
	for i, l := range r.Lines {
		if i == 0 {
			continue // the greeting line
		}
		k, v, _ := strings.Cut(l, " ")
		ext[strings.ToUpper(k)] = v
	}
	return ext
}
