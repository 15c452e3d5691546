package gateway

import (
	"errors"
	"io"

	"moat/internal/dataend"
)

// errBareEOL is returned by eolReader when the message holds a bare CR or
// a bare LF and the policy is to reject.
var errBareEOL = errors.New("bare CR or LF in message data")

// eolReader checks the line endings of message data as smtpd hands it
// over (dot-unstuffed, CR and LF as they came). RFC 5321 §2.3.8: CR and LF may only
// appear together as CRLF. With normalize set, a bare LF or bare CR
// becomes CRLF; otherwise the first one makes Read fail with errBareEOL
// once the rest of the data has been drained by smtpd.
type eolReader struct {
	r         io.Reader
	normalize bool
	pendingCR bool   // the previous byte was CR and its LF has not been seen
	out       []byte // normalize: fixed bytes not yet returned
	buf       []byte // normalize: what is read, before fixing
	err       error
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
			}
			e.err = err
		}
	}
	n := copy(p, e.out)
	e.out = e.out[n:]
	return n, nil
}

// wholeEOL applies the same policy to a message already whole in memory
// (BDAT): it is checked in place and copied only to be normalized.
func wholeEOL(b []byte, normalize bool) ([]byte, error) {
	var e eolReader
	if e.check(b) && !e.pendingCR {
		return b, nil
	}
	if !normalize {
		return nil, errBareEOL
	}
	e = eolReader{out: make([]byte, 0, len(b)+len(b)/32+2)}
	e.fix(b)
	if e.pendingCR {
		e.out = append(e.out, '\n')
	}
	return e.out, nil
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

// fix appends b to e.out with every bare CR and bare LF made CRLF.
func (e *eolReader) fix(b []byte) {
	out := e.out[:0]
	for _, c := range b {
		switch {
		case e.pendingCR && c == '\n':
			out = append(out, '\n')
			e.pendingCR = false
			continue
		case e.pendingCR:
			out = append(out, '\n') // bare CR becomes CRLF
			e.pendingCR = false
		}
		switch c {
		case '\r':
			out = append(out, '\r')
			e.pendingCR = true
		case '\n':
			out = append(out, '\r', '\n') // bare LF becomes CRLF
		default:
			out = append(out, c)
		}
	}
	e.out = out
}
