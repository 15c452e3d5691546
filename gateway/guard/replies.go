package guard

import (
	"sync"
	"time"

	"moat/internal/reply"
)

// The guard's replies, each naming this server (RFC 5321 §3.8 for a
// 421; §3.1 for the 554 in place of the greeting). A text with verbs is
// filled in with Format where the reply is sent.
var (
	// RFC 5321 §3.8: 421 and close when the service is not available.
	replyMaxConns    = reply.New(421, 7, 0, "Too many connections, try again later")
	replyClientConns = reply.New(421, 7, 0, "Too many connections from your address, try again later")
	replyManyErrors  = reply.New(421, 7, 0, "Too many errors, closing connection")
	replyCommandLoop = reply.New(421, 7, 0, "Too many commands, closing connection")
	// RFC 7504 §3: 521, and the server closes at once.
	replyProtocol = reply.New(521, 5, 1, "Protocol error")
	// RFC 5321 §3.1: 554 in place of the greeting.
	replyDenyList = reply.New(554, 7, 1, "Access denied for [%s]")
	// The DNSBL hit: 550 by default, 421 (try later) as configured.
	replyDNSBL     = reply.New(550, 7, 1, "Service unavailable; client [%s] blocked using %s")
	replyDNSBLTemp = reply.New(421, 7, 1, "Service unavailable; client [%s] blocked using %s, try again later")
	// guard.dnsbl.on_error: tempfail, a list failed (RFC 3463 §3.8:
	// X.7.0, a security or policy status that is not more precise).
	replyDNSBLError = reply.New(421, 7, 0, "Service unavailable; DNS list %s did not answer for [%s], try again later")
)

// replies are the replies the guard writes that do not depend on the
// client, built once per Guard (the host name does not change), so that
// turning a flood away allocates nothing for them.
type replies struct {
	banner []byte                     // the pregreet test's first banner line: half a reply (a "220-" line), not a reply value
	reply  [len(reasons)]*reply.Reply // by reason index; nil for none
	bytes  [len(reasons)][]byte       // the same on the wire
}

func newReplies(host string) *replies {
	r := &replies{banner: []byte("220-" + host + " ESMTP\r\n")}
	for i, reason := range reasons {
		var rp *reply.Reply
		switch reason {
		case ReasonMaxConnections, ReasonListenerFull:
			rp = replyMaxConns
		case ReasonPerIPRate, ReasonPerIPConcurrency, ReasonPerPrefixRate, ReasonPerPrefixConcurrency:
			rp = replyClientConns
		case ReasonPregreet, ReasonHTTP, ReasonProxyUntrusted:
			rp = replyProtocol
		case ReasonTooManyErrors:
			rp = replyManyErrors
		case ReasonCommandLoop:
			rp = replyCommandLoop
		}
		// deny_list, dnsbl and dnsbl_error name the client (replyFor,
		// DNSBLDecision);
		// tls_on_plain and proxy_bad_header get nothing the peer could
		// read.
		if rp != nil {
			r.reply[i] = rp.WithHost(host)
			r.bytes[i] = r.reply[i].AppendWire(nil)
		}
	}
	return r
}

// bytesOf returns rp on the wire: the prebuilt copy when rp is the fixed
// reply of reason i.
func (r *replies) bytesOf(i int, rp *reply.Reply) []byte {
	if i >= 0 && rp == r.reply[i] {
		return r.bytes[i]
	}
	return rp.AppendWire(nil)
}

// logLimiter lets through at most rate log lines a second for each
// rejection reason (fixed one-second windows) and counts the others; a
// line let through reports how many of its reason were held back since
// the previous one. rate ≤ 0: no limit.
type logLimiter struct {
	mu  sync.Mutex
	win [len(reasons)]logWindow
}

type logWindow struct {
	start   time.Time
	n       int // lines let through in the window
	skipped int // lines held back since the last one let through
}

// allow reports whether a line of reason i (an index into reasons; -1 is
// always let through) may be logged at now, at most rate a second (0: no
// limit), and how many were skipped before it.
func (l *logLimiter) allow(i int, now time.Time, rate int) (ok bool, skipped int) {
	if rate <= 0 || i < 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	w := &l.win[i]
	if d := now.Sub(w.start); d >= time.Second || d < 0 {
		w.start, w.n = now, 0
	}
	if w.n >= rate {
		w.skipped++
		return false, 0
	}
	w.n++
	skipped, w.skipped = w.skipped, 0
	return true, skipped
}
