package reply

import "strconv"

// AppendWire appends r as the server writes it (RFC 5321 §4.2): one
// line per line of Text, "code-" on all but the last, "code " on the
// last, each with the enhanced code after it unless there is none (RFC
// 2034 §4: on every line). A CR or another control character in the
// text becomes a space: a reply line is text, and the text must not end
// a line or start another reply.
func (r *Reply) AppendWire(b []byte) []byte {
	text := r.Text
	for {
		line, rest, more := cutLine(text)
		b = strconv.AppendInt(b, int64(r.Code), 10)
		if more {
			b = append(b, '-')
		} else {
			b = append(b, ' ')
		}
		if !r.Enhanced.None() {
			b = strconv.AppendInt(b, int64(r.Enhanced[0]), 10)
			b = append(b, '.')
			b = strconv.AppendInt(b, int64(r.Enhanced[1]), 10)
			b = append(b, '.')
			b = strconv.AppendInt(b, int64(r.Enhanced[2]), 10)
			b = append(b, ' ')
		}
		for i := 0; i < len(line); i++ {
			c := line[i]
			if c < ' ' && c != '\t' {
				c = ' '
			}
			b = append(b, c)
		}
		b = append(b, '\r', '\n')
		if !more {
			return b
		}
		text = rest
	}
}

// cutLine splits reply text at its first LF.
func cutLine(s string) (line, rest string, more bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
