// Package scanner is the contract between moat and the content scanners an
// operator already runs: rspamd, SpamAssassin's spamd, ClamAV's clamd, and
// any milter. Each protocol is a sub-package (scanner/rspamd,
// scanner/spamd, scanner/clamd, scanner/milter) with a client that
// implements Scanner; package gateway runs the configured scanners at DATA
// and turns their Results into facts. A scanner reports, it never decides:
// the rules decide (a virus found is refused by a default rule).
package scanner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"moat/internal/reply"
)

// Scanner is one configured scanner.
type Scanner interface {
	// Name is the operator's name for it (scanners[].name).
	Name() string
	// Scan sends one message and returns the answer. It honours ctx's
	// deadline on every network read and write. A scanner that cannot
	// answer returns an *Error.
	Scan(ctx context.Context, req *Request) (*Result, error)
	// Ping checks that the scanner answers (clamd PING, spamd PING,
	// rspamd /ping, a milter's option negotiation), for /readyz.
	Ping(ctx context.Context) error
}

// Request is what a scanner is told about one message, as each protocol
// allows.
type Request struct {
	// Message is the message as received: header and body, CRLF line
	// ends, without moat's own added fields.
	Message    []byte
	ClientIP   netip.Addr
	ClientPort int
	ClientName string // the client's verified PTR name, "" if none
	HELO       string
	Sender     string   // envelope sender, "" for the null sender
	Recipients []string // envelope recipients
	AuthUser   string   // authenticated submission user, "" if none
	QueueID    string
	Hostname   string // our own name (milter macro j, rspamd MTA-Name)
	TLS        bool
}

// Result is a scanner's answer. Fields a protocol does not give stay zero.
type Result struct {
	// Score and Threshold: the scanner's spam score and its own spam
	// threshold (rspamd, spamd); HasScore says they were given.
	Score, Threshold float64
	HasScore         bool
	// Action is the scanner's own verdict, lower-case: rspamd's action
	// ("no action", "greylist", "add header", "rewrite subject", "soft
	// reject", "reject"); spamd "spam" or "ham"; clamd "clean" or
	// "infected"; a milter "accept", "reject", "tempfail", "discard",
	// "quarantine" or "continue".
	Action string
	// Symbols are the rules or symbols that fired (rspamd symbols,
	// SpamAssassin test names), at most MaxSymbols, sorted.
	Symbols []string
	// Virus: malware was found; VirusNames the signature names.
	Virus      bool
	VirusNames []string
	// Reply is the reply a milter asked for with its reject or tempfail
	// (SMFIR_REPLYCODE); nil when it gave none.
	Reply *reply.Reply
	// Changes are a milter's header modifications, in order, to apply
	// before the message is spooled.
	Changes []HeaderChange
	// Body is a milter's replacement of the message body (SMFIR_REPLBODY,
	// its chunks joined, CRLF line ends); nil when the body is kept, empty
	// but not nil when the milter emptied it.
	Body []byte
}

// MaxSymbols bounds Result.Symbols.
const MaxSymbols = 200

// HeaderChange is one header modification asked by a milter
// (SMFIR_ADDHEADER, SMFIR_INSHEADER, SMFIR_CHGHEADER).
type HeaderChange struct {
	Op    HeaderOp
	Name  string
	Value string
	// Index: for Change, the 1-based occurrence of Name to change (an
	// empty Value deletes it); for Insert, the position among all fields
	// (0 = first).
	Index int
}

// HeaderOp is the kind of a HeaderChange.
type HeaderOp int

const (
	HeaderAdd     HeaderOp = iota // append a field
	HeaderInsert                  // insert a field at Index
	HeaderReplace                 // change (or, with an empty Value, delete) the Index-th Name field
)

// ErrorKind classifies a failure, for the logs and metrics.
type ErrorKind string

const (
	KindTimeout  ErrorKind = "timeout"  // a deadline passed
	KindConnect  ErrorKind = "connect"  // could not connect (down, refused)
	KindProtocol ErrorKind = "protocol" // an answer that does not parse
	KindRefused  ErrorKind = "refused"  // the scanner said it cannot scan (size, error status)
	KindIO       ErrorKind = "io"       // reset or closed mid-answer
)

// Error is a scanner that could not give an answer.
type Error struct {
	Scanner string
	Kind    ErrorKind
	Err     error
}

func (e *Error) Error() string { return fmt.Sprintf("scanner %s: %s: %v", e.Scanner, e.Kind, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind of err: an *Error's, else KindTimeout for a
// context deadline, else KindIO.
func KindOf(err error) ErrorKind {
	var se *Error
	if errors.As(err, &se) {
		return se.Kind
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return KindTimeout
	}
	return KindIO
}

// Config is one entry of `scanners:`.
type Config struct {
	Name string `mapstructure:"name"`
	// Type is rspamd, spamd, clamd or milter.
	Type string `mapstructure:"type"`
	// Address: host:port, an http(s) URL for rspamd, or unix:/path.
	Address string        `mapstructure:"address"`
	Timeout time.Duration `mapstructure:"timeout"`
	// MaxSize: larger messages are not sent (a fact says so); 0 = no limit
	// beyond smtp.max_message_size.
	MaxSize int64 `mapstructure:"max_size"`
	// OnError is tempfail (the message gets 451 4.7.0 when the scanner
	// cannot answer) or accept (go on without its answer).
	OnError string `mapstructure:"on_error"`
	// Required makes /readyz fail while the scanner does not answer.
	Required bool `mapstructure:"required"`
	// Password is rspamd's controller/normal worker password, if set
	// (sent as the Password header); spamd's user (User header) is User.
	Password string `mapstructure:"password" secret:"true"`
	User     string `mapstructure:"user"`
	// Command is spamd's: CHECK (score only) or SYMBOLS (score and tests).
	Command string `mapstructure:"command"`
}
