// Package maillog owns moat's mail log: one line per mail decision
// (accepted, rejected, tempfailed, ...) and per delivery outcome
// (delivered, deferred, bounced, expired), written in a stable format
// that people can grep and that fail2ban can read.
//
// A line is
//
//	2026-05-01T12:00:00.123Z moat: event=rejected client=192.0.2.7 conn_id=c1 reply="535 5.7.8 Authentication failed" ...
//
// an RFC 3339 timestamp (UTC, milliseconds), the tag "moat:", then
// key=value pairs in one fixed order (see fields). Empty and zero values are
// left out. A value is written in Go's %q syntax when it is empty-looking,
// contains a space, a quote, a backslash, '=' or anything not printable, so
// a value never spans two lines and never yields a second key=value pair.
// The fields that the server decides (event, client, conn_id, queue_id,
// reply, stage, reason) come before every field a client or remote host chooses
// (client_name, helo, sender, rcpt), so a pattern anchored at the start of
// the line, like fail2ban's, cannot be fooled by them. Each value has a
// length cap and the recipient list is cut with a final `rcpt="+N more"`,
// so a line is never longer than MaxLine bytes.
//
// The package has no policy and no global state; cmd/moat creates one
// Logger and hands it to the gateway and the queue manager.
package maillog

import (
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Event kinds. A gateway decision is accepted, rejected, tempfailed,
// discarded or quarantined; a delivery outcome is delivered, deferred,
// bounced or expired.
const (
	Accepted    = "accepted"
	Rejected    = "rejected"
	Tempfailed  = "tempfailed"
	Deferred    = "deferred"
	Delivered   = "delivered"
	Bounced     = "bounced"
	Discarded   = "discarded"
	Quarantined = "quarantined"
	Expired     = "expired"
)

// MaxLine is the longest line Log writes, newline included.
const MaxLine = 4096

// Tag follows the timestamp on every line.
const Tag = "moat:"

// Event is one mail log line.
type Event struct {
	// Time of the event; zero means now.
	Time time.Time
	// Kind is one of the constants above.
	Kind string
	// ConnID is the gateway session; QueueID the spooled message.
	ConnID, QueueID string
	// Client is the client's IP address (after PROXY protocol);
	// ClientName its verified reverse DNS name; HELO what it said.
	Client, ClientName, HELO string
	// Sender is the envelope sender (MAIL FROM); "" for the null path.
	Sender     string
	Recipients []string
	// Verdict, Rule and Incident come from the rules engine.
	Verdict, Rule, Incident string
	// Reply is the SMTP reply sent (gateway) or received (delivery):
	// code, enhanced code, text.
	Reply string
	// Stage is the SMTP stage a refusal happened at (connect, helo,
	// auth, mail, rcpt, data); Reason names what refused: a check
	// ("route", "verify", ...), "rules", or a protocol error. Both are
	// chosen by the server, from small fixed sets.
	Stage, Reason string
	// Route is the delivery route's name, Relay the host that answered.
	Route, Relay string
	// Size in bytes, Delay since the message was received, Attempts of
	// delivery so far.
	Size     int64
	Delay    time.Duration
	Attempts int
}

// Logger writes Events as lines to an io.Writer. It is safe for
// concurrent use; each line is one Write call.
type Logger struct {
	mu     sync.Mutex
	w      io.Writer
	errors atomic.Uint64
}

// New returns a Logger writing to w.
func New(w io.Writer) *Logger { return &Logger{w: w} }

// Nop returns a Logger that writes nothing.
func Nop() *Logger { return &Logger{} }

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Log writes e as one line. A failed write is counted (WriteErrors),
// not reported: mail handling must not stop because its log cannot be
// written. A nil Logger writes nothing.
func (l *Logger) Log(e Event) {
	if l == nil || l.w == nil {
		return
	}
	bp := bufPool.Get().(*[]byte)
	line := Append((*bp)[:0], e)
	l.mu.Lock()
	_, err := l.w.Write(line)
	l.mu.Unlock()
	if err != nil {
		l.errors.Add(1)
	}
	*bp = line
	if cap(line) <= 2*MaxLine {
		bufPool.Put(bp)
	}
}

// WriteErrors is the number of lines that could not be written.
func (l *Logger) WriteErrors() uint64 {
	if l == nil {
		return 0
	}
	return l.errors.Load()
}

// Length caps of the written (quoted) values. Their sum with the keys,
// the timestamp and the tag stays below MaxLine (see TestLineBound).
const (
	capShort  = 64   // event, client, conn_id, queue_id, stage, reason, verdict, rule, incident, route
	capName   = 255  // client_name, helo, relay (a DNS name is at most 253 octets)
	capAddr   = 512  // sender, reply
	capRcpt   = 1024 // all rcpt values together
	rcptKey   = " rcpt="
	moreSlack = len(` rcpt="+1000000000 more"`)
)

// field names in line order. Parse accepts them in any order.
const (
	kEvent      = "event"
	kClient     = "client"
	kConnID     = "conn_id"
	kQueueID    = "queue_id"
	kReply      = "reply"
	kStage      = "stage"
	kReason     = "reason"
	kVerdict    = "verdict"
	kRule       = "rule"
	kIncident   = "incident"
	kRoute      = "route"
	kRelay      = "relay"
	kSize       = "size"
	kDelay      = "delay"
	kAttempts   = "attempts"
	kClientName = "client_name"
	kHELO       = "helo"
	kSender     = "sender"
	kRcpt       = "rcpt"
)

// Append appends the line for e, newline included, to b.
func Append(b []byte, e Event) []byte {
	t := e.Time
	if t.IsZero() {
		t = time.Now()
	}
	b = t.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, ' ')
	b = append(b, Tag...)
	b = appendField(b, kEvent, e.Kind, capShort)
	// Server-decided fields first: see the package doc.
	b = appendField(b, kClient, e.Client, capShort)
	b = appendField(b, kConnID, e.ConnID, capShort)
	b = appendField(b, kQueueID, e.QueueID, capShort)
	b = appendField(b, kReply, e.Reply, capAddr)
	b = appendField(b, kStage, e.Stage, capShort)
	b = appendField(b, kReason, e.Reason, capShort)
	b = appendField(b, kVerdict, e.Verdict, capShort)
	b = appendField(b, kRule, e.Rule, capShort)
	b = appendField(b, kIncident, e.Incident, capShort)
	b = appendField(b, kRoute, e.Route, capShort)
	b = appendField(b, kRelay, e.Relay, capName)
	if e.Size > 0 {
		b = append(b, " "+kSize+"="...)
		b = strconv.AppendInt(b, e.Size, 10)
	}
	if e.Delay > 0 {
		b = append(b, " "+kDelay+"="...)
		b = append(b, e.Delay.Round(time.Millisecond).String()...)
	}
	if e.Attempts > 0 {
		b = append(b, " "+kAttempts+"="...)
		b = strconv.AppendInt(b, int64(e.Attempts), 10)
	}
	// Fields chosen by the client or the remote host.
	b = appendField(b, kClientName, e.ClientName, capName)
	b = appendField(b, kHELO, e.HELO, capName)
	b = appendField(b, kSender, e.Sender, capAddr)
	b = appendRecipients(b, e.Recipients)
	return append(b, '\n')
}

func appendField(b []byte, key, v string, max int) []byte {
	if v == "" {
		return b
	}
	b = append(b, ' ')
	b = append(b, key...)
	b = append(b, '=')
	return appendValue(b, v, max)
}

// appendRecipients writes one rcpt= per recipient while they fit in
// capRcpt, then rcpt="+N more" for the rest.
func appendRecipients(b []byte, rcpts []string) []byte {
	used := 0
	for i, r := range rcpts {
		if r == "" {
			r = "<>"
		}
		start := len(b)
		b = append(b, rcptKey...)
		b = appendValue(b, r, capAddr)
		used += len(b) - start
		if used > capRcpt-moreSlack {
			b = b[:start]
			b = append(b, rcptKey...)
			b = strconv.AppendQuote(b, "+"+strconv.Itoa(len(rcpts)-i)+" more")
			break
		}
	}
	return b
}

// ellipsis marks a value cut at its length cap.
const ellipsis = "..."

// appendValue writes v bare if that is unambiguous, else quoted in Go
// syntax (strconv.Unquote reads it back), in at most max bytes: a longer
// value is cut at a character boundary and ends in "...".
func appendValue(b []byte, v string, max int) []byte {
	if bare(v) {
		if len(v) <= max {
			return append(b, v...)
		}
		return append(append(b, v[:max-len(ellipsis)]...), ellipsis...)
	}
	start := len(b)
	if b = appendQuoted(b, v, -1); len(b)-start <= max {
		return b
	}
	return appendQuoted(b[:start], v, max)
}

// appendQuoted writes v in double quotes; with max >= 0 it stops where
// the cut value, "..." and the closing quote still fit in max bytes.
func appendQuoted(b []byte, v string, max int) []byte {
	limit := len(b) + max - 1 - len(ellipsis)
	b = append(b, '"')
	var esc [10]byte
	for i := 0; i < len(v); {
		r, size := utf8.DecodeRuneInString(v[i:])
		var piece []byte
		if r == utf8.RuneError && size == 1 {
			piece = append(esc[:0], `\x`...)
			piece = append(piece, hexDigit[v[i]>>4], hexDigit[v[i]&0xf])
		} else {
			piece = quoteRune(esc[:0], r, v[i:i+size])
		}
		if max >= 0 && len(b)+len(piece) > limit {
			b = append(b, ellipsis...)
			break
		}
		b = append(b, piece...)
		i += size
	}
	return append(b, '"')
}

const hexDigit = "0123456789abcdef"

// quoteRune escapes r the way strconv.Quote does.
func quoteRune(buf []byte, r rune, raw string) []byte {
	switch r {
	case '"':
		return append(buf, `\"`...)
	case '\\':
		return append(buf, `\\`...)
	case '\n':
		return append(buf, `\n`...)
	case '\r':
		return append(buf, `\r`...)
	case '\t':
		return append(buf, `\t`...)
	}
	if strconv.IsPrint(r) {
		return append(buf, raw...)
	}
	if r < 0x10000 {
		buf = append(buf, `\u`...)
		for s := 12; s >= 0; s -= 4 {
			buf = append(buf, hexDigit[r>>uint(s)&0xf])
		}
		return buf
	}
	buf = append(buf, `\U`...)
	for s := 28; s >= 0; s -= 4 {
		buf = append(buf, hexDigit[r>>uint(s)&0xf])
	}
	return buf
}

// bare reports whether v can be written without quotes: printable ASCII
// with no space, quote, backslash or '='. (Non-ASCII is quoted so that
// the reader sees where a value ends whatever their terminal does.)
func bare(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' || c == '=' {
			return false
		}
	}
	return v != ""
}
