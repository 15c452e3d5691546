package verify

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"moat/internal/reply"
)

// Bounds on what a backend may send back.
const (
	// maxLine bounds a reply line. RFC 5321 §4.5.3.1.5 says 512 octets
	// with CRLF; real servers send a little more, so allow about twice.
	maxLine = 1024
	// maxReplyLines bounds a multiline reply (an EHLO answer has a
	// line per extension; a few dozen at most in practice).
	maxReplyLines = 100
)

// wireReply is one SMTP reply (RFC 5321 §4.2): a code and its lines of
// text, without the code and separator.
type wireReply struct {
	code  int
	lines []string
}

// enhanced returns the RFC 3463 enhanced code that starts the text, if
// there is one whose class agrees with the reply code (RFC 3463 §2, RFC
// 2034 §4).
func (r *wireReply) enhanced() (reply.Enhanced, bool) {
	if len(r.lines) == 0 {
		return reply.Enhanced{}, false
	}
	w, _, _ := strings.Cut(r.lines[0], " ")
	e, err := reply.ParseEnhanced(w)
	if err != nil || e[0] != r.code/100 {
		return reply.Enhanced{}, false
	}
	return e, true
}

// text is the reply made printable and short, for logs.
func (r *wireReply) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d", r.code)
	for i, l := range r.lines {
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

// errGarbage marks a reply that does not follow RFC 5321 §4.2.
var errGarbage = errors.New("reply does not parse")

// readReply reads one reply: lines "xyz-text" then a last "xyz text"
// (or a bare "xyz"), all with the same code (RFC 5321 §4.2.1). br must
// have a buffer of maxLine octets: a longer line is an error.
func readReply(br *bufio.Reader) (*wireReply, error) {
	r := &wireReply{}
	for {
		b, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, fmt.Errorf("%w: line longer than %d octets", errGarbage, maxLine)
			}
			return nil, err
		}
		line := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if len(line) < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' {
			return nil, fmt.Errorf("%w: %q", errGarbage, truncate(line, 40))
		}
		code := int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
		if r.code != 0 && code != r.code {
			return nil, fmt.Errorf("%w: code changes from %d to %d within one reply", errGarbage, r.code, code)
		}
		r.code = code
		last := true
		if len(line) > 3 {
			switch line[3] {
			case ' ':
			case '-':
				last = false
			default:
				return nil, fmt.Errorf("%w: %q", errGarbage, truncate(line, 40))
			}
			r.lines = append(r.lines, line[4:])
		} else {
			r.lines = append(r.lines, "")
		}
		if last {
			return r, nil
		}
		if len(r.lines) >= maxReplyLines {
			return nil, fmt.Errorf("%w: more than %d lines", errGarbage, maxReplyLines)
		}
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// keywords returns the EHLO keywords (RFC 5321 §4.1.1.1), upper case,
// from the lines after the first.
func keywords(r *wireReply) map[string]bool {
	m := map[string]bool{}
	for i, l := range r.lines {
		if i == 0 {
			continue
		}
		k, _, _ := strings.Cut(l, " ")
		m[strings.ToUpper(k)] = true
	}
	return m
}
