// Package transport is the contract between the queue manager and the
// ways moat hands a message on: local Maildir delivery, SMTP or LMTP to a
// configured host, and SMTP to the recipient domain's MX.
//
// A transport reports one result per recipient. A nil error means the next
// hop took responsibility for that recipient (250, or durable local
// delivery): only then may the queue forget it. Errors are temporary unless
// they are permanent by IsPermanent: a *reply.Reply with a 5yz code, or an
// error wrapped with Permanent.
package transport

import (
	"context"
	"errors"
	"io"

	"moat/internal/reply"
)

// Message is what a transport needs of a spooled message.
type Message struct {
	ID     string // queue id
	Sender string // envelope sender, "" for the null sender
	Size   int64
	UTF8   bool // SMTPUTF8 needed (RFC 6531)
	// Facts about the original client, passed on with XFORWARD
	// (Postfix's XFORWARD extension) when the next hop offers it.
	ClientIP   string
	ClientName string
	HELO       string
	Protocol   string // SMTP, ESMTP, ESMTPS, ESMTPSA
	// Junk: the gateway's rules marked the message as spam. Local
	// delivery files it into the junk folder; relaying transports send
	// it unchanged (it carries its X-Spam-* fields).
	Junk bool
	// Open returns the message bytes as spooled (headers and body, CRLF
	// line endings). It may be called more than once; each reader must be
	// closed.
	Open func() (io.ReadCloser, error)
}

// Result is the outcome for one recipient.
type Result struct {
	Recipient string
	Err       error // nil: delivered
	// Relay names the host that took the message ("host[addr]") and
	// Reply is what it answered ("250 2.0.0 Ok: queued as X"), when
	// delivered and known; for the mail log's relay= and reply=.
	Relay, Reply string
}

// Transport delivers one message to recipients that share a route.
// Deliver returns exactly one Result per recipient, in any order, and
// never panics on a bad peer.
type Transport interface {
	Deliver(ctx context.Context, msg *Message, rcpts []string) []Result
}

// Func adapts a function to Transport.
type Func func(ctx context.Context, msg *Message, rcpts []string) []Result

// Deliver calls f.
func (f Func) Deliver(ctx context.Context, msg *Message, rcpts []string) []Result {
	return f(ctx, msg, rcpts)
}

type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// Permanent marks err as a permanent failure: the queue bounces at once
// (null MX, loops, a recipient refused for good).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err is a permanent failure: marked with
// Permanent, or an SMTP reply with a 5yz code.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	var p permanent
	if errors.As(err, &p) {
		return true
	}
	var r *reply.Reply
	if errors.As(err, &r) {
		return r.Permanent()
	}
	return false
}

// All returns one Result per recipient with the same error.
func All(rcpts []string, err error) []Result {
	out := make([]Result, len(rcpts))
	for i, r := range rcpts {
		out[i] = Result{Recipient: r, Err: err}
	}
	return out
}
