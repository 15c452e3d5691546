package gateway

import (
	"bytes"
	"errors"
	"io"

	"moat/internal/dataend"
	"moat/internal/reply"
)

// errBareEOL is returned by eolReader when the message holds a bare CR or
// a bare LF and the policy is to reject.
var errBareEOL = errors.New("bare CR or LF in message data")

// errNUL is returned by eolReader when the message holds a NUL octet and
// the policy is to reject.
var errNUL = errors.New("NUL octet in message data")

// replyNUL refuses a message with a NUL octet. RFC 5321 §4.5.2 and RFC
// 6152 §3 carry 7bit and 8bitMIME data only, and neither may hold NUL
// (RFC 2045 §2.7, §2.8); BINARYMIME (RFC 3030 §3) is not offered. Same
// basic code as the bare line end refusal (reply.BareLineEnding); X.6.0:
// the content, not the command syntax, is at fault (RFC 3463 §3.7).
var replyNUL = reply.New(550, 6, 0, "NUL octet in message data is not allowed (RFC 2045 §2.8)")

// eolReader checks the line endings of message data as smtpd hands it
// over (dot-unstuffed, CR and LF as they came). RFC 5321 §2.3.8: CR and LF may only
// appear together as CRLF. With normalize set, a bare LF or bare CR
// becomes CRLF; otherwise the first one makes Read fail with errBareEOL
// once the rest of the data has been drained by smtpd.
//
// NUL octets follow the same policy (issue 27 item 6): a next hop may
// end a line or a string at one, so they are refused (errNUL) or, with
// normalize, removed. What normalize changed is counted in fixes.
type eolReader struct {
	r         io.Reader
	normalize bool
	pendingCR bool   // the previous byte was CR and its LF has not been seen
	out       []byte // normalize: fixed bytes not yet returned
	buf       []byte // normalize: what is read, before fixing
	fixes     eolFixes
	err       error
}

// eolFixes counts what normalize changed in one message.
type eolFixes struct {
	bare int // bare CR or bare LF made CRLF
	nuls int // NUL octets removed
}

func newEOLReader(r io.Reader, normalize bool) *eolReader {
	return &eolReader{r: r, normalize: normalize}
}

func (e *eolReader) Read(p []byte) (int, error) {
	if !e.normalize {
		// Checking needs no copy: read into p and look.
		if e.err != nil {
			return 0, e.err
		}
		n, err := e.r.Read(p)
		if !e.check(p[:n]) || err == io.EOF && e.pendingCR {
			// A CR as the very last byte cannot happen with a
			// well-formed end of data, but be strict.
			e.err = errBareEOL
			return 0, e.err
		}
		if bytes.IndexByte(p[:n], 0) >= 0 {
			e.err = errNUL
			return 0, e.err
		}
		if err != nil {
			e.err = err
		}
		return n, err
	}
	for len(e.out) == 0 {
		if e.err != nil {
			return 0, e.err
		}
		if e.buf == nil {
			e.buf = make([]byte, 4096)
		}
		n, err := e.r.Read(e.buf)
		e.fix(e.buf[:n])
		if err != nil {
			if err == io.EOF && e.pendingCR {
				e.out = append(e.out, '\n')
				e.pendingCR = false
				e.fixes.bare++
			}
			e.err = err
		}
	}
	n := copy(p, e.out)
	e.out = e.out[n:]
	return n, nil
}

// wholeEOL applies the same policy to a message already whole in memory
// (BDAT): it is checked in place and copied only to be normalized; fx
// counts what normalize changed.
func wholeEOL(b []byte, normalize bool) (out []byte, fx eolFixes, err error) {
	var e eolReader
	eolOK := e.check(b) && !e.pendingCR
	nulOK := bytes.IndexByte(b, 0) < 0
	switch {
	case eolOK && nulOK:
		return b, fx, nil
	case normalize:
	case !eolOK:
		return nil, fx, errBareEOL
	default:
		return nil, fx, errNUL
	}
	e = eolReader{out: make([]byte, 0, len(b)+len(b)/32+2)}
	e.fix(b)
	if e.pendingCR {
		e.out = append(e.out, '\n')
		e.fixes.bare++
	}
	return e.out, e.fixes, nil
}

// check reports whether every CR and LF of b (after what came before)
// is part of a CRLF.
func (e *eolReader) check(b []byte) bool {
	for len(b) > 0 {
		if e.pendingCR {
			if b[0] != '\n' {
				return false
			}
			e.pendingCR = false
			b = b[1:]
			continue
		}
		i := dataend.IndexLineEnd(b)
		if i < 0 {
			return true
		}
		if b[i] == '\n' {
			return false
		}
		e.pendingCR = true
		b = b[i+1:]
	}
	return true
}

// fix appends b to e.out with every bare CR and bare LF made CRLF and
// every NUL removed (and counted).
func (e *eolReader) fix(b []byte) {
	out := e.out[:0]
	for _, c := range b {
		if c == 0 {
			// Removed before the line end logic: "\r\x00\n" is CRLF.
			e.fixes.nuls++
			continue
		}
		switch {
		case e.pendingCR && c == '\n':
			out = append(out, '\n')
			e.pendingCR = false
			continue
		case e.pendingCR:
			out = append(out, '\n') // bare CR becomes CRLF
			e.fixes.bare++
			e.pendingCR = false
		}
		switch c {
		case '\r':
			out = append(out, '\r')
			e.pendingCR = true
		case '\n':
			out = append(out, '\r', '\n') // bare LF becomes CRLF
			e.fixes.bare++
		default:
			out = append(out, c)
		}
	}
	e.out = out
}
