package analysis

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"iter"
	"mime"
	"mime/quotedprintable"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/textproto"
	"golang.org/x/text/encoding/htmlindex"

	"moat/policy/content"
)

// Part is one leaf MIME part (RFC 2046 §5.1: a body part that is not
// multipart and not message/rfc822).
type Part struct {
	Type       string // declared media type, lower-case; text/plain when absent (RFC 2045 §5.2)
	Detected   string // media type found from the leading bytes, "" when not sniffed
	Charset    string // declared charset parameter, lower-case
	Encoding   string // Content-Transfer-Encoding, lower-case, "" when absent
	Name       string // decoded file name (RFC 2183 filename, else the name parameter)
	Attachment bool   // Content-Disposition: attachment, or a file name, or not text
	Depth      int    // nesting depth, 0 for a single-part message
	Size       int    // decoded bytes seen (capped: see Truncated)
	Truncated  bool   // the part was longer than the bound it was decoded to

	data []byte // decoded bytes (prefix)
	text string // text/plain or text/html converted to UTF-8 (inline text parts)

	badBase64, badQP, eightBit7bit, badCTE       bool
	charsetMismatch, invalidUTF8, unknownCharset bool
}

// walkResult is the outcome of one bounded walk of the MIME tree.
type walkResult struct {
	parts     []Part
	entities  int  // every entity visited, multiparts included
	depth     int  // deepest nesting seen
	malformed bool // broken structure: bad Content-Type, missing boundary, unclosed multipart
	truncated bool // a bound (parts, depth, context) ended the walk early
}

// plainTexts yields the inline text/plain parts (not attachments) in
// order; it sets *truncated when one it yields was cut short.
func (w *walkResult) plainTexts(truncated *bool) iter.Seq[*Part] {
	return func(yield func(*Part) bool) {
		for i := range w.parts {
			p := &w.parts[i]
			if p.Attachment || p.Type != "text/plain" {
				continue
			}
			if p.Truncated {
				*truncated = true
			}
			if !yield(p) {
				return
			}
		}
	}
}

type walker struct {
	ctx context.Context
	opt Options
	res *walkResult
}

type header interface{ Get(string) string }

func walkMessage(ctx context.Context, m *content.Message, opt Options) *walkResult {
	w := &walker{ctx: ctx, opt: opt, res: &walkResult{}}
	w.entity(rawHeader{m}, m.Body(), 0)
	return w.res
}

// rawHeader reads the top-level fields undecoded (parameters carry their own
// encoding, RFC 2231).
type rawHeader struct{ m *content.Message }

func (h rawHeader) Get(k string) string { return h.m.RawHeader(k) }

// stop reports whether a bound ends the walk.
func (w *walker) stop() bool {
	if w.res.entities >= w.opt.MaxParts || w.ctx.Err() != nil {
		w.res.truncated = true
		return true
	}
	return false
}

func (w *walker) entity(h header, body []byte, depth int) {
	if w.stop() {
		return
	}
	w.res.entities++
	w.res.depth = max(w.res.depth, depth)
	mediaType, params := "text/plain", map[string]string(nil) // RFC 2045 §5.2
	if ct := h.Get("Content-Type"); strings.TrimSpace(ct) != "" {
		mt, p, err := mime.ParseMediaType(ct)
		if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
			w.res.malformed = true
		} else {
			mediaType, params = strings.ToLower(mt), p
		}
	}
	switch {
	case strings.HasPrefix(mediaType, "multipart/"):
		if depth >= w.opt.MaxDepth {
			w.res.truncated = true
			return
		}
		boundary := params["boundary"]
		if boundary == "" || len(boundary) > 200 { // RFC 2046 §5.1.1: 1 to 70 characters
			w.res.malformed = true
			return
		}
		w.multipart(body, boundary, depth)
		return
	case mediaType == "message/rfc822" && !isAttachment(h):
		if depth >= w.opt.MaxDepth {
			w.res.truncated = true
			return
		}
		// RFC 2046 §5.2.1: the body is a whole message; its header
		// section starts the body.
		hb, rest := splitHeader(body)
		w.entity(parseHeader(hb, &w.res.malformed), rest, depth+1)
		return
	}
	w.leaf(h, mediaType, params, body, depth)
}

func isAttachment(h header) bool {
	d, _, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
	return strings.EqualFold(d, "attachment")
}

// multipart splits body at its delimiter lines (RFC 2046 §5.1.1) and visits
// each body part. The preamble and epilogue are ignored.
func (w *walker) multipart(body []byte, boundary string, depth int) {
	delim := []byte("--" + boundary)
	pos := nextDelimiter(body, delim, 0)
	if pos < 0 {
		w.res.malformed = true // no body part at all
		return
	}
	for {
		p := pos + len(delim)
		if bytes.HasPrefix(body[p:], []byte("--")) {
			return // close-delimiter
		}
		nl := bytes.IndexByte(body[p:], '\n')
		if nl < 0 {
			w.res.malformed = true
			return
		}
		start := p + nl + 1
		next := nextDelimiter(body, delim, start)
		end := len(body)
		if next >= 0 {
			end = next - 1 // the LF before the delimiter
		}
		part := body[start:max(start, end)]
		// RFC 2046 §5.1.1: the CRLF before a delimiter belongs to it.
		part = bytes.TrimSuffix(part, []byte("\r"))
		hb, rest := splitHeader(part)
		w.entity(parseHeader(hb, &w.res.malformed), rest, depth+1)
		if next < 0 {
			w.res.malformed = true // no close-delimiter
			return
		}
		if w.stop() {
			return
		}
		pos = next
	}
}

// nextDelimiter returns the offset of the next delimiter line at or after
// from: "--boundary" at the start of a line, followed by "--" or by
// optional white space and the end of the line (RFC 2046 §5.1.1), so that
// boundary "b1" does not match a line "--b10". It returns -1 if none.
func nextDelimiter(body, delim []byte, from int) int {
	for i := from; i < len(body); {
		k := bytes.Index(body[i:], delim)
		if k < 0 {
			return -1
		}
		at := i + k
		i = at + 1
		if at > 0 && body[at-1] != '\n' {
			continue
		}
		rest := body[at+len(delim):]
		if bytes.HasPrefix(rest, []byte("--")) {
			return at
		}
		j := 0
		for j < len(rest) && (rest[j] == ' ' || rest[j] == '\t') {
			j++
		}
		if j == len(rest) || rest[j] == '\r' || rest[j] == '\n' {
			return at
		}
	}
	return -1
}

// splitHeader splits an entity at the blank line ending its header section.
func splitHeader(b []byte) (hdr, body []byte) {
	if bytes.HasPrefix(b, []byte("\r\n")) {
		return nil, b[2:]
	}
	if bytes.HasPrefix(b, []byte("\n")) {
		return nil, b[1:]
	}
	i := bytes.Index(b, []byte("\n\r\n"))
	j := bytes.Index(b, []byte("\n\n"))
	switch {
	case i >= 0 && (j < 0 || i < j):
		return b[:i+1], b[i+3:]
	case j >= 0:
		return b[:j+1], b[j+2:]
	}
	return b, nil
}

func parseHeader(b []byte, malformed *bool) header {
	if len(b) == 0 {
		return &textproto.Header{}
	}
	h, err := textproto.ReadHeader(bufio.NewReaderSize(bytes.NewReader(b), min(len(b), 4096)))
	if err != nil && !errors.Is(err, io.EOF) {
		*malformed = true
	}
	return &h
}

func (w *walker) leaf(h header, mediaType string, params map[string]string, body []byte, depth int) {
	p := Part{
		Type:     mediaType,
		Charset:  strings.ToLower(strings.TrimSpace(params["charset"])),
		Encoding: strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))),
		Depth:    depth,
	}
	disp, dparams, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
	p.Name = decodeWord(dparams["filename"])
	if p.Name == "" {
		p.Name = decodeWord(params["name"])
	}
	isText := mediaType == "text/plain" || mediaType == "text/html"
	p.Attachment = strings.EqualFold(disp, "attachment") || p.Name != "" || !isText

	limit := 4096 // enough to sniff the type
	if isText {
		limit = max(w.opt.MaxHTMLBytes, w.opt.MaxTextBytes)
	}
	p.decode(body, limit)
	if p.Attachment && p.Truncated && maybeZip(&p) {
		p.decode(body, w.opt.MaxPartBytes) // the central directory is at the end
	}
	if p.Attachment || !isText {
		p.Detected = detect(p.data)
	}
	if strings.HasPrefix(mediaType, "text/") {
		p.checkCharset()
		if !p.Attachment {
			p.text = toUTF8(p.data, p.Charset)
		}
	}
	w.res.parts = append(w.res.parts, p)
}

// decode decodes at most limit bytes of body by its transfer encoding
// (RFC 2045 §6) and notes the anomalies it meets.
func (p *Part) decode(body []byte, limit int) {
	p.badBase64, p.badQP, p.eightBit7bit, p.badCTE, p.Truncated = false, false, false, false, false
	switch p.Encoding {
	case "base64":
		p.data, p.badBase64, p.Truncated = decodeBase64(body, limit)
	case "quoted-printable":
		r := quotedprintable.NewReader(bytes.NewReader(body))
		buf := make([]byte, 0, min(len(body), limit)+1)
		b := bytes.NewBuffer(buf)
		_, err := b.ReadFrom(io.LimitReader(r, int64(limit)+1))
		// Go's reader lets some damage through; look for it too.
		if err != nil || badQP(body[:min(len(body), limit*3)]) {
			p.badQP = true
		}
		p.data = b.Bytes()
		if len(p.data) > limit {
			p.data, p.Truncated = p.data[:limit], true
		}
	default:
		switch p.Encoding {
		case "", "7bit":
			// RFC 2045 §2.7: 7bit data holds no octet above 127.
			p.eightBit7bit = hasHighBit(body[:min(len(body), limit)])
		case "8bit", "binary":
		default:
			p.badCTE = true // RFC 2045 §6.4: unknown, treat as octet-stream
		}
		p.data = body
		if len(p.data) > limit {
			p.data, p.Truncated = p.data[:limit], true
		}
	}
	p.Size = len(p.data)
}

// decodeBase64 decodes base64 text leniently (RFC 2045 §6.8: characters
// outside the alphabet are ignored) and reports whether any were found or
// the data did not decode cleanly.
func decodeBase64(body []byte, limit int) (out []byte, bad, truncated bool) {
	maxIn := (limit/3 + 1) * 4
	clean := make([]byte, 0, min(len(body), maxIn))
scan:
	for _, c := range body {
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '+', c == '/', c == '=':
			if len(clean) >= maxIn {
				truncated = true
				break scan
			}
			clean = append(clean, c)
		default:
			bad = true
		}
	}
	if truncated {
		clean = clean[:len(clean)/4*4]
	}
	out = make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
	n := 0
	// Some mailers pad each encoded line or chunk: RFC 2045 §6.8 allows
	// "=" only at the end, so that is an anomaly, but the chunks after it
	// are decoded too (an archive's directory sits at its end).
	for rest := clean; len(rest) > 0; {
		seg := rest
		if i := bytes.IndexByte(rest, '='); i >= 0 {
			j := i
			for j < len(rest) && rest[j] == '=' {
				j++
			}
			seg, rest = rest[:j], rest[j:]
			if len(rest) > 0 {
				bad = true
			}
		} else {
			rest = nil
		}
		m, err := base64.StdEncoding.Decode(out[n:], seg)
		if err != nil {
			bad = true
			var ce base64.CorruptInputError
			if errors.As(err, &ce) {
				// keep what decoded before the damage
				m, _ = base64.StdEncoding.Decode(out[n:], seg[:int(ce)/4*4])
			}
		}
		n += m
	}
	out = out[:n]
	if len(out) > limit {
		out, truncated = out[:limit], true
	}
	return out, bad, truncated
}

// badQP reports an "=" that starts neither an escape of two hex digits
// nor a soft line break (RFC 2045 §6.7 rules 1 and 5).
func badQP(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '=' {
			continue
		}
		rest := b[i+1:]
		if len(rest) >= 2 && isHex(rest[0]) && isHex(rest[1]) {
			i += 2
			continue
		}
		// soft line break: "=" then optional transport padding then EOL or end
		j := 0
		for j < len(rest) && (rest[j] == ' ' || rest[j] == '\t') {
			j++
		}
		if j == len(rest) || rest[j] == '\r' || rest[j] == '\n' {
			continue
		}
		return true
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func hasHighBit(b []byte) bool {
	for ; len(b) >= 8; b = b[8:] { // eight bytes at a time
		if binary.LittleEndian.Uint64(b)&0x8080808080808080 != 0 {
			return true
		}
	}
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// checkCharset compares the declared charset with the bytes (RFC 2046
// §4.1.2: us-ascii is the default and holds 7-bit bytes only).
func (p *Part) checkCharset() {
	switch p.Charset {
	case "", "us-ascii", "ascii":
		if hasHighBit(p.data) {
			p.charsetMismatch = true
		}
	case "utf-8", "utf8":
		if !utf8.Valid(trimPartialRune(p.data, p.Truncated)) {
			p.charsetMismatch, p.invalidUTF8 = true, true
		}
	default:
		if _, err := htmlindex.Get(p.Charset); err != nil {
			p.unknownCharset = true
		}
	}
}

// trimPartialRune drops a rune cut in half by a size bound.
func trimPartialRune(b []byte, cut bool) []byte {
	if !cut {
		return b
	}
	for i := 0; i < utf8.UTFMax && len(b) > 0; i++ {
		if r, _ := utf8.DecodeLastRune(b); r != utf8.RuneError {
			break
		}
		b = b[:len(b)-1]
	}
	return b
}

// toUTF8 converts text from its declared charset; unknown charsets and
// invalid bytes are kept as they are (invalid UTF-8 is replaced later).
func toUTF8(b []byte, charset string) string {
	switch charset {
	case "", "us-ascii", "ascii", "utf-8", "utf8":
		return validUTF8(b)
	}
	enc, err := htmlindex.Get(charset)
	if err != nil {
		return validUTF8(b)
	}
	out, err := enc.NewDecoder().Bytes(b)
	if err != nil {
		return validUTF8(b)
	}
	return validUTF8(out)
}

// validUTF8 is b as a string, each run of invalid bytes replaced by
// U+FFFD; copied once when it is valid already (the common case).
func validUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

var wordDecoder = &mime.WordDecoder{CharsetReader: func(label string, r io.Reader) (io.Reader, error) {
	enc, err := htmlindex.Get(label)
	if err != nil {
		return nil, err
	}
	return enc.NewDecoder().Reader(r), nil
}}

// decodeWord decodes RFC 2047 encoded words in a parameter value; on error
// the value is kept.
func decodeWord(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	if d, err := wordDecoder.DecodeHeader(s); err == nil {
		return d
	}
	return s
}
