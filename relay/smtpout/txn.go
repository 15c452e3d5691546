package smtpout

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"moat/internal/reply"
	"moat/relay/route"
	"moat/relay/transport"
)

// outcome is what a transaction leaves of its session.
type outcome int

const (
	outKeep  outcome = iota // reusable
	outDrop                 // close it
	outStale                // a pooled session that failed its RSET: nothing was sent, try another
)

// transact runs one mail transaction (RFC 5321 §3.3) and records a
// result for each recipient.
//
// The commands go out as one group when the server offers PIPELINING
// (RFC 2920 §3.1): RSET (on a reused session), XFORWARD, MAIL, every
// RCPT and DATA in one write, their replies read in order; then the
// message and its final dot in one more write, with the commands of the
// next transaction, when a delivery to the same destination waits for a
// session (see chain.go). Two round trips per message instead of up to
// six, one when transactions follow each other. Without PIPELINING each
// command waits for its reply, and nothing follows a refused MAIL or a
// transaction without recipients.
func (s *session) transact(ctx context.Context, msg *transport.Message, rcpts []string, res map[string]error) outcome {
	stop := context.AfterFunc(ctx, func() { s.raw.Close() })
	defer stop()
	reused := s.used > 0
	s.used++
	bad, err := s.refuse(msg, rcpts)
	if err != nil {
		for _, r := range rcpts {
			res[r] = err
		}
		return outKeep
	}
	if len(bad) > 0 {
		ok := make([]string, 0, len(rcpts))
		for _, r := range rcpts {
			if e, found := bad[r]; found {
				res[r] = e
			} else {
				ok = append(ok, r)
			}
		}
		if len(ok) == 0 {
			return outKeep
		}
		rcpts = ok
	}
	// RFC 5321 §4.5.3.1.6, RFC 6152 §3: see sevenbit.go.
	if msg, err = s.fit(msg); err != nil {
		for _, r := range rcpts {
			res[r] = err
		}
		return outKeep
	}
	g := s.commands(msg, rcpts, reused)
	if err := g.start(); err != nil {
		if reused {
			return outStale
		}
		for _, r := range rcpts {
			res[r] = fmt.Errorf("%s: sending commands: %w", s.name, err)
		}
		return outDrop
	}
	return s.finish(msg, rcpts, res, g, reused)
}

// carry runs the transaction of r, whose commands this session sent
// after the final dot of the one before.
func (s *session) carry(ctx context.Context, r *rider, res map[string]error) outcome {
	stop := context.AfterFunc(ctx, func() { s.raw.Close() })
	defer stop()
	s.used++
	return s.finish(r.msg, r.rcpts, res, r.g, true)
}

// refuse returns what every recipient is told when msg cannot be sent in
// this session at all (err), or the recipients that cannot be sent to
// (bad), or neither.
//
// RFC 6531 §3.2: without SMTPUTF8 at the next hop, nothing that needs it
// is sent, and nothing is downgraded. What has an ASCII form still goes:
// the envelope is always written with A-label domains (commands), so a
// recipient whose local part is ASCII fails only when the sender's local
// part or the message header is not ASCII (RFC 6532 §3.2: such a header
// needs SMTPUTF8); a recipient with a non-ASCII local part fails alone,
// permanently (5.6.7, RFC 6531 §3.5).
func (s *session) refuse(msg *transport.Message, rcpts []string) (bad map[string]error, err error) {
	if s.maxSize > 0 && msg.Size > s.maxSize {
		// RFC 1870 §6.2: do not send what the server said it refuses.
		return nil, reply.New(552, 3, 4, fmt.Sprintf("Message size %d exceeds the limit of %d of %s", msg.Size, s.maxSize, s.name))
	}
	for _, a := range append([]string{msg.Sender}, rcpts...) {
		if strings.ContainsAny(a, "\r\n<>") {
			return nil, transport.Permanent(fmt.Errorf("address %q cannot be sent in a command", a))
		}
	}
	if s.utf8 {
		return nil, nil
	}
	noUTF8 := func(what string) error {
		return reply.New(550, 6, 7, fmt.Sprintf("%s does not support SMTPUTF8, which %s needs", s.name, what))
	}
	if _, ascii := route.WireAddress(msg.Sender); !ascii {
		return nil, noUTF8("the sender <" + msg.Sender + ">")
	}
	for _, r := range rcpts {
		if _, ascii := route.WireAddress(r); !ascii {
			if bad == nil {
				bad = map[string]error{}
			}
			bad[r] = noUTF8("<" + r + ">")
		}
	}
	if msg.UTF8 && len(bad) < len(rcpts) {
		// Received with SMTPUTF8: the header may need it.
		need, err := headerNeedsUTF8(msg)
		if err != nil {
			return nil, fmt.Errorf("reading message %s: %w", msg.ID, err)
		}
		if need {
			return nil, noUTF8("the message header")
		}
	}
	return bad, nil
}

// maxHeaderScan bounds how much of a message headerNeedsUTF8 reads; a
// header that does not end within it counts as needing SMTPUTF8.
const maxHeaderScan = 1 << 20

// headerNeedsUTF8 reports whether the header of msg holds a non-ASCII
// octet (RFC 6532 §3.2: UTF-8 in header fields needs SMTPUTF8).
func headerNeedsUTF8(msg *transport.Message) (bool, error) {
	if msg.Open == nil {
		return true, nil
	}
	body, err := msg.Open()
	if err != nil {
		return false, err
	}
	defer body.Close()
	br := bufio.NewReaderSize(body, 4096)
	start := true // at the start of a line
	for read := 0; read < maxHeaderScan; {
		line, err := br.ReadSlice('\n')
		read += len(line)
		if hasHigh(line) {
			return true, nil
		}
		if start && (len(line) == 2 && line[0] == '\r' || len(line) == 1 && line[0] == '\n') {
			return false, nil // the blank line that ends the header
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			start = false // a long line: read on
		case err == io.EOF:
			return false, nil // a message of header only
		case err != nil:
			return false, err
		default:
			start = true
		}
	}
	return true, nil
}

func hasHigh(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// commands is the group of a transaction: RSET first on a reused
// session (RFC 5321 §4.1.1.5), then XFORWARD, MAIL, RCPT and DATA.
func (s *session) commands(msg *transport.Message, rcpts []string, rset bool) *group {
	g := &group{s: s, pipelined: s.pipeline, rset: rset}
	if rset {
		g.cmds = append(g.cmds, "RSET")
	}
	xfwd := s.xforwardLines(msg)
	g.xfwd = len(xfwd)
	g.cmds = append(g.cmds, xfwd...)
	g.cmds = append(g.cmds, s.mailCommand(msg))
	for _, r := range rcpts {
		// The domain in A-label form, as routing saw it (route.WireAddress).
		w, _ := route.WireAddress(r)
		g.cmds = append(g.cmds, "RCPT TO:<"+w+">")
	}
	g.cmds = append(g.cmds, "DATA")
	return g
}

// finish reads the replies of a started group and sends the message.
// stale: a session that gives no first reply was dead before this
// transaction (a pooled one, or one that carries a rider), so nothing
// was sent and another session may be tried (outStale).
func (s *session) finish(msg *transport.Message, rcpts []string, res map[string]error, g *group, stale bool) outcome {
	all := func(rs []string, err error) {
		for _, r := range rs {
			res[r] = err
		}
	}
	if g.rset {
		// The reply to RSET proves the pooled connection is alive.
		if r, err := g.next(s.t.Mail); err != nil || r.Code != 250 {
			return outStale
		}
		stale = false
	}
	for range g.xfwd {
		if _, err := g.next(s.t.Mail); err != nil {
			if stale {
				return outStale
			}
			all(rcpts, fmt.Errorf("%s: XFORWARD: %w", s.name, err))
			return outDrop
		}
		stale = false
		// A refusal is not a reason not to deliver.
	}
	mr, err := g.next(s.t.Mail)
	if err != nil {
		if stale {
			return outStale
		}
		all(rcpts, fmt.Errorf("%s: MAIL FROM: %w", s.name, err))
		return outDrop
	}
	var mailErr error
	if mr.Code != 250 {
		mailErr = wireErr(mr, s.name, "MAIL FROM")
		if mr.Code == 421 || !g.pipelined {
			all(rcpts, mailErr)
			return keepUnless421(mr)
		}
	}
	var accepted []string
	for _, r := range rcpts {
		rr, err := g.next(s.t.Rcpt)
		if err != nil {
			all(rcpts, fmt.Errorf("%s: RCPT TO: %w", s.name, err))
			return outDrop
		}
		switch {
		case mailErr != nil:
			// Pipelined after a refused MAIL: these replies mean nothing.
		case rr.Code == 250 || rr.Code == 251:
			accepted = append(accepted, r)
		case rr.Code == 421:
			// RFC 5321 §3.8: the server is closing; nothing stands.
			all(rcpts, wireErr(rr, s.name, "RCPT TO"))
			return outDrop
		default:
			res[r] = wireErr(rr, s.name, "RCPT TO")
		}
	}
	if mailErr != nil {
		all(rcpts, mailErr)
	}
	if !g.pipelined && len(accepted) == 0 {
		return outKeep // DATA not sent; the next use sends RSET
	}
	dr, err := g.next(s.t.DataInit)
	if err != nil {
		all(accepted, fmt.Errorf("%s: DATA: %w", s.name, err))
		return outDrop
	}
	if dr.Code != 354 {
		all(accepted, wireErr(dr, s.name, "DATA"))
		return keepUnless421(dr)
	}
	if len(accepted) == 0 {
		// RFC 2920 §3.1: a server should refuse DATA when no recipient
		// was accepted. One that did not gets no message: dropping the
		// connection makes it discard the transaction.
		return outDrop
	}
	return s.sendData(msg, accepted, res)
}

// sendData sends the message after the 354 reply (RFC 5321 §4.1.1.4),
// dot-stuffed, and reads the reply to the final dot: one for SMTP, one
// per accepted recipient for LMTP (RFC 2033 §4.2). The commands of a
// claimed rider follow the dot in the same write; the rider is kept in
// s.next when the session stays usable, else handed back.
func (s *session) sendData(msg *transport.Message, accepted []string, res map[string]error) outcome {
	fail := func(rs []string, err error) outcome {
		for _, r := range rs {
			res[r] = err
		}
		return outDrop
	}
	body, err := msg.Open()
	if err != nil {
		// We cannot end the data without sending the final dot, which
		// would deliver a truncated message: drop the connection.
		return fail(accepted, fmt.Errorf("opening message %s: %w", msg.ID, err))
	}
	dw := &dataWriter{w: s.bw}
	buf := copyBufs.Get().(*[]byte)
	_, err = io.CopyBuffer(dw, body, *buf)
	copyBufs.Put(buf)
	body.Close()
	var r *rider
	if err == nil {
		err = dw.end()
	}
	if err == nil {
		if r = s.claimRider(); r != nil {
			r.g.write()
		}
		err = s.bw.Flush()
	}
	if err != nil {
		handBack(r)
		return fail(accepted, fmt.Errorf("%s: sending the message: %w", s.name, err))
	}
	if !s.lmtp {
		fr, err := s.wc.reply(s.t.DataFinal)
		if err != nil {
			handBack(r)
			return fail(accepted, fmt.Errorf("%s: end of DATA: %w", s.name, err))
		}
		var e error = s.delivered(fr)
		if fr.Code != 250 {
			e = wireErr(fr, s.name, "end of DATA")
		}
		for _, rcpt := range accepted {
			res[rcpt] = e
		}
		out := keepUnless421(fr)
		if out == outKeep {
			s.next = r
		} else {
			handBack(r)
		}
		return out
	}
	keep := outKeep
	for i, rcpt := range accepted {
		r, err := s.wc.reply(s.t.DataFinal)
		if err != nil {
			return fail(accepted[i:], fmt.Errorf("%s: no LMTP reply for <%s>: %w", s.name, rcpt, err))
		}
		if r.Code == 250 {
			res[rcpt] = s.delivered(r)
			continue
		}
		res[rcpt] = wireErr(r, s.name, "end of DATA")
		if r.Code == 421 {
			keep = outDrop
		}
	}
	return keep
}

// copyBufs are the buffers that carry a message from the spool to the
// connection (io.Copy would allocate 32 KiB per message).
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// keepUnless421 keeps a session after a refusal, except 421 (RFC 5321
// §3.8: the server is closing the channel).
func keepUnless421(r *reply.Response) outcome {
	if r.Code == 421 {
		return outDrop
	}
	return outKeep
}

// mailCommand is the MAIL command for msg with the parameters the
// server offered: BODY=8BITMIME (RFC 6152), SIZE (RFC 1870 §6),
// SMTPUTF8 (RFC 6531 §3.4).
func (s *session) mailCommand(msg *transport.Message) string {
	var b strings.Builder
	b.WriteString("MAIL FROM:<")
	w, _ := route.WireAddress(msg.Sender)
	b.WriteString(w)
	b.WriteByte('>')
	if s.eightBit {
		b.WriteString(" BODY=8BITMIME")
	}
	if s.sizeExt && msg.Size > 0 {
		b.WriteString(" SIZE=")
		b.WriteString(strconv.FormatInt(msg.Size, 10))
	}
	if msg.UTF8 && s.utf8 {
		// Without SMTPUTF8 at the server, refuse let through only what
		// does not need it.
		b.WriteString(" SMTPUTF8")
	}
	return b.String()
}

// group is a sequence of commands and their replies: written at once
// when pipelined, one at a time otherwise.
type group struct {
	s         *session
	cmds      []string
	pipelined bool
	rset      bool // starts with RSET
	xfwd      int  // XFORWARD commands after it
	i         int  // the next reply to read
}

// start writes every command of a pipelined group (RFC 2920 §3.1: DATA
// is the last of the group).
func (g *group) start() error {
	if !g.pipelined {
		return nil
	}
	g.write()
	return g.s.bw.Flush()
}

// write buffers every command of the group.
func (g *group) write() {
	for _, c := range g.cmds {
		g.s.bw.WriteString(c)
		g.s.bw.WriteString("\r\n")
	}
}

// next reads the reply to the next command, sending it first when not
// pipelined.
func (g *group) next(timeout time.Duration) (*reply.Response, error) {
	if g.i >= len(g.cmds) {
		return nil, errors.New("no command left in the group")
	}
	if !g.pipelined {
		g.s.bw.WriteString(g.cmds[g.i])
		g.s.bw.WriteString("\r\n")
		if err := g.s.bw.Flush(); err != nil {
			return nil, err
		}
	}
	g.i++
	return g.s.wc.reply(timeout)
}

// delivered marks a recipient as delivered in a result map, with the
// host and its reply for the mail log. It is an error only to fit the
// map: Client.Deliver turns it into a Result with Err nil.
type delivered struct{ relay, reply string }

func (d *delivered) Error() string { return "delivered to " + d.relay + ": " + d.reply }

// maxReplyLog bounds the reply kept for the mail log (its line has a cap too).
const maxReplyLog = 512

// delivered is the result of a recipient that r (a 250) accepted.
func (s *session) delivered(r *reply.Response) *delivered {
	text := strings.Join(r.Lines, " ")
	if len(text) > maxReplyLog {
		text = text[:maxReplyLog]
	}
	return &delivered{relay: s.name, reply: strconv.Itoa(r.Code) + " " + text}
}
