package dsn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"time"
)

// Report is a parsed delivery status notification.
type Report struct {
	From, To, Subject, MessageID string
	AutoSubmitted                string
	Date                         time.Time

	// Per-message fields (RFC 3464 §2.2).
	EnvelopeID   string
	ReportingMTA string // the name, without the "dns;" type
	ReceivedFrom string
	ArrivalDate  time.Time
	QueueID      string // X-Moat-Queue-ID, when present
	Recipients   []Recipient

	Human   string // the first text/plain part
	Headers []byte // the text/rfc822-headers part, as sent
	Global  bool   // RFC 6533 message/global-delivery-status
}

// Limits on what Parse reads: it is used on mail from outside.
const (
	MaxReportSize  = 1 << 20
	maxParts       = 16
	maxRecipients  = 1000
	maxStatusBytes = 256 << 10
)

// Parse reads a multipart/report; report-type=delivery-status message
// (RFC 6522 §3) and its delivery-status part (RFC 3464 §2.1). It is
// bounded: at most MaxReportSize bytes, maxParts parts, maxRecipients
// per-recipient blocks.
func Parse(msg []byte) (*Report, error) {
	if len(msg) > MaxReportSize {
		return nil, fmt.Errorf("dsn: message of %d bytes exceeds %d", len(msg), MaxReportSize)
	}
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return nil, fmt.Errorf("dsn: %w", err)
	}
	r := &Report{
		From:          decodeWord(m.Header.Get("From")),
		To:            decodeWord(m.Header.Get("To")),
		Subject:       decodeWord(m.Header.Get("Subject")),
		MessageID:     m.Header.Get("Message-Id"),
		AutoSubmitted: m.Header.Get("Auto-Submitted"),
	}
	if d, err := m.Header.Date(); err == nil {
		r.Date = d
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		return nil, fmt.Errorf("dsn: Content-Type: %w", err)
	}
	if mt != "multipart/report" || !strings.EqualFold(params["report-type"], "delivery-status") {
		return nil, fmt.Errorf("dsn: not a delivery status report: %s report-type=%q", mt, params["report-type"])
	}
	if params["boundary"] == "" {
		return nil, errors.New("dsn: multipart/report without boundary")
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	found := false
	for i := 0; ; i++ {
		if i >= maxParts {
			return nil, fmt.Errorf("dsn: more than %d parts", maxParts)
		}
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("dsn: part %d: %w", i+1, err)
		}
		body, err := io.ReadAll(io.LimitReader(p, maxStatusBytes+1))
		if err != nil {
			return nil, fmt.Errorf("dsn: part %d: %w", i+1, err)
		}
		if len(body) > maxStatusBytes {
			return nil, fmt.Errorf("dsn: part %d larger than %d bytes", i+1, maxStatusBytes)
		}
		pt, _, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if err != nil {
			pt = "text/plain" // RFC 2045 §5.2 default
		}
		switch {
		case pt == "message/delivery-status" || pt == "message/global-delivery-status":
			if found {
				return nil, errors.New("dsn: more than one delivery-status part")
			}
			found = true
			r.Global = pt == "message/global-delivery-status"
			if err := r.parseStatus(body); err != nil {
				return nil, err
			}
		case (pt == "text/rfc822-headers" || pt == "message/global-headers") && r.Headers == nil:
			r.Headers = body
		case pt == "text/plain" && r.Human == "" && !found:
			r.Human = string(body)
		}
	}
	if !found {
		return nil, errors.New("dsn: no delivery-status part")
	}
	return r, nil
}

// parseStatus reads the per-message block and the per-recipient blocks
// (RFC 3464 §2.1: groups of fields separated by blank lines).
func (r *Report) parseStatus(body []byte) error {
	blocks, err := fieldBlocks(body)
	if err != nil {
		return err
	}
	if len(blocks) < 2 {
		return errors.New("dsn: delivery-status without a per-recipient block (RFC 3464 §2.1)")
	}
	if len(blocks)-1 > maxRecipients {
		return fmt.Errorf("dsn: more than %d recipient blocks", maxRecipients)
	}
	for _, f := range blocks[0] {
		switch strings.ToLower(f.name) {
		case "original-envelope-id":
			r.EnvelopeID = f.value
		case "reporting-mta":
			r.ReportingMTA = typed(f.value)
		case "received-from-mta":
			r.ReceivedFrom = typed(f.value)
		case "arrival-date":
			r.ArrivalDate, _ = mail.ParseDate(f.value)
		case "x-moat-queue-id":
			r.QueueID = f.value
		}
	}
	if r.ReportingMTA == "" {
		return errors.New("dsn: no Reporting-MTA (RFC 3464 §2.2.2)")
	}
	for i, blk := range blocks[1:] {
		var rc Recipient
		for _, f := range blk {
			switch strings.ToLower(f.name) {
			case "original-recipient":
				rc.OriginalRecipient = typed(f.value)
			case "final-recipient":
				rc.Address = typed(f.value)
			case "action":
				rc.Action = Action(strings.ToLower(strings.TrimSpace(f.value)))
			case "status":
				// The status may be followed by a comment (§2.3.4).
				rc.Status, _, _ = strings.Cut(strings.TrimSpace(f.value), " ")
			case "remote-mta":
				rc.RemoteMTA = typed(f.value)
			case "diagnostic-code":
				rc.DiagnosticCode = f.value
			case "last-attempt-date":
				rc.LastAttempt, _ = mail.ParseDate(f.value)
			case "will-retry-until":
				rc.WillRetryUntil, _ = mail.ParseDate(f.value)
			}
		}
		if rc.Address == "" || rc.Action == "" || rc.Status == "" {
			return fmt.Errorf("dsn: recipient block %d lacks Final-Recipient, Action or Status (RFC 3464 §2.3)", i+1)
		}
		r.Recipients = append(r.Recipients, rc)
	}
	return nil
}

type field struct{ name, value string }

// fieldBlocks splits body into blocks of header fields, unfolding
// continuation lines.
func fieldBlocks(body []byte) ([][]field, error) {
	var blocks [][]field
	var cur []field
	lines := strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n")
	for _, line := range lines {
		switch {
		case strings.TrimSpace(line) == "":
			if len(cur) > 0 {
				blocks = append(blocks, cur)
				cur = nil
			}
		case line[0] == ' ' || line[0] == '\t':
			if len(cur) == 0 {
				return nil, errors.New("dsn: continuation line without a field")
			}
			cur[len(cur)-1].value += " " + strings.TrimSpace(line)
		default:
			name, value, ok := strings.Cut(line, ":")
			if !ok || name == "" || strings.ContainsAny(name, " \t") {
				return nil, fmt.Errorf("dsn: bad field line %q", truncate(line, 60))
			}
			cur = append(cur, field{name: name, value: strings.TrimSpace(value)})
		}
		if len(blocks) > maxRecipients+1 {
			return nil, fmt.Errorf("dsn: more than %d recipient blocks", maxRecipients)
		}
	}
	if len(cur) > 0 {
		blocks = append(blocks, cur)
	}
	return blocks, nil
}

// typed returns the value of a "type; value" field.
func typed(v string) string {
	if _, after, ok := strings.Cut(v, ";"); ok {
		return strings.TrimSpace(after)
	}
	return strings.TrimSpace(v)
}
