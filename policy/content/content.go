// Package content turns the raw bytes of a message into the facts that
// rules read: header fields, the decoded Subject, From and To addresses,
// the decoded body text and the list of attachments.
//
// The header section is parsed once, in Parse (RFC 5322 §2.2, bounded in
// size and field count). Body facts (text and attachments) are computed
// lazily, the first time a rule asks for them, by one bounded walk of the
// MIME tree (RFC 2045, RFC 2046 §5.1) with github.com/emersion/go-message.
// Encoded words in headers are decoded (RFC 2047 §6); text parts are decoded
// from their transfer encoding (RFC 2045 §6) and charset (RFC 2046 §4.1.2)
// to UTF-8, and text/html is stripped of its tags (the href and src
// targets of tags are kept in the text, so link hosts stay matchable).
// Deeper analysis (URLs, HTML, MIME anomalies, header heuristics) is
// policy/analysis, built on this package.
//
// Broken MIME never fails the parse: the facts hold what could be read and
// Malformed reports that something could not. A line in the header
// section that is neither a field nor a continuation (RFC 5322 §2.2) is
// left out, HeaderMalformed reports it, and the fields after it are read
// all the same, up to the blank line.
package content

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	netmail "net/mail"
	"strings"
	"sync"
	"unsafe"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	"golang.org/x/text/encoding/htmlindex"

	"moat/internal/defaults"
)

// Options bounds the work done on one message. Zero fields take the
// documented defaults.
type Options struct {
	MaxHeaderBytes  int   // header section size; default 256 KiB
	MaxHeaderFields int   // header fields kept; default 1000
	MaxText         int   // decoded body text kept; default 256 KiB
	MaxParts        int   // MIME parts visited; default 200
	MaxDepth        int   // multipart nesting; default 10
	MaxAttachments  int   // attachments listed; default 100
	MaxPartBytes    int64 // bytes decoded per attachment to learn its size; default 32 MiB
}

// DefaultOptions returns the defaults documented on Options.
func DefaultOptions() Options {
	return Options{
		MaxHeaderBytes:  256 << 10,
		MaxHeaderFields: 1000,
		MaxText:         256 << 10,
		MaxParts:        200,
		MaxDepth:        10,
		MaxAttachments:  100,
		MaxPartBytes:    32 << 20,
	}
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	defaults.Positive(&o.MaxHeaderBytes, d.MaxHeaderBytes)
	defaults.Positive(&o.MaxHeaderFields, d.MaxHeaderFields)
	defaults.Positive(&o.MaxText, d.MaxText)
	defaults.Positive(&o.MaxParts, d.MaxParts)
	defaults.Positive(&o.MaxDepth, d.MaxDepth)
	defaults.Positive(&o.MaxAttachments, d.MaxAttachments)
	defaults.Positive(&o.MaxPartBytes, d.MaxPartBytes)
	return o
}

// Attachment is one MIME part that is an attachment: it has
// Content-Disposition: attachment, or a file name (RFC 2183 §2.3), or is a
// non-text leaf part.
type Attachment struct {
	Name        string // decoded file name, "" if none
	ContentType string // lower-case media type, e.g. application/pdf
	Size        int64  // decoded size in bytes (capped at Options.MaxPartBytes)
}

// Message holds the facts of one message. It is safe for concurrent use.
type Message struct {
	raw    []byte
	opt    Options
	header textproto.Header

	headerMalformed bool
	subject         string

	addrOnce sync.Once // From and To are parsed on first use
	from     string
	to       []string

	once          sync.Once
	text          string
	attachments   []Attachment
	bodyMalformed bool

	derivedMu sync.Mutex
	derived   map[any]any // Derived values, by key
}

// Derived returns the value other packages derived from this message under
// key, computing it with fn the first time anyone asks (e.g. the message
// analysis, read by several fact groups and the classifier). key should be
// a value of an unexported type of the caller's package, as for
// context.WithValue; fn must not call Derived of the same message.
func (m *Message) Derived(key any, fn func() any) any {
	m.derivedMu.Lock()
	defer m.derivedMu.Unlock()
	if v, ok := m.derived[key]; ok {
		return v
	}
	v := fn()
	if m.derived == nil {
		m.derived = map[any]any{}
	}
	m.derived[key] = v
	return v
}

// ErrHeaderTooBig is returned when the header section exceeds
// Options.MaxHeaderBytes; the message is then not parsed at all.
var ErrHeaderTooBig = errors.New("content: header section too big")

// Parse reads the header section of raw and prepares lazy body facts. raw
// is kept (not copied) and must not change afterwards. Parse fails only
// when the header section is too big; any other defect sets Malformed.
func Parse(raw []byte, opt Options) (*Message, error) {
	opt = opt.withDefaults()
	m := &Message{raw: raw, opt: opt}
	end := headerEnd(raw, opt.MaxHeaderBytes)
	if end < 0 {
		return nil, ErrHeaderTooBig
	}
	// RFC 5322 §2.2: a line that is neither a field nor the continuation
	// of one makes the header malformed; it is left out and the parse
	// reads on to the blank line, so that no field after it (a second
	// From, a Sender) escapes the rules and the send-as check.
	hdr, dropped := scanHeader(raw[:end])
	// A buffer the size of the header section, not bufio's 4 KiB.
	h, err := textproto.ReadHeader(bufio.NewReaderSize(bytes.NewReader(hdr), min(len(hdr), 4096)))
	if err != nil || dropped {
		m.headerMalformed = true
	}
	if h.Len() > opt.MaxHeaderFields {
		m.headerMalformed = true
		h = truncateHeader(h, opt.MaxHeaderFields)
	}
	m.header = h
	m.subject = decodeWords(h.Get("Subject"))
	return m, nil
}

// headerEnd returns the offset just after the blank line ending the header
// section (or len(raw) when there is no body), or -1 when the header
// section is longer than max.
func headerEnd(raw []byte, max int) int {
	limit := raw
	if len(limit) > max {
		limit = limit[:max]
	}
	if bytes.HasPrefix(limit, []byte("\r\n")) {
		return 2
	}
	if bytes.HasPrefix(limit, []byte("\n")) {
		return 1
	}
	if i := bytes.Index(limit, []byte("\n\r\n")); i >= 0 {
		if j := bytes.Index(limit[:i+1], []byte("\n\n")); j >= 0 {
			return j + 2
		}
		return i + 3
	}
	if i := bytes.Index(limit, []byte("\n\n")); i >= 0 {
		return i + 2
	}
	if len(raw) > max {
		return -1
	}
	return len(raw)
}

// scanHeader checks each line of the header section hdr against RFC 5322
// §2.2: a field starts with a name of printable ASCII other than colon
// (blanks before the colon are tolerated, RFC 5322 §4.5.3 obs-optional),
// then a colon; a line that starts with a space or tab continues the
// field above (§2.2.3). It returns hdr itself when every line is one of
// those, else a copy without the lines that are neither and without
// their continuation lines, and dropped true. The scan stops at the
// blank line that ends the section.
func scanHeader(hdr []byte) (out []byte, dropped bool) {
	keep := false // whether the field being continued was kept
	for off := 0; off < len(hdr); {
		end := len(hdr)
		if n := bytes.IndexByte(hdr[off:], '\n'); n >= 0 {
			end = off + n + 1
		}
		line := hdr[off:end]
		text := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		blank := len(text) == 0
		var ok bool
		switch {
		case blank:
			ok = true
		case text[0] == ' ' || text[0] == '\t':
			ok = keep
		default:
			ok = validFieldStart(text)
			keep = ok
		}
		if !ok && out == nil {
			out = append(make([]byte, 0, len(hdr)), hdr[:off]...)
		}
		if out != nil && ok {
			out = append(out, line...)
		}
		if blank {
			if out != nil {
				out = append(out, hdr[end:]...)
			}
			break
		}
		off = end
	}
	if out == nil {
		return hdr, false
	}
	return out, true
}

// validFieldStart reports whether line starts a header field: a non-empty
// field-name of printable US-ASCII but ":" (RFC 5322 §3.6.8), blanks
// allowed before the colon.
func validFieldStart(line []byte) bool {
	i := bytes.IndexByte(line, ':')
	if i < 0 {
		return false
	}
	name := bytes.TrimRight(line[:i], " \t")
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

func truncateHeader(h textproto.Header, n int) textproto.Header {
	var out textproto.Header
	var kept []struct{ k, v string }
	fs := h.Fields()
	for fs.Next() && len(kept) < n {
		kept = append(kept, struct{ k, v string }{fs.Key(), fs.Value()})
	}
	// Header.Add prepends; add in reverse to keep the order.
	for i := len(kept) - 1; i >= 0; i-- {
		out.Add(kept[i].k, kept[i].v)
	}
	return out
}

// Header returns the first field named name (case-insensitive), unfolded and
// with encoded words decoded (RFC 2047 §6.1), or "".
func (m *Message) Header(name string) string {
	return decodeWords(m.header.Get(name))
}

// HeaderValues returns every field named name, top to bottom, decoded.
func (m *Message) HeaderValues(name string) []string {
	vs := m.header.Values(name)
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = decodeWords(v)
	}
	return out
}

// HasHeader reports whether a field named name is present.
func (m *Message) HasHeader(name string) bool { return m.header.Has(name) }

// Subject returns the decoded Subject.
func (m *Message) Subject() string { return m.subject }

// From returns the first RFC5322.From address, lower-cased, or "".
func (m *Message) From() string {
	m.addrOnce.Do(m.parseAddresses)
	return m.from
}

// To returns the To and Cc addresses, lower-cased.
func (m *Message) To() []string {
	m.addrOnce.Do(m.parseAddresses)
	return m.to
}

// parseAddresses parses From, To and Cc: only for a rule that reads them.
func (m *Message) parseAddresses() {
	m.from = firstAddress(m.header, "From")
	m.to = addresses(m.header, "To", "Cc")
}

// Mailbox is one mailbox of an address-list field (RFC 5322 §3.4): the
// display name with encoded words decoded (RFC 2047 §6.1) and the
// addr-spec as written.
type Mailbox struct {
	Name    string
	Address string
}

// Mailboxes returns the mailboxes of every field named name, top to
// bottom, the members of groups included. A field that does not parse as
// an address list adds nothing and makes err non-nil (the first such
// error); the mailboxes of the other fields are still returned.
func (m *Message) Mailboxes(name string) (list []Mailbox, err error) {
	for _, v := range m.header.Values(name) {
		as, perr := addressParser.ParseList(v)
		if perr != nil {
			if err == nil {
				err = fmt.Errorf("%s: %w", name, perr)
			}
			continue
		}
		for _, a := range as {
			list = append(list, Mailbox{Name: a.Name, Address: a.Address})
		}
	}
	return list, err
}

// Field is one header field as it was received: the name as written and
// the unfolded value with encoded words left as they are (RFC 5322 §2.2).
type Field struct {
	Name  string
	Value string
}

// Fields returns the header fields, top to bottom, at most
// Options.MaxHeaderFields, undecoded. The slice is new on each call.
func (m *Message) Fields() []Field {
	out := make([]Field, 0, m.header.Len())
	fs := m.header.Fields()
	for fs.Next() {
		out = append(out, Field{Name: fs.Key(), Value: fs.Value()})
	}
	return out
}

// RawHeader returns the first field named name, unfolded but with encoded
// words not decoded, or "".
func (m *Message) RawHeader(name string) string { return m.header.Get(name) }

// Raw returns the message bytes given to Parse; the caller must not change
// them.
func (m *Message) Raw() []byte { return m.raw }

// Body returns the raw body: the bytes after the blank line that ends the
// header section (RFC 5322 §2.1), still transfer-encoded.
func (m *Message) Body() []byte {
	end := headerEnd(m.raw, m.opt.MaxHeaderBytes)
	if end < 0 {
		return nil
	}
	return m.raw[end:]
}

// Size returns the size of the raw message in bytes.
func (m *Message) Size() int64 { return int64(len(m.raw)) }

// Text returns the decoded text of the text/plain and text/html parts that
// are not attachments, joined by newlines, at most Options.MaxText bytes.
func (m *Message) Text() string {
	m.once.Do(m.walkBody)
	return m.text
}

// Attachments returns the attachments, at most Options.MaxAttachments.
func (m *Message) Attachments() []Attachment {
	m.once.Do(m.walkBody)
	return m.attachments
}

// Malformed reports whether any part of the message could not be parsed.
// It walks the body on first use.
func (m *Message) Malformed() bool {
	m.once.Do(m.walkBody)
	return m.headerMalformed || m.bodyMalformed
}

// HeaderMalformed reports a defect in the top-level header section only,
// without walking the body.
func (m *Message) HeaderMalformed() bool { return m.headerMalformed }

// walker carries the budgets of one body walk.
type walker struct {
	m     *Message
	text  bytes.Buffer
	parts int
}

func (m *Message) walkBody() {
	w := &walker{m: m}
	end := headerEnd(m.raw, m.opt.MaxHeaderBytes)
	e, err := message.New(message.Header{Header: m.header}, bytes.NewReader(m.raw[end:]))
	if e == nil {
		m.bodyMalformed = true
		return
	}
	if err != nil && !message.IsUnknownCharset(err) {
		m.bodyMalformed = true
	}
	// Room for the text at once: about the size of the body, read into
	// it directly (no copy of each part first).
	w.text.Grow(min(len(m.raw)-end, m.opt.MaxText) + bytes.MinRead)
	w.entity(e, 0, err)
	// The buffer is the walker's and never written again: the string
	// can share its bytes, as strings.Builder's does.
	if b := w.text.Bytes(); len(b) > 0 {
		m.text = unsafe.String(unsafe.SliceData(b), len(b))
	}
}

// entity visits one MIME entity; errors mark the message malformed and end
// the branch, never the walk.
func (w *walker) entity(e *message.Entity, depth int, newErr error) {
	w.parts++
	if w.parts > w.m.opt.MaxParts {
		w.m.bodyMalformed = true
		return
	}
	mediaType, params, ctErr := e.Header.ContentType()
	if ctErr != nil && e.Header.Has("Content-Type") {
		w.m.bodyMalformed = true
	}
	if mediaType == "" {
		mediaType = "text/plain" // RFC 2045 §5.2
	}
	mediaType = strings.ToLower(mediaType)
	if mr := e.MultipartReader(); mr != nil {
		if depth >= w.m.opt.MaxDepth {
			w.m.bodyMalformed = true
			return
		}
		if params["boundary"] == "" { // RFC 2046 §5.1.1: boundary is required
			w.m.bodyMalformed = true
			return
		}
		for {
			p, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				return
			}
			if p == nil {
				w.m.bodyMalformed = true
				return
			}
			if err != nil && !message.IsUnknownCharset(err) {
				w.m.bodyMalformed = true
			}
			w.entity(p, depth+1, err)
			if w.parts > w.m.opt.MaxParts {
				return
			}
		}
	}
	disp, dparams, _ := e.Header.ContentDisposition()
	name := decodeWords(dparams["filename"])
	if name == "" {
		name = decodeWords(params["name"])
	}
	isText := mediaType == "text/plain" || mediaType == "text/html"
	if strings.EqualFold(disp, "attachment") || name != "" || !isText {
		w.attachment(e, mediaType, name)
		return
	}
	body := e.Body
	if message.IsUnknownCharset(newErr) {
		body = charsetReader(params["charset"], body)
	}
	room := w.m.opt.MaxText - w.text.Len()
	if room <= 0 {
		return
	}
	// A newline between parts, taken back if this one adds nothing.
	mark := w.text.Len()
	if mark > 0 {
		w.text.WriteByte('\n')
		room--
	}
	var err error
	if mediaType == "text/html" {
		var buf []byte
		buf, err = io.ReadAll(io.LimitReader(body, int64(room)))
		s := stripTags(string(buf))
		w.text.WriteString(s[:min(len(s), room)])
	} else {
		_, err = w.text.ReadFrom(io.LimitReader(body, int64(room)))
	}
	if err != nil {
		w.m.bodyMalformed = true
	}
	if mark > 0 && w.text.Len() == mark+1 {
		w.text.Truncate(mark)
	}
}

func (w *walker) attachment(e *message.Entity, mediaType, name string) {
	if len(w.m.attachments) >= w.m.opt.MaxAttachments {
		return
	}
	n, err := io.Copy(io.Discard, io.LimitReader(e.Body, w.m.opt.MaxPartBytes))
	if err != nil {
		w.m.bodyMalformed = true
	}
	w.m.attachments = append(w.m.attachments, Attachment{Name: name, ContentType: mediaType, Size: n})
}

// charsetReader converts from a charset go-message does not know by itself
// (RFC 2046 §4.1.2); unknown names leave the bytes as they are.
func charsetReader(label string, r io.Reader) io.Reader {
	enc, err := htmlindex.Get(strings.TrimSpace(label))
	if err != nil {
		return r
	}
	return enc.NewDecoder().Reader(r)
}

var wordDecoder = &mime.WordDecoder{CharsetReader: func(label string, r io.Reader) (io.Reader, error) {
	enc, err := htmlindex.Get(label)
	if err != nil {
		return nil, err
	}
	return enc.NewDecoder().Reader(r), nil
}}

var addressParser = &netmail.AddressParser{WordDecoder: wordDecoder}

// decodeWords decodes RFC 2047 encoded words; on error it returns s as is.
func decodeWords(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	d, err := wordDecoder.DecodeHeader(s)
	if err != nil {
		return s
	}
	return d
}

func firstAddress(h textproto.Header, key string) string {
	if as := addresses(h, key); len(as) > 0 {
		return as[0]
	}
	return ""
}

// addresses returns the addr-specs of address-list fields (RFC 5322 §3.4),
// lower-cased. A field that does not parse contributes nothing.
func addresses(h textproto.Header, keys ...string) []string {
	var out []string
	mh := mail.Header{Header: message.Header{Header: h}}
	for _, k := range keys {
		if !h.Has(k) {
			continue
		}
		list, err := mh.AddressList(k)
		if err != nil {
			// go-message knows few charsets by itself: retry with
			// the decoder that knows every WHATWG encoding.
			list, err = addressParser.ParseList(h.Get(k))
			if err != nil {
				continue
			}
		}
		for _, a := range list {
			if len(out) >= 100 {
				return out
			}
			out = append(out, strings.ToLower(a.Address))
		}
	}
	return out
}

// stripTags removes HTML tags, comments, and the content of script and
// style elements, and decodes the few common entities. It is a fact
// extractor, not an HTML parser: its output is for matching only.
func stripTags(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	lower := asciiLower(s) // same length as s, so offsets agree
	for i := 0; i < len(s); {
		c := s[i]
		if c != '<' {
			b.WriteByte(c)
			i++
			continue
		}
		switch {
		case strings.HasPrefix(lower[i:], "<!--"):
			j := strings.Index(lower[i+4:], "-->")
			if j < 0 {
				i = len(s)
			} else {
				i += 4 + j + 3
			}
		case strings.HasPrefix(lower[i:], "<script"), strings.HasPrefix(lower[i:], "<style"):
			tag := "</script"
			if strings.HasPrefix(lower[i:], "<style") {
				tag = "</style"
			}
			j := strings.Index(lower[i:], tag)
			if j < 0 {
				i = len(s)
				continue
			}
			i += j
			k := strings.IndexByte(s[i:], '>')
			if k < 0 {
				i = len(s)
			} else {
				i += k + 1
			}
		default:
			j := strings.IndexByte(s[i:], '>')
			if j < 0 {
				i = len(s)
				continue
			}
			b.WriteByte(' ')
			// Link targets survive as text, so that rules matching
			// the body text see the hosts mail points to.
			if u := linkTarget(s[i : i+j+1]); u != "" {
				b.WriteString(u)
				b.WriteByte(' ')
			}
			i += j + 1
		}
	}
	return htmlEntities.Replace(b.String())
}

// linkTarget returns the value of the href or src attribute of one tag
// ("<a href=...>"), or "". Values are cut at 2048 bytes.
func linkTarget(tag string) string {
	lower := asciiLower(tag)
	for _, attr := range [...]string{"href", "src"} {
		k := 0
		for k < len(lower) {
			j := strings.Index(lower[k:], attr)
			if j < 0 {
				break
			}
			j += k
			k = j + len(attr)
			// the attribute name must stand alone: " href=" not "xhref="
			if j == 0 || !isSpace(lower[j-1]) {
				continue
			}
			rest := strings.TrimLeft(tag[k:], " \t\r\n")
			if !strings.HasPrefix(rest, "=") {
				continue
			}
			rest = strings.TrimLeft(rest[1:], " \t\r\n")
			var v string
			if rest != "" && (rest[0] == '"' || rest[0] == '\'') {
				if e := strings.IndexByte(rest[1:], rest[0]); e >= 0 {
					v = rest[1 : 1+e]
				} else {
					v = rest[1:]
				}
			} else {
				e := strings.IndexAny(rest, " \t\r\n>")
				if e < 0 {
					e = len(rest)
				}
				v = rest[:e]
			}
			v = strings.TrimSpace(v)
			if len(v) > 2048 {
				v = v[:2048]
			}
			return htmlEntities.Replace(v)
		}
	}
	return ""
}

// asciiLower lower-cases ASCII letters only: unlike strings.ToLower it
// keeps every byte offset, so an index found in the result is valid in s.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

var htmlEntities = strings.NewReplacer("&nbsp;", " ", "&amp;", "&", "&lt;", "<", "&gt;", ">", "&quot;", `"`, "&#39;", "'")
