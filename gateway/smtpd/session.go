package smtpd

import (
	"io"

	"github.com/emersion/go-sasl"

	"moat/internal/reply"
)

// Session is what smtpd asks of the mail side of a connection: whether
// a sender, a recipient and a message are taken. NewSessionFunc makes
// one at the client's first HELO or EHLO.
//
// Mail and Rcpt return nil to accept (smtpd then says 250 itself), or
// the refusal: a *reply.Reply found with errors.As is written as it is;
// any other error is logged and becomes 451 4.3.0, so that internal
// text never reaches the client. Data returns the reply to the message,
// the success (RFC 5321 §4.1.1.4: "250 OK" once the message is safe) as
// much as a refusal; nil is a plain 250 2.0.0.
type Session interface {
	// Mail starts a transaction (RFC 5321 §4.1.1.2).
	Mail(from string, opts *MailOptions) error
	// Rcpt adds a recipient (RFC 5321 §4.1.1.3).
	Rcpt(to string) error
	// Data reads the whole message from r (DATA, or the BDAT chunks
	// joined; a reader from BDAT also has a Bytes() []byte method). A
	// read error that is a *reply.Reply (ErrDataTooLarge) is meant to
	// be the reply.
	Data(r io.Reader) *reply.Reply
	// Reset ends the transaction (RSET, HELO/EHLO again, end of DATA).
	Reset()
	// Logout ends the session, when the connection closes or after
	// STARTTLS (RFC 3207 §4.2); its error is not looked at.
	Logout() error
}

// AuthSession is a Session that takes AUTH (RFC 4954), through SASL
// servers of github.com/emersion/go-sasl. Errors are replies as for
// Mail (reply.AuthFailed and its neighbours are the usual ones).
type AuthSession interface {
	Session
	// AuthMechanisms lists the mechanisms advertised after EHLO over
	// TLS; none: AUTH is not advertised.
	AuthMechanisms() []string
	// Auth starts an exchange with the named mechanism (upper case).
	Auth(mech string) (sasl.Server, error)
}

// MailOptions are the MAIL FROM parameters smtpd understood.
type MailOptions struct {
	// Size is the SIZE the client declared (RFC 1870); 0: none.
	Size int64
	// Body is the BODY parameter (RFC 6152); "": none.
	Body BodyType
	// UTF8 is set by SMTPUTF8 (RFC 6531 §3.4).
	UTF8 bool
	// Auth is the AUTH parameter (RFC 4954 §5), decoded; "" for <>,
	// nil when not given.
	Auth *string
}

// BodyType is the value of the BODY parameter.
type BodyType string

// The BODY values smtpd takes (RFC 6152 §2); BINARYMIME (RFC 3030 §3)
// is refused, as CHUNKING is advertised without it.
const (
	Body7Bit     BodyType = "7BIT"
	Body8BitMIME BodyType = "8BITMIME"
	bodyBinary   BodyType = "BINARYMIME"
)
