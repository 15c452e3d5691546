package gateway

import (
	"errors"
	"io"
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
	out       []byte // normalized bytes not yet returned
	buf       []byte
	err       error
}

func newEOLReader(r io.Reader, normalize bool) *eolReader {
	return &eolReader{r: r, normalize: normalize, buf: make([]byte, 32*1024)}
}

func (e *eolReader) Read(p []byte) (int, error) {
	for len(e.out) == 0 {
		if e.err != nil {
			return 0, e.err
		}
		n, err := e.r.Read(e.buf)
		if n > 0 {
			if perr := e.scan(e.buf[:n]); perr != nil {
				e.err = perr
				return 0, perr
			}
		}
		if err != nil {
			if err == io.EOF && e.pendingCR {
				// A CR as the very last byte cannot happen with a
				// well-formed end of data, but be strict.
				if !e.normalize {
					e.err = errBareEOL
					return 0, e.err
				}
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

// scan appends b to e.out, checking or fixing line endings.
func (e *eolReader) scan(b []byte) error {
	if !e.normalize {
		for _, c := range b {
			switch {
			case e.pendingCR && c != '\n':
				return errBareEOL
			case c == '\n' && !e.pendingCR:
				return errBareEOL
			}
			e.pendingCR = c == '\r'
		}
		e.out = append(e.out[:0], b...)
		return nil
	}
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
	return nil
}
