// Package dsn builds and parses delivery status notifications: the
// bounces and delay warnings the queue manager sends to a message's
// envelope sender.
//
// Structure of a notice built here (RFC 3464 §2, RFC 6522 §3):
//
//	multipart/report; report-type=delivery-status   (RFC 6522 §3)
//	├─ text/plain                  a human explanation (RFC 6522 §3 part 1)
//	├─ message/delivery-status     per-message fields (RFC 3464 §2.2),
//	│                              then one block per recipient (§2.3)
//	└─ text/rfc822-headers         the original header (RFC 6522 §4; RFC 3464 §2.1
//	                               allows headers only), at most MaxHeaders bytes
//
// The original body is never returned, and of the original header only
// the first MaxHeaders bytes, cut between whole header fields (a field's
// folded continuation lines stay with it, RFC 5322 §2.2.3), with a note in
// the human part when it was cut. A notice goes to an address the
// original client named, which may be forged: carrying the client's
// content back would make moat a reflector (backscatter, issue 27).
//
// When an address or the original header is not ASCII, the parts are
// message/global-delivery-status and message/global-headers and addresses
// use the "utf-8" address type (RFC 6533 §3, §5, §6).
//
// The notice comes From: MAILER-DAEMON@<hostname> and carries
// Auto-Submitted: auto-replied (RFC 3834 §5) so that well-behaved
// responders do not answer it; the envelope sender of the notice is null
// (RFC 5321 §4.5.5, RFC 3461 §6.2 — the queue manager's job). Lines end in
// CRLF and are at most 998 octets (RFC 5322 §2.1.1).
package dsn

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"strings"
	"time"
)

// Action is the per-recipient Action field (RFC 3464 §2.3.3).
type Action string

// Actions this package builds.
const (
	Failed    Action = "failed"
	Delayed   Action = "delayed"
	Delivered Action = "delivered"
	Relayed   Action = "relayed"
	Expanded  Action = "expanded"
)

// Recipient is one per-recipient block (RFC 3464 §2.3).
type Recipient struct {
	Address           string    // Final-Recipient (§2.3.2)
	OriginalRecipient string    // Original-Recipient (§2.3.1), from ORCPT; optional
	Action            Action    // §2.3.3
	Status            string    // §2.3.4, e.g. "5.1.1"
	DiagnosticCode    string    // §2.3.6, e.g. "smtp; 550 5.1.1 no such user"
	RemoteMTA         string    // §2.3.5, host name; optional
	LastAttempt       time.Time // Last-Attempt-Date (§2.3.7); optional
	WillRetryUntil    time.Time // §2.3.8, for delayed; optional
}

// Params is what Build needs.
type Params struct {
	ReportingMTA string    // our host name (§2.2.2)
	To           string    // the original envelope sender, the notice's recipient
	QueueID      string    // our queue id of the original message
	EnvelopeID   string    // Original-Envelope-Id (§2.2.1, RFC 3461 ENVID); optional
	ReceivedFrom string    // Received-From-MTA host (§2.2.4); optional
	ArrivalDate  time.Time // §2.2.5; optional
	Recipients   []Recipient
	// Headers is the original message's header section (up to the blank
	// line), or the first HeaderReadLimit bytes of the message. Build
	// keeps at most MaxHeaders bytes of it, whole fields only.
	Headers []byte
	// Date and MessageID of the notice; zero values: now and a random
	// <hex@ReportingMTA>.
	Date      time.Time
	MessageID string
}

// Limits.
const (
	// MaxHeaders bounds the original header kept in the notice: enough
	// for the Received trail, From, To, Subject, Message-ID and the
	// authentication results a sender needs to identify the message, and
	// too little to make a notice worth forging (issue 27: a 1,036-line
	// header once came back as a 67 KB notice).
	MaxHeaders = 4 << 10
	// HeaderReadLimit is how much of the original message a caller needs
	// to read for Params.Headers: twice MaxHeaders, so that a field cut
	// by the read itself is always past the cut Build makes.
	HeaderReadLimit = 2 * MaxHeaders
	maxLine         = 998 // RFC 5322 §2.1.1
	maxFieldText    = 900 // of one generated field value, before folding
)

// Build renders the notice as a complete RFC 5322 message with CRLF line
// endings.
func Build(p Params) ([]byte, error) {
	if p.ReportingMTA == "" || !isHostname(p.ReportingMTA) {
		return nil, fmt.Errorf("dsn: bad reporting MTA %q", p.ReportingMTA)
	}
	if p.To == "" {
		return nil, errors.New("dsn: no recipient for the notice (never notify the null sender, RFC 3461 §6.2)")
	}
	if len(p.Recipients) == 0 {
		return nil, errors.New("dsn: no recipients to report")
	}
	action := p.Recipients[0].Action
	for _, r := range p.Recipients {
		if r.Address == "" {
			return nil, errors.New("dsn: recipient without address")
		}
		switch r.Action {
		case Failed, Delayed, Delivered, Relayed, Expanded:
		default:
			return nil, fmt.Errorf("dsn: recipient %s: unknown action %q", r.Address, r.Action)
		}
		if !validStatus(r.Status) {
			return nil, fmt.Errorf("dsn: recipient %s: bad status %q (RFC 3464 §2.3.4)", r.Address, r.Status)
		}
		if r.Action == Failed {
			action = Failed
		}
	}
	date := p.Date
	if date.IsZero() {
		date = time.Now()
	}
	msgID := p.MessageID
	if msgID == "" {
		var b [12]byte
		rand.Read(b[:])
		msgID = "<" + hex.EncodeToString(b[:]) + "@" + p.ReportingMTA + ">"
	}
	headers, cut := normalize(p.Headers)
	global := !isASCII(string(headers)) || !isASCII(p.To)
	for _, r := range p.Recipients {
		if !isASCII(r.Address) || !isASCII(r.OriginalRecipient) {
			global = true
		}
	}
	var rb [12]byte
	rand.Read(rb[:])
	boundary := "=_moat_" + hex.EncodeToString(rb[:])

	var b bytes.Buffer
	h := func(name, value string) { writeField(&b, name, value) }
	h("From", "Mail Delivery System <MAILER-DAEMON@"+p.ReportingMTA+">")
	h("To", "<"+clean(p.To)+">")
	subject := "Undelivered Mail Returned to Sender"
	if action == Delayed {
		subject = "Delayed Mail (still being retried)"
	}
	h("Subject", subject)
	h("Date", date.Format(time.RFC1123Z))
	h("Message-ID", msgID)
	h("Auto-Submitted", "auto-replied") // RFC 3834 §5
	h("MIME-Version", "1.0")
	h("Content-Type", `multipart/report; report-type=delivery-status; boundary="`+boundary+`"`)
	b.WriteString("\r\n")
	b.WriteString("This is a MIME-encapsulated delivery status notification.\r\n")

	// Part 1: for people (RFC 6522 §3).
	b.WriteString("\r\n--" + boundary + "\r\n")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", cte(global))
	h("Content-Description", "Notification")
	b.WriteString("\r\n")
	writeHuman(&b, p, action, cut)

	// Part 2: for programs (RFC 3464 §2.1).
	b.WriteString("\r\n--" + boundary + "\r\n")
	if global {
		h("Content-Type", "message/global-delivery-status") // RFC 6533 §6.1
	} else {
		h("Content-Type", "message/delivery-status")
	}
	h("Content-Transfer-Encoding", cte(global))
	h("Content-Description", "Delivery report")
	b.WriteString("\r\n")
	// Per-message fields (§2.2).
	if p.EnvelopeID != "" {
		h("Original-Envelope-Id", p.EnvelopeID)
	}
	h("Reporting-MTA", "dns; "+p.ReportingMTA)
	if p.QueueID != "" {
		h("X-Moat-Queue-ID", p.QueueID) // extension field, RFC 3464 §2.4
	}
	if p.ReceivedFrom != "" {
		h("Received-From-MTA", "dns; "+p.ReceivedFrom)
	}
	if !p.ArrivalDate.IsZero() {
		h("Arrival-Date", p.ArrivalDate.Format(time.RFC1123Z))
	}
	for _, r := range p.Recipients {
		b.WriteString("\r\n") // blank line before each per-recipient block (§2.1)
		if r.OriginalRecipient != "" {
			h("Original-Recipient", addrType(r.OriginalRecipient)+"; "+r.OriginalRecipient)
		}
		h("Final-Recipient", addrType(r.Address)+"; "+r.Address)
		h("Action", string(r.Action))
		h("Status", r.Status)
		if r.RemoteMTA != "" {
			h("Remote-MTA", "dns; "+r.RemoteMTA)
		}
		if r.DiagnosticCode != "" {
			h("Diagnostic-Code", diagnostic(r.DiagnosticCode))
		}
		if !r.LastAttempt.IsZero() {
			h("Last-Attempt-Date", r.LastAttempt.Format(time.RFC1123Z))
		}
		if !r.WillRetryUntil.IsZero() {
			h("Will-Retry-Until", r.WillRetryUntil.Format(time.RFC1123Z))
		}
	}

	// Part 3: the original header (RFC 6522 §4, RFC 6533 §6.3).
	b.WriteString("\r\n--" + boundary + "\r\n")
	if global {
		h("Content-Type", "message/global-headers")
	} else {
		h("Content-Type", "text/rfc822-headers")
	}
	h("Content-Transfer-Encoding", cte(global))
	h("Content-Description", "Undelivered message header")
	b.WriteString("\r\n")
	b.Write(headers)
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return b.Bytes(), nil
}

func cte(eightBit bool) string {
	if eightBit {
		return "8bit"
	}
	return "7bit"
}

func writeHuman(b *bytes.Buffer, p Params, action Action, cut bool) {
	line := func(s string) { b.WriteString(clean(s) + "\r\n") }
	line("This is the mail system at host " + p.ReportingMTA + ".")
	line("")
	if action == Delayed {
		line("Your message could not be delivered yet to the recipients below.")
		line("The mail system will keep trying; you do not need to resend it.")
	} else {
		line("Your message could not be delivered to one or more recipients.")
		line("It has been returned to you; the reasons are below.")
	}
	if p.QueueID != "" {
		line("Queue id: " + p.QueueID)
	}
	line("")
	for _, r := range p.Recipients {
		s := "<" + r.Address + ">: " + string(r.Action)
		if r.DiagnosticCode != "" {
			_, d, _ := strings.Cut(r.DiagnosticCode, ";")
			s += ": " + strings.TrimSpace(d)
		}
		line(truncate(s, maxFieldText))
	}
	if cut {
		line("")
		line(fmt.Sprintf("The header of your message returned below was shortened to its first %d bytes;", MaxHeaders))
		line("the rest of the header and the body are not returned.")
	}
}

// diagnostic returns a Diagnostic-Code value "type; text" (§2.3.6),
// defaulting the type to smtp.
func diagnostic(s string) string {
	typ, text, ok := strings.Cut(s, ";")
	if !ok || strings.ContainsAny(strings.TrimSpace(typ), " \t") || strings.TrimSpace(typ) == "" {
		return "smtp; " + s
	}
	return strings.TrimSpace(typ) + "; " + strings.TrimSpace(text)
}

func addrType(a string) string {
	if isASCII(a) {
		return "rfc822"
	}
	return "utf-8" // RFC 6533 §3
}

// writeField writes "Name: value" CRLF, value cleaned of control
// characters, cut to maxFieldText, folded at spaces before 78 columns where
// possible (RFC 5322 §2.2.3) and never beyond 998.
func writeField(b *bytes.Buffer, name, value string) {
	value = truncate(clean(value), maxFieldText)
	line := name + ":"
	words := strings.Split(value, " ")
	for i, w := range words {
		sep := " "
		if i > 0 && len(line)+1+len(w) > 76 && strings.TrimSpace(line) != "" {
			b.WriteString(line + "\r\n")
			line = ""
		}
		line += sep + w
	}
	b.WriteString(line + "\r\n")
}

// clean replaces CR, LF and other control characters by spaces.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Do not cut a UTF-8 sequence in half.
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// normalize keeps the header section of h (up to the first empty line)
// with CRLF line endings and lines of at most maxLine octets, as many
// whole fields as fit in MaxHeaders bytes (a field is its first line and
// the continuation lines that start with white space, RFC 5322 §2.2.3).
// cut reports whether a field was left out.
func normalize(h []byte) (out []byte, cut bool) {
	var buf bytes.Buffer
	field := 0 // length in buf of the fields known to be whole
	for len(h) > 0 {
		line := h
		if i := bytes.IndexByte(h, '\n'); i >= 0 {
			line, h = h[:i], h[i+1:]
		} else {
			h = nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			break // end of the header section
		}
		if line[0] != ' ' && line[0] != '\t' {
			field = buf.Len() // a new field starts: the one before is whole
		}
		line = bytes.ReplaceAll(line, []byte("\r"), []byte(" "))
		if len(line) > maxLine {
			line = line[:maxLine]
		}
		if buf.Len()+len(line)+2 > MaxHeaders {
			// Drop the field this line belongs to, and every later one.
			buf.Truncate(field)
			return buf.Bytes(), true
		}
		buf.Write(line)
		buf.WriteString("\r\n")
	}
	return buf.Bytes(), false
}

func validStatus(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) == 0 || len(p) > 3 {
			return false
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func isHostname(s string) bool {
	return len(s) <= 253 && !strings.ContainsAny(s, " \t\r\n<>@;") && isASCII(s)
}

// decodeWord undoes RFC 2047 encoded words in a header value, for Parse.
func decodeWord(s string) string {
	d, err := (&mime.WordDecoder{}).DecodeHeader(s)
	if err != nil {
		return s
	}
	return d
}
