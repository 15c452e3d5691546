// Package milter calls a Sendmail/Postfix mail filter (a milter) as a
// scanner.Scanner, through the client of github.com/d--j/go-milter, over
// TCP or a unix socket.
//
// One Scan is one milter connection, the way Postfix runs a milter for
// one message: option negotiation, connect (client name, address, port),
// HELO, MAIL FROM, one RCPT TO per recipient, DATA, the header fields,
// end of header, the body in chunks and end of message; then QUIT. The
// macros a milter usually reads are set where moat knows them: j and v,
// {daemon_name}, {client_addr}, {client_port}, {client_name},
// {client_ptr}, i (queue id), {auth_authen}, {mail_addr}, {mail_host},
// {rcpt_addr}, {rcpt_host}.
//
// The answer is mapped to a scanner.Result:
//   - accept or continue at the end → Action "accept"; reject, tempfail,
//     discard → that Action, with the milter's SMFIR_REPLYCODE text as
//     Result.Reply ("550 5.7.1 text"); a quarantine request → Action
//     "quarantine" unless the milter also refused the message.
//   - header changes (SMFIR_ADDHEADER, SMFIR_INSHEADER, SMFIR_CHGHEADER)
//     → Result.Changes, in the milter's order, values with CRLF line ends.
//   - a body replacement (SMFIR_REPLBODY, in one or more chunks) →
//     Result.Body, its chunks joined and bare LF or CR made CRLF (RFC 5321
//     §2.3.8), with the symbol "milter:body-change".
//   - changes moat does not apply are reported as symbols only:
//     "milter:from-change"
//     (SMFIR_CHGFROM), "milter:rcpt-add" (SMFIR_ADDRCPT[_PAR]),
//     "milter:rcpt-delete" (SMFIR_DELRCPT), "milter:rcpt-reject" (a
//     recipient the milter refused while others were kept: moat cannot
//     drop one recipient after DATA; when it refuses all of them its
//     answer is the message's), and "milter:bad-header-change" for a
//     header change that is not a valid field.
//
// Every read and write is under the context's deadline (the library's own
// timeouts are off); a packet larger than MaxPacket, an empty packet, or
// more than MaxAnswer octets of answers in one session is a protocol
// error, before anything is allocated for it.
package milter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	gomilter "github.com/d--j/go-milter"

	"moat/internal/reply"
	"moat/policy/scanner"
	"moat/policy/scanner/internal/scannet"
)

// Bounds on what a milter sends.
const (
	MaxPacket     = 2 << 20 // one packet (a body replacement chunk is at most 1 MB)
	MaxAnswer     = 8 << 20 // all packets of one session, plus twice the message size
	MaxChanges    = 200     // header changes kept
	MaxFieldValue = 64 << 10
	maxReplyLines = 16
)

// DaemonName is the {daemon_name} macro.
const DaemonName = "moat"

// Client talks to one milter. It is safe for concurrent use: each call
// opens its own connection.
type Client struct {
	name string
	addr scannet.Address
	cfg  scanner.Config
	// dial is the connection to the milter; tests replace it.
	dial func(ctx context.Context) (net.Conn, error)
}

var _ scanner.Scanner = (*Client)(nil)

// New checks cfg (Address "host:port" or "unix:/path") and returns the
// client. It opens no connection.
func New(cfg scanner.Config) (*Client, error) {
	a, err := scannet.Check("milter", cfg.Name, cfg.Address, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	c := &Client{name: cfg.Name, addr: a, cfg: cfg}
	c.dial = func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, a.Network, a.Addr)
	}
	return c, nil
}

// Name is the scanner's configured name.
func (c *Client) Name() string { return c.name }

// Ping opens a connection and negotiates options.
func (c *Client) Ping(ctx context.Context) (err error) {
	ctx, cancel := scannet.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	defer c.recoverTo(&err)
	s, err := c.session(ctx, nil, MaxAnswer)
	if err != nil {
		return err
	}
	_ = s.Close() // negotiated: the milter answers
	return nil
}

// Scan runs one message through the milter.
func (c *Client) Scan(ctx context.Context, req *scanner.Request) (res *scanner.Result, err error) {
	ctx, cancel := scannet.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	defer func() {
		if err != nil {
			res = nil
		}
	}()
	defer c.recoverTo(&err)
	if len(req.Recipients) == 0 {
		// The milter protocol has no DATA without RCPT.
		return nil, scannet.Fail(c.name, scanner.KindRefused, errors.New("a message without recipients"))
	}
	macros := connMacros(req)
	s, err := c.session(ctx, macros, MaxAnswer+2*int64(len(req.Message)))
	if err != nil {
		return nil, err
	}
	defer s.Close()
	t := &txn{s: s, macros: macros, req: req, res: &scanner.Result{}}
	if err := t.run(); err != nil {
		return nil, c.classify(ctx, err)
	}
	t.res.Symbols = scannet.Symbols(t.symbols)
	return t.res, nil
}

// recoverTo turns a panic in the milter library (an answer it did not
// expect) into a protocol error: a bad milter never takes moat down.
func (c *Client) recoverTo(err *error) {
	if r := recover(); r != nil {
		*err = scannet.Fail(c.name, scanner.KindProtocol, fmt.Errorf("milter library: %v", r))
	}
}

// session dials and negotiates. budget bounds the octets read.
func (c *Client) session(ctx context.Context, macros gomilter.Macros, budget int64) (*gomilter.ClientSession, error) {
	var dialErr error
	dial := dialerFunc(func(string, string) (net.Conn, error) {
		raw, err := c.dial(ctx)
		if err != nil {
			dialErr = err
			return nil, err
		}
		w := scannet.Watch(ctx, raw)
		return &conn{Conn: w, r: bufio.NewReader(w), w: bufio.NewWriter(w), budget: budget}, nil
	})
	cl := gomilter.NewClient(c.addr.Network, c.addr.Addr,
		gomilter.WithDialer(dial),
		// The deadline is ctx's, set on the connection.
		gomilter.WithReadTimeout(0), gomilter.WithWriteTimeout(0),
		// Offer every action, so that no milter refuses to negotiate;
		// those moat does not apply are reported (package doc).
		gomilter.WithActions(gomilter.AllClientSupportedActionMasks),
		gomilter.WithMacroRequest(gomilter.StageConnect, []gomilter.MacroName{
			gomilter.MacroMTAFQDN, gomilter.MacroMTAVersion, gomilter.MacroDaemonName,
			gomilter.MacroClientAddr, gomilter.MacroClientPort, gomilter.MacroClientName, gomilter.MacroClientPTR,
		}),
		gomilter.WithMacroRequest(gomilter.StageHelo, []gomilter.MacroName{gomilter.MacroTlsVersion}),
		gomilter.WithMacroRequest(gomilter.StageMail, []gomilter.MacroName{
			gomilter.MacroAuthAuthen, gomilter.MacroMailAddr, gomilter.MacroMailHost, gomilter.MacroQueueId,
		}),
		gomilter.WithMacroRequest(gomilter.StageRcpt, []gomilter.MacroName{gomilter.MacroRcptAddr, gomilter.MacroRcptHost}),
		gomilter.WithMacroRequest(gomilter.StageEOM, []gomilter.MacroName{gomilter.MacroQueueId}),
	)
	s, err := cl.Session(macros)
	if err != nil {
		if dialErr != nil {
			return nil, scannet.Fail(c.name, scanner.KindConnect, dialErr)
		}
		return nil, c.classify(ctx, err)
	}
	return s, nil
}

type dialerFunc func(network, addr string) (net.Conn, error)

func (f dialerFunc) Dial(network, addr string) (net.Conn, error) { return f(network, addr) }

// classify maps a failed exchange to its kind: the library's own errors
// (an unexpected code, a malformed packet) are protocol errors.
func (c *Client) classify(ctx context.Context, err error) *scanner.Error {
	se := scannet.Classify(ctx, c.name, err)
	if se.Kind != scanner.KindIO {
		return se
	}
	var ne net.Error
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || scannet.IsReset(err) || errors.As(err, &ne) {
		return se
	}
	return scannet.Fail(c.name, scanner.KindProtocol, err)
}

// connMacros are the macros moat knows before the transaction.
func connMacros(req *scanner.Request) *gomilter.MacroBag {
	m := gomilter.NewMacroBag()
	set := func(k gomilter.MacroName, v string) {
		if v != "" && !strings.ContainsRune(v, 0) {
			m.Set(k, v)
		}
	}
	set(gomilter.MacroMTAFQDN, req.Hostname)
	set(gomilter.MacroMTAVersion, DaemonName)
	set(gomilter.MacroDaemonName, DaemonName)
	set(gomilter.MacroQueueId, req.QueueID)
	if req.ClientIP.IsValid() {
		set(gomilter.MacroClientAddr, req.ClientIP.Unmap().String())
		set(gomilter.MacroClientPort, strconv.Itoa(req.ClientPort))
	}
	set(gomilter.MacroClientName, clientName(req))
	set(gomilter.MacroClientPTR, clientName(req))
	set(gomilter.MacroAuthAuthen, req.AuthUser)
	if req.TLS {
		// moat does not pass the TLS version; a milter that only asks
		// whether TLS was used sees it set.
		set(gomilter.MacroTlsVersion, "TLS")
	}
	set(gomilter.MacroMailAddr, req.Sender)
	set(gomilter.MacroMailHost, domainOf(req.Sender))
	return m
}

// clientName is the client's verified name, or "unknown" as Postfix says.
func clientName(req *scanner.Request) string {
	if req.ClientName != "" {
		return req.ClientName
	}
	return "unknown"
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}

// txn is one message's exchange.
type txn struct {
	s       *gomilter.ClientSession
	macros  *gomilter.MacroBag
	req     *scanner.Request
	res     *scanner.Result
	symbols []string
}

// errStop ends the exchange with the verdict already in res.
var errStop = errors.New("milter decided")

func (t *txn) run() error {
	err := t.exchange()
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

func (t *txn) exchange() error {
	req := t.req
	family, addr := gomilter.FamilyUnknown, ""
	if req.ClientIP.IsValid() {
		ip := req.ClientIP.Unmap()
		family, addr = gomilter.FamilyInet, ip.String()
		if ip.Is6() {
			family = gomilter.FamilyInet6
		}
	}
	if err := t.step(t.s.Conn(clientName(req), family, uint16(req.ClientPort), addr)); err != nil {
		return err
	}
	if err := t.step(t.s.Helo(req.HELO)); err != nil {
		return err
	}
	if err := t.step(t.s.Mail(req.Sender, "")); err != nil {
		return err
	}
	if err := t.rcpts(); err != nil {
		return err
	}
	if err := t.step(t.s.DataStart()); err != nil {
		return err
	}
	fields, body := splitMessage(req.Message)
	// Sendmail and Postfix drop the one space after the colon unless the
	// milter asked for it (SMFIP_HDR_LEADSPC).
	keepSpace := t.s.ProtocolOption(gomilter.OptHeaderLeadingSpace)
	for _, f := range fields {
		v := f.value
		if !keepSpace {
			v = strings.TrimPrefix(v, " ")
		}
		if err := t.step(t.s.HeaderField(f.name, v, nil)); err != nil {
			return err
		}
	}
	if err := t.step(t.s.HeaderEnd()); err != nil {
		return err
	}
	if len(body) == 0 {
		// The library reaches end of message only after a body chunk:
		// an empty one stands for the empty body.
		if err := t.step(t.s.BodyChunk(nil)); err != nil {
			return err
		}
	}
	mods, act, err := t.s.BodyReadFrom(bytes.NewReader(body))
	if err != nil {
		return err
	}
	t.modifications(mods)
	switch act.Type {
	case gomilter.ActionContinue, gomilter.ActionAccept, gomilter.ActionSkip:
		// The end of the message: going on means accepting it.
		if t.res.Action == "" {
			t.res.Action = "accept"
		}
		return nil
	}
	return t.step(act, nil)
}

// step applies one answer: continue goes on; anything else decides.
func (t *txn) step(act *gomilter.Action, err error) error {
	if err != nil {
		return err
	}
	switch act.Type {
	case gomilter.ActionContinue, gomilter.ActionSkip:
		return nil
	case gomilter.ActionAccept:
		t.res.Action = "accept"
	case gomilter.ActionDiscard:
		t.res.Action = "discard"
	case gomilter.ActionReject:
		t.res.Action = "reject"
	case gomilter.ActionTempFail:
		t.res.Action = "tempfail"
	case gomilter.ActionRejectWithCode:
		t.res.Reply = ParseReply(int(act.SMTPCode), act.SMTPReply)
		t.res.Action = "reject"
		if t.res.Reply.Temporary() {
			t.res.Action = "tempfail"
		}
	default:
		return scannet.Protocolf("milter answered action %d", act.Type)
	}
	t.res.Changes = nil // a refused message keeps no changes
	return errStop
}

// rcpts sends each recipient. A recipient the milter refuses is noted;
// when it refuses all, its (first) refusal is the answer.
func (t *txn) rcpts() error {
	var refused *scanner.Result
	kept := 0
	for _, r := range t.req.Recipients {
		t.macros.Set(gomilter.MacroRcptAddr, r)
		t.macros.Set(gomilter.MacroRcptHost, domainOf(r))
		act, err := t.s.Rcpt(r, "")
		if err != nil {
			return err
		}
		switch act.Type {
		case gomilter.ActionContinue, gomilter.ActionSkip, gomilter.ActionAccept:
			// RCPT-stage accept accepts the recipient (libmilter
			// xxfi_envrcpt), not the message.
			kept++
		case gomilter.ActionDiscard:
			return t.step(act, nil) // discards the whole message
		default:
			if refused == nil {
				saved := t.res
				t.res = &scanner.Result{}
				if err := t.step(act, nil); !errors.Is(err, errStop) {
					return err
				}
				refused, t.res = t.res, saved
			}
			t.symbols = append(t.symbols, "milter:rcpt-reject")
		}
	}
	if kept == 0 && refused != nil {
		t.res = refused
		return errStop
	}
	return nil
}

// modifications turns the end-of-message changes into the Result.
func (t *txn) modifications(mods []gomilter.ModifyAction) {
	for _, m := range mods {
		switch m.Type {
		case gomilter.ActionAddHeader, gomilter.ActionInsertHeader, gomilter.ActionChangeHeader:
			hc, ok := headerChange(m)
			if !ok || len(t.res.Changes) >= MaxChanges {
				t.symbols = append(t.symbols, "milter:bad-header-change")
				continue
			}
			t.res.Changes = append(t.res.Changes, hc)
		case gomilter.ActionReplaceBody:
			if t.res.Body == nil {
				t.res.Body = []byte{}
				t.symbols = append(t.symbols, "milter:body-change")
			}
			t.res.Body = append(t.res.Body, m.Body...)
		case gomilter.ActionChangeFrom:
			t.symbols = append(t.symbols, "milter:from-change")
		case gomilter.ActionAddRcpt:
			t.symbols = append(t.symbols, "milter:rcpt-add")
		case gomilter.ActionDelRcpt:
			t.symbols = append(t.symbols, "milter:rcpt-delete")
		case gomilter.ActionQuarantine:
			t.res.Action = "quarantine"
		}
	}
	if t.res.Body != nil {
		t.res.Body = crlf(t.res.Body)
	}
}

// crlf returns b with every line end CRLF: milters write bare LF as
// often as CRLF, and a message moat stores has CRLF line ends only.
func crlf(b []byte) []byte {
	if !bytes.ContainsAny(b, "\r\n") {
		return b
	}
	out := make([]byte, 0, len(b)+len(b)/32)
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '\r' && i+1 < len(b) && b[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case c == '\r' || c == '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out
}

// headerChange checks a milter's header change: the name a valid field
// name (RFC 5322 §2.2: printable ASCII but colon), the value bounded and
// without NUL; line ends become CRLF (milters fold with a bare LF).
func headerChange(m gomilter.ModifyAction) (scanner.HeaderChange, bool) {
	name, value := m.HeaderName, m.HeaderValue
	if !validFieldName(name) || len(value) > MaxFieldValue || strings.ContainsRune(value, 0) {
		return scanner.HeaderChange{}, false
	}
	value = strings.ReplaceAll(strings.ReplaceAll(value, "\r\n", "\n"), "\n", "\r\n")
	if strings.ContainsRune(value, '\r') && strings.Count(value, "\r") != strings.Count(value, "\r\n") {
		return scanner.HeaderChange{}, false // a bare CR
	}
	// A continuation line must start with white space, or the value
	// would add a field of its own.
	for _, l := range strings.Split(value, "\r\n")[1:] {
		if l == "" || (l[0] != ' ' && l[0] != '\t') {
			return scanner.HeaderChange{}, false
		}
	}
	hc := scanner.HeaderChange{Name: name, Value: value, Index: int(m.HeaderIndex)}
	switch m.Type {
	case gomilter.ActionAddHeader:
		hc.Op, hc.Index = scanner.HeaderAdd, 0
	case gomilter.ActionInsertHeader:
		// "insert after the HeaderIndex-th field" is position
		// HeaderIndex counted from 0.
		hc.Op = scanner.HeaderInsert
	case gomilter.ActionChangeHeader:
		hc.Op = scanner.HeaderReplace
	}
	if hc.Index < 0 || hc.Index > 1<<20 {
		return scanner.HeaderChange{}, false
	}
	return hc, true
}

// validFieldName: RFC 5322 §3.6.8, printable US-ASCII but colon; at most
// 128 octets here.
func validFieldName(name string) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] <= ' ' || name[i] >= 0x7f || name[i] == ':' {
			return false
		}
	}
	return true
}

// ParseReply reads the reply text of SMFIR_REPLYCODE, "550 5.7.1 text" or
// a multi-line "550-5.7.1 a\r\n550 5.7.1 b", into a reply whose code is
// code (which the library checked is 4yz or 5yz). Lines are joined with a
// space; an enhanced code of the wrong class is dropped; a reply that is
// still invalid becomes 451 4.7.1 or 550 5.7.1.
func ParseReply(code int, s string) *reply.Reply {
	class := code / 100
	r := &reply.Reply{Code: code, Enhanced: reply.Enhanced{class, 0, 0}}
	var texts []string
	lines := strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	for i, l := range lines {
		if i == maxReplyLines {
			break
		}
		if len(l) >= 3 && l[:3] == strconv.Itoa(code) {
			l = l[3:]
			if l != "" && (l[0] == '-' || l[0] == ' ') {
				l = l[1:]
			}
		}
		word, rest, _ := strings.Cut(l, " ")
		if e, err := reply.ParseEnhanced(word); err == nil && strings.Count(word, ".") == 2 {
			if e[0] == class && i == 0 {
				r.Enhanced = e
			}
			l = rest
		}
		if l = strings.TrimSpace(l); l != "" {
			texts = append(texts, l)
		}
	}
	r.Text = scannet.Printable(strings.Join(texts, " "), 400)
	if r.Text == "" {
		r.Text = "rejected by a content filter"
	}
	if r.Validate() != nil {
		if class == 4 {
			return reply.New(451, 7, 1, r.Text)
		}
		return reply.New(550, 7, 1, r.Text)
	}
	return r
}

// field is one header field as received: its value is everything after
// the colon, folded lines joined by LF (as Sendmail and Postfix pass them).
type field struct{ name, value string }

// splitMessage cuts a message into its header fields and body (RFC 5322
// §2.1: fields, an empty line, the body). A line that is neither a field
// (with a valid name) nor a continuation is skipped; a message without the empty line is all
// header.
func splitMessage(msg []byte) ([]field, []byte) {
	var fields []field
	rest := msg
	skipping := false // the continuation lines of a skipped line
	for len(rest) > 0 {
		line := rest
		next := []byte(nil)
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, next = rest[:i], rest[i+1:]
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		rest = next
		if len(line) == 0 {
			return fields, rest
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(fields) > 0 && !skipping {
				fields[len(fields)-1].value += "\n" + string(line)
			}
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		name = bytes.TrimRight(name, " \t") // RFC 5322 §4.5: obsolete WSP before the colon
		if skipping = !ok || !validFieldName(string(name)); skipping {
			continue
		}
		fields = append(fields, field{name: string(name), value: string(value)})
	}
	return fields, nil
}

// conn reads the milter's packets whole, checking each length before
// anything is allocated for it (the library would accept 512 MB, and
// panics on an empty packet); the library's deadlines are ignored: the
// deadline is the context's.
//
// The milter protocol is a packet per header field and per body chunk,
// each read by the library as a length and then a payload: reads and
// writes are buffered (two system calls per packet, not four), and what
// was written goes out when moat waits for an answer or closes.
type conn struct {
	*scannet.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	pending []byte
	budget  int64
}

func (c *conn) Write(p []byte) (int, error) { return c.w.Write(p) }

func (c *conn) Close() error {
	c.w.Flush()
	return c.Conn.Close()
}

func (c *conn) Read(p []byte) (int, error) {
	if c.w.Buffered() > 0 {
		if err := c.w.Flush(); err != nil {
			return 0, err
		}
	}
	if len(c.pending) == 0 {
		var hdr [4]byte
		if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
			return 0, err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		switch {
		case n == 0:
			return 0, scannet.Protocolf("milter sent an empty packet")
		case n > MaxPacket || int64(n)+4 > c.budget:
			return 0, fmt.Errorf("milter packet of %d octets: %w", n, scannet.ErrTooLarge)
		}
		c.budget -= int64(n) + 4
		buf := make([]byte, 4+n)
		copy(buf, hdr[:])
		if _, err := io.ReadFull(c.r, buf[4:]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		c.pending = buf
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *conn) SetDeadline(time.Time) error      { return nil }
func (c *conn) SetReadDeadline(time.Time) error  { return nil }
func (c *conn) SetWriteDeadline(time.Time) error { return nil }
