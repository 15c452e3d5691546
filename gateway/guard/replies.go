package guard

import (
	"sync"
	"time"
)

// replies are the lines the guard writes that do not depend on the
// client, built once per Guard (the host name does not change), so that
// turning a flood away allocates nothing for them.
type replies struct {
	banner []byte               // the pregreet test's first banner line
	text   [len(reasons)]string // by reason index; "" for none
	bytes  [len(reasons)][]byte // the same as bytes
}

func newReplies(host string) *replies {
	r := &replies{banner: []byte("220-" + host + " ESMTP\r\n")}
	for i, reason := range reasons {
		var t string
		switch reason {
		case ReasonMaxConnections:
			// RFC 5321 §3.8: 421 and close when the service is not available.
			t = "421 4.7.0 " + host + " Too many connections, try again later\r\n"
		case ReasonPerIPRate, ReasonPerIPConcurrency, ReasonPerPrefixRate, ReasonPerPrefixConcurrency:
			t = "421 4.7.0 " + host + " Too many connections from your address, try again later\r\n"
		case ReasonPregreet, ReasonHTTP, ReasonProxyUntrusted:
			// RFC 7504 §3: 521, and the server closes at once.
			t = "521 5.5.1 " + host + " Protocol error\r\n"
		case ReasonTooManyErrors:
			t = "421 4.7.0 " + host + " Too many errors, closing connection\r\n"
		case ReasonCommandLoop:
			t = "421 4.7.0 " + host + " Too many commands, closing connection\r\n"
		}
		// deny_list and dnsbl name the client (replyFor, dnsblReply);
		// tls_on_plain and proxy_bad_header get nothing the peer could
		// read.
		r.text[i], r.bytes[i] = t, []byte(t)
	}
	return r
}

// bytesOf returns reply as bytes: the prebuilt copy when reply is the
// fixed line of reason i.
func (r *replies) bytesOf(i int, reply string) []byte {
	if i >= 0 && reply == r.text[i] {
		return r.bytes[i]
	}
	return []byte(reply)
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
