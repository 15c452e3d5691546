package gateway

import (
	"bytes"
	"strings"

	"moat/policy/scanner"
)

// Bounds of the header changes a milter may ask for one message: they
// come from outside, so a misbehaving milter cannot grow a message
// without end.
const (
	maxHeaderChanges   = 100
	maxChangeNameLen   = 128
	maxChangeValueLen  = 8 << 10
	maxChangedHeadSize = 1 << 20
)

// ApplyHeaderChanges returns raw (CRLF line ends) with a milter's header
// changes made, in order: Add appends a field to the header, Insert puts
// it before the Index-th field (0 = first; past the end appends), Replace
// changes the Index-th (1-based) field called Name (matched without case)
// or, with an empty Value, deletes it; a Replace of a field that is not
// there adds it, as Sendmail and Postfix do (smfi_chgheader). Changes
// with a name that is not a valid field name (RFC 5322 §3.6.8: printable
// ASCII but ":") are ignored; values are kept to one folded field (RFC
// 5322 §2.2.3: a continuation line starts with white space). The body is
// not touched. raw itself is not modified.
func ApplyHeaderChanges(raw []byte, changes []scanner.HeaderChange) []byte {
	if len(changes) == 0 {
		return raw
	}
	head, rest := splitHeader(raw)
	fields := splitFields(head)
	for i, c := range changes {
		if i == maxHeaderChanges {
			break
		}
		if !validFieldName(c.Name) {
			continue
		}
		line := formatField(c.Name, c.Value)
		switch c.Op {
		case scanner.HeaderAdd:
			fields = append(fields, line)
		case scanner.HeaderInsert:
			at := min(max(c.Index, 0), len(fields))
			fields = append(fields[:at], append([][]byte{line}, fields[at:]...)...)
		case scanner.HeaderReplace:
			at := nthField(fields, c.Name, max(c.Index, 1))
			switch {
			case at < 0 && c.Value != "":
				fields = append(fields, line)
			case at >= 0 && c.Value == "":
				fields = append(fields[:at], fields[at+1:]...)
			case at >= 0:
				fields[at] = line
			}
		}
	}
	var b bytes.Buffer
	for _, f := range fields {
		if b.Len()+len(f) > maxChangedHeadSize {
			break
		}
		b.Write(f)
	}
	b.Write(rest)
	return b.Bytes()
}

// ReplaceBody returns raw with its body (what follows the empty line that
// ends the header, RFC 5322 §2.1) replaced by body; a message without an
// empty line gets one. raw itself is not modified.
func ReplaceBody(raw, body []byte) []byte {
	head, _ := splitHeader(raw)
	if len(head) > 0 && !bytes.HasSuffix(head, []byte("\r\n")) {
		head = append(head[:len(head):len(head)], '\r', '\n')
	}
	out := make([]byte, 0, len(head)+2+len(body))
	out = append(out, head...)
	out = append(out, '\r', '\n')
	return append(out, body...)
}

// splitHeader splits raw after the CRLF of the last header line: rest
// starts with the empty line before the body, or is empty for a message
// without a body. A message starting with an empty line has no header.
func splitHeader(raw []byte) (head, rest []byte) {
	if bytes.HasPrefix(raw, []byte("\r\n")) {
		return nil, raw
	}
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		return raw[:i+2], raw[i+2:]
	}
	return raw, nil
}

// splitFields splits a header block into fields, each with its
// continuation lines and its final CRLF (added when the block lacks it).
func splitFields(head []byte) [][]byte {
	var out [][]byte
	for len(head) > 0 {
		end := 0
		for {
			i := bytes.Index(head[end:], []byte("\r\n"))
			if i < 0 {
				end = len(head)
				break
			}
			end += i + 2
			if end >= len(head) || (head[end] != ' ' && head[end] != '\t') {
				break
			}
		}
		f := head[:end]
		if !bytes.HasSuffix(f, []byte("\r\n")) {
			f = append(append([]byte(nil), f...), '\r', '\n')
		}
		out = append(out, f)
		head = head[end:]
	}
	return out
}

// nthField returns the index of the n-th (1-based) field called name, or -1.
func nthField(fields [][]byte, name string, n int) int {
	for i, f := range fields {
		colon := bytes.IndexByte(f, ':')
		if colon < 0 {
			continue
		}
		if strings.EqualFold(strings.TrimRight(string(f[:colon]), " \t"), name) {
			n--
			if n == 0 {
				return i
			}
		}
	}
	return -1
}

// validFieldName: RFC 5322 §3.6.8 ftext, printable US-ASCII but ":".
func validFieldName(name string) bool {
	if name == "" || len(name) > maxChangeNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// formatField writes "Name: value\r\n", the value's lines folded (a
// continuation line starts with a tab unless it starts with white space;
// empty lines, which would end the header, are dropped) and stray CR and
// NUL octets removed.
func formatField(name, value string) []byte {
	if len(value) > maxChangeValueLen {
		value = value[:maxChangeValueLen]
	}
	var b bytes.Buffer
	b.WriteString(name)
	b.WriteByte(':')
	for i, line := range strings.Split(value, "\n") {
		line = dropCRNUL(line)
		if i == 0 {
			if line != "" && line[0] != ' ' && line[0] != '\t' {
				b.WriteByte(' ')
			}
			b.WriteString(line)
			continue
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		b.WriteString("\r\n")
		if line[0] != ' ' && line[0] != '\t' {
			b.WriteByte('\t')
		}
		b.WriteString(line)
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// dropCRNUL removes CR and NUL octets, leaving every other octet as it is.
func dropCRNUL(s string) string {
	if !strings.ContainsAny(s, "\r\x00") {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\r' && s[i] != 0 {
			b = append(b, s[i])
		}
	}
	return string(b)
}
