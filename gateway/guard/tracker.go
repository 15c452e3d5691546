package guard

import (
	"bytes"

	"moat/internal/dataend"
)

// event is what the tracker found in the client's bytes.
type event uint8

const (
	evNone  event = iota
	evHTTP        // an HTTP request line or header where a command should be
	evTLS         // a TLS ClientHello on a plaintext port
	evProxy       // a PROXY protocol header from a client not trusted to send one
	evLoop        // too many RSET/NOOP/HELO/EHLO
)

func (e event) reason() string {
	switch e {
	case evHTTP:
		return ReasonHTTP
	case evTLS:
		return ReasonTLSOnPlain
	case evProxy:
		return ReasonProxyUntrusted
	case evLoop:
		return ReasonCommandLoop
	}
	return ""
}

// lineKeep is how much of each command line the tracker keeps: enough
// for the verb and a BDAT size; the rest of a long line passes through
// untouched (the SMTP server enforces its own line limit).
const lineKeep = 32

// Tracker modes.
const (
	modeCmd  uint8 = iota // reading command lines
	modeData              // inside DATA, until <CRLF>.<CRLF>
	modeBdat              // inside a BDAT chunk, bdatLeft bytes to go
	modePass              // after STARTTLS: ciphertext, not inspected
)

// tracker follows an SMTP conversation from the bytes of both sides,
// keeping only a small fixed state: the first bytes of the connection,
// the first lineKeep bytes of the current command line, the mode, and
// counters. It is not safe for concurrent use.
type tracker struct {
	maxLoops int

	first  [5]byte
	firstN uint8

	line    [lineKeep]byte
	lineN   uint8
	checked bool
	lines   int

	mode     uint8
	dstate   dataend.State
	bdatLeft int64

	loops   int
	pending int // replies the client is waiting for
	dataAt  int // >0: replies to go until the one answering DATA
	tlsAt   int // >0: replies to go until the one answering STARTTLS

	reply  [4]byte
	replyN uint8
	midSrv bool // inside a server line, after its first 4 bytes
	errors int  // 5xx replies written
}

// v2sig is the start of the PROXY protocol v2 signature.
var v2sig = []byte{'\r', '\n', '\r', '\n', 0}

// client inspects bytes read from the client and returns the first
// violation found.
func (t *tracker) client(p []byte) event {
	for len(p) > 0 {
		switch t.mode {
		case modePass:
			return evNone
		case modeBdat:
			n := int64(len(p))
			if n > t.bdatLeft {
				n = t.bdatLeft
			}
			t.bdatLeft -= n
			p = p[n:]
			if t.bdatLeft == 0 {
				t.mode = modeCmd
			}
		case modeData:
			p = t.data(p)
		default:
			c := p[0]
			p = p[1:]
			if ev := t.cmdByte(c); ev != evNone {
				return ev
			}
		}
	}
	return evNone
}

// data follows DATA over p (package internal/dataend, so that the
// tracker ends DATA exactly where the SMTP loop does) and returns what
// follows the end of the data (if it ended inside p).
func (t *tracker) data(p []byte) []byte {
	for i := 0; i < len(p); i++ {
		if t.dstate == dataend.Data {
			// Within a line only a CR changes the state: skip to it.
			j := bytes.IndexByte(p[i:], '\r')
			if j < 0 {
				return nil
			}
			i += j
		}
		if t.dstate = dataend.Next(t.dstate, p[i]); t.dstate == dataend.End {
			// End of data: the server answers it (one more reply).
			t.mode = modeCmd
			t.pending++
			t.resetLine()
			return p[i+1:]
		}
	}
	return nil
}

func (t *tracker) resetLine() {
	t.lineN = 0
	t.checked = false
}

func (t *tracker) cmdByte(c byte) event {
	if t.firstN < uint8(len(t.first)) {
		t.first[t.firstN] = c
		t.firstN++
		// A TLS record of type handshake (22) where SMTP text should be:
		// a client speaking TLS to a plaintext port (RFC 8446 §5.1).
		if t.firstN == 1 && c == 0x16 {
			return evTLS
		}
		if t.firstN == uint8(len(t.first)) && bytes.Equal(t.first[:], v2sig) {
			return evProxy
		}
	}
	if c == '\n' {
		return t.endLine()
	}
	if c == '\r' {
		return evNone
	}
	if int(t.lineN) < lineKeep {
		t.line[t.lineN] = c
		t.lineN++
		if int(t.lineN) == lineKeep && !t.checked {
			t.checked = true
			return t.checkLine()
		}
	}
	return evNone
}

var httpMethods = []string{"GET ", "POST ", "HEAD ", "PUT ", "DELETE ", "CONNECT ", "OPTIONS ", "TRACE ", "PATCH "}

// checkLine looks at the start of a command line for things that are not
// SMTP: an HTTP request line or header (a browser or proxy abuser talking
// to port 25), or a PROXY v1 header from an untrusted client.
func (t *tracker) checkLine() event {
	l := t.line[:t.lineN]
	if t.lines == 0 && bytes.HasPrefix(l, []byte("PROXY ")) {
		return evProxy
	}
	for _, m := range httpMethods {
		if len(l) >= len(m) && bytes.EqualFold(l[:len(m)], []byte(m)) {
			return evHTTP
		}
	}
	// "Host: x", "User-Agent: y": a first word ending in ':' is never an
	// SMTP command (RFC 5321 §4.1.1 verbs are followed by SP or CRLF).
	if sp := bytes.IndexByte(l, ' '); sp > 1 && l[sp-1] == ':' && isToken(l[:sp-1]) {
		return evHTTP
	}
	return evNone
}

func isToken(b []byte) bool {
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// endLine handles a complete command line (RFC 5321 §2.3.8: commands end
// with CRLF; like the SMTP loop, a bare LF is accepted as the end).
func (t *tracker) endLine() event {
	ev := evNone
	if !t.checked {
		ev = t.checkLine()
	}
	l := t.line[:t.lineN]
	t.resetLine()
	t.lines++
	if ev != evNone {
		return ev
	}
	t.pending++
	verb, arg, _ := bytes.Cut(l, []byte(" "))
	switch {
	case isVerb(verb, "RSET"), isVerb(verb, "NOOP"), isVerb(verb, "HELO"), isVerb(verb, "EHLO"):
		t.loops++
		if t.maxLoops > 0 && t.loops > t.maxLoops {
			return evLoop
		}
	case isVerb(verb, "STARTTLS"):
		t.tlsAt = t.pending
	case isVerb(verb, "DATA") && len(bytes.TrimSpace(arg)) == 0:
		// Follow the data at once: a pipelining client (RFC 2920) may send
		// it before the 354 arrives; leave again if the server refuses.
		t.mode = modeData
		t.dstate = dataend.BeginLine
		t.dataAt = t.pending
	case isVerb(verb, "BDAT"):
		// RFC 3030 §2: BDAT <size> [LAST], then exactly size octets.
		sz, _, _ := bytes.Cut(bytes.TrimSpace(arg), []byte(" "))
		if n, ok := parseSize(sz); ok && n > 0 {
			t.mode = modeBdat
			t.bdatLeft = n
		}
	}
	return evNone
}

func isVerb(b []byte, verb string) bool { return bytes.EqualFold(b, []byte(verb)) }

func parseSize(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// server inspects bytes written by the SMTP server and returns the number
// of final 5xx reply lines that start in p (RFC 5321 §4.2: "ddd " ends a
// reply, "ddd-" continues it).
func (t *tracker) server(p []byte) (fives int) {
	for len(p) > 0 {
		if t.mode == modePass {
			return fives
		}
		if t.midSrv {
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				return fives
			}
			p = p[i+1:]
			t.midSrv = false
			t.replyN = 0
			continue
		}
		c := p[0]
		p = p[1:]
		if c == '\n' { // a line shorter than 4 bytes
			t.replyN = 0
			continue
		}
		t.reply[t.replyN] = c
		t.replyN++
		if t.replyN < 4 {
			continue
		}
		t.midSrv = true
		if t.reply[3] == ' ' && isDigit(t.reply[0]) && isDigit(t.reply[1]) && isDigit(t.reply[2]) {
			if t.finalReply() {
				fives++
			}
		}
	}
	return fives
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// finalReply accounts for one complete reply; it reports a 5xx.
func (t *tracker) finalReply() bool {
	code := t.reply[:3]
	if t.pending > 0 {
		t.pending--
	}
	if t.dataAt > 0 {
		t.dataAt--
		if t.dataAt == 0 && string(code) != "354" && t.mode == modeData {
			// DATA was refused: what followed was commands after all.
			t.mode = modeCmd
			t.resetLine()
		}
	}
	if t.tlsAt > 0 {
		t.tlsAt--
		if t.tlsAt == 0 && string(code) == "220" {
			// RFC 3207 §4: the TLS handshake starts now; nothing after it
			// is readable here.
			t.mode = modePass
		}
	}
	if code[0] == '5' {
		t.errors++
		return true
	}
	return false
}
