// Package reply holds SMTP replies as values: a basic code, an enhanced
// status code and text, plus an optional wrapped cause that is logged but
// never sent to the client.
//
// RFC 5321 §4.2 defines the reply codes; RFC 3463 the enhanced status codes,
// whose class digit must agree with the first digit of the basic code
// (2.x.x with 2yz, 4.x.x with 4yz, 5.x.x with 5yz). RFC 2034 says the
// enhanced code is the first word of the text of every line.
//
// Every error that reaches the SMTP session goes through From, which turns
// any error into the wire reply: a *Reply found with errors.As is used as
// is; anything else becomes 451 4.3.0 with the session id, never a 5xx and
// never internal text. AppendWire writes a Reply as the server sends it
// (multi-line, RFC 5321 §4.2; enhanced code on every line, RFC 2034 §4).
//
// The client side is Read: the one reader of a server's replies that
// moat's own SMTP clients (relay/smtpout, relay/verify) use, bounded in
// line length and line count, returning a Response.
package reply

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Enhanced is an RFC 3463 enhanced status code: class.subject.detail.
// The zero value means none: RFC 2034 §3 leaves it off the greeting,
// the reply to HELO and EHLO, and the intermediate 334 and 354 replies.
type Enhanced [3]int

// None reports whether e is the zero value (no enhanced code).
func (e Enhanced) None() bool { return e == Enhanced{} }

// String formats the code as "5.7.1"; "" for none.
func (e Enhanced) String() string {
	if e.None() {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2])
}

// ParseEnhanced parses "5.7.1". Each part is 1 to 3 digits (RFC 3463 §2).
func ParseEnhanced(s string) (Enhanced, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return Enhanced{}, fmt.Errorf("enhanced status code %q: want class.subject.detail", s)
	}
	var e Enhanced
	for i, p := range parts {
		if len(p) == 0 || len(p) > 3 {
			return Enhanced{}, fmt.Errorf("enhanced status code %q: part %d must have 1 to 3 digits", s, i+1)
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return Enhanced{}, fmt.Errorf("enhanced status code %q: part %d is not a number", s, i+1)
		}
		e[i] = n
	}
	if e[0] != 2 && e[0] != 4 && e[0] != 5 {
		return Enhanced{}, fmt.Errorf("enhanced status code %q: class must be 2, 4 or 5", s)
	}
	return e, nil
}

// Reply is an SMTP reply. It implements error so that it can travel up
// the call chain; Cause is for logs only.
type Reply struct {
	Code     int
	Enhanced Enhanced
	Text     string
	Cause    error
}

// New builds a reply; the enhanced class is derived from the basic code
// (mox-style), so that the two can never disagree.
func New(code int, subject, detail int, text string) *Reply {
	return &Reply{Code: code, Enhanced: Enhanced{code / 100, subject, detail}, Text: text}
}

// Plain builds a reply without an enhanced code: the greeting, the
// replies to HELO and EHLO, and the intermediate 334 and 354 (RFC 2034
// §3 asks for the enhanced code on every other 2yz, 4yz and 5yz reply).
func Plain(code int, text string) *Reply {
	return &Reply{Code: code, Text: text}
}

// Error renders the reply as it would appear on the wire (one line).
func (r *Reply) Error() string {
	s := strconv.Itoa(r.Code)
	if !r.Enhanced.None() {
		s += " " + r.Enhanced.String()
	}
	s += " " + r.Text
	if r.Cause != nil {
		s += " (" + r.Cause.Error() + ")"
	}
	return s
}

// Unwrap returns the cause.
func (r *Reply) Unwrap() error { return r.Cause }

// Temporary reports whether the client should try again later (4yz).
func (r *Reply) Temporary() bool { return r.Code/100 == 4 }

// Permanent reports whether the reply is a permanent failure (5yz).
func (r *Reply) Permanent() bool { return r.Code/100 == 5 }

// With returns a copy with another cause.
func (r *Reply) With(cause error) *Reply {
	c := *r
	c.Cause = cause
	return &c
}

// Withf returns a copy whose text is formatted.
func (r *Reply) Withf(format string, args ...any) *Reply {
	c := *r
	c.Text = fmt.Sprintf(format, args...)
	return &c
}

// Format returns a copy whose text is r's text used as a format: a
// named reply whose text has verbs for what varies (a host name, an
// address, a count) is filled in where it is sent.
func (r *Reply) Format(args ...any) *Reply {
	c := *r
	c.Text = fmt.Sprintf(r.Text, args...)
	return &c
}

// WithHost returns a copy whose text starts with host: RFC 5321 §3.8
// asks a 421 to name the server that closes the channel (and §3.1 the
// 554 sent in place of a greeting).
func (r *Reply) WithHost(host string) *Reply {
	c := *r
	c.Text = host + " " + r.Text
	return &c
}

// Validate checks that the code is a valid 2yz/4yz/5yz reply code and that
// the enhanced class agrees with it (RFC 3463 §2).
func (r *Reply) Validate() error {
	if r.Code < 200 || r.Code > 599 || (r.Code/100 != 2 && r.Code/100 != 4 && r.Code/100 != 5) {
		return fmt.Errorf("reply code %d: must be 2yz, 4yz or 5yz", r.Code)
	}
	if r.Code%100/10 > 5 {
		return fmt.Errorf("reply code %d: second digit must be 0 to 5 (RFC 5321 §4.2.1)", r.Code)
	}
	if r.Enhanced[0] != r.Code/100 {
		return fmt.Errorf("enhanced code %s disagrees with reply code %d", r.Enhanced, r.Code)
	}
	if strings.ContainsAny(r.Text, "\r\n") {
		return errors.New("reply text must be a single line")
	}
	return nil
}

// Parse reads a reply written as "550 5.7.1 text" (the form used in rule
// files and configuration). The enhanced code may be omitted, in which case
// it is derived as class.0.0.
func Parse(s string) (*Reply, error) {
	s = strings.TrimSpace(s)
	codeStr, rest, _ := strings.Cut(s, " ")
	code, err := strconv.Atoi(codeStr)
	if err != nil || len(codeStr) != 3 {
		return nil, fmt.Errorf("reply %q: must start with a three-digit code", s)
	}
	r := &Reply{Code: code, Enhanced: Enhanced{code / 100, 0, 0}}
	word, text, _ := strings.Cut(rest, " ")
	if strings.Count(word, ".") == 2 && word != "" && word[0] >= '0' && word[0] <= '9' {
		e, err := ParseEnhanced(word)
		if err != nil {
			return nil, fmt.Errorf("reply %q: %w", s, err)
		}
		r.Enhanced = e
		r.Text = strings.TrimSpace(text)
	} else {
		r.Text = strings.TrimSpace(rest)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("reply %q: %w", s, err)
	}
	return r, nil
}

// From turns any error into the reply to send. A *Reply anywhere in the
// chain is used; anything else is 451 4.3.0 naming the session, so the
// operator can find the cause in the log.
func From(err error, sessionID string) *Reply {
	if err == nil {
		return nil
	}
	var r *Reply
	if errors.As(err, &r) {
		return r
	}
	return &Reply{
		Code:     451,
		Enhanced: Enhanced{4, 3, 0},
		Text:     "Internal error, please try again later (session " + sessionID + ")",
		Cause:    err,
	}
}

// Named replies used across the gateway. Copy with With/Withf to change.
var (
	OK              = New(250, 0, 0, "Ok")
	Queued          = New(250, 0, 0, "Ok: %s") // Format with what became of the message
	RelayDenied     = New(554, 7, 1, "Relay access denied")
	NoSuchUser      = New(550, 1, 1, "No such user here")
	BadSenderSyntax = New(501, 1, 7, "Bad sender address syntax")
	BadRcptSyntax   = New(501, 1, 3, "Bad recipient address syntax")
	MessageTooBig   = New(552, 3, 4, "Message size exceeds fixed limit")
	StorageFull     = New(452, 3, 1, "Insufficient system storage")
	TempLocal       = New(451, 3, 0, "Local error in processing, please try again later")
	ShuttingDown    = New(421, 3, 2, "Service shutting down, closing transmission channel")
	BareLineEnding  = New(550, 5, 2, "Bare CR or LF in message data is not allowed (RFC 5321 §2.3.8)")
	BadSequence     = New(503, 5, 1, "Bad sequence of commands")
	NeedTLS         = New(530, 7, 0, "Must issue a STARTTLS command first")

	// RFC 4954 §6 (the texts are those go-smtp used).
	AuthFailed           = New(535, 7, 8, "Authentication failed")
	AuthUnsupported      = New(502, 7, 0, "Authentication not supported")
	AuthUnknownMechanism = New(504, 7, 4, "Unsupported authentication mechanism")
)
