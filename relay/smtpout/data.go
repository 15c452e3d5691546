package smtpout

import (
	"bufio"

	"moat/internal/dataend"
)

// dataWriter writes message data as SMTP sends it (RFC 5321 §4.5.2): a
// line that starts with "." gets one more, a LF without CR before it
// becomes CRLF, and Close ends the data with CRLF "." CRLF. It follows
// net/textproto's DotWriter byte for byte (a test compares them) but
// copies whole runs between line ends instead of one byte at a time.
type dataWriter struct {
	w     *bufio.Writer
	state int
	err   error
}

const (
	dwBegin     = iota // nothing written yet
	dwBeginLine        // at the start of a line
	dwCR               // after a CR
	dwData             // within a line
)

func (d *dataWriter) Write(b []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	for n := 0; n < len(b); {
		switch d.state {
		case dwBegin, dwBeginLine:
			if b[n] == '.' {
				d.writeByte('.')
			}
			d.state = dwData
		case dwCR:
			// After a CR the next byte is written as it is.
			d.state = dwData
			if b[n] == '\n' {
				d.state = dwBeginLine
			}
			d.writeByte(b[n])
			n++
			continue
		}
		i := dataend.IndexLineEnd(b[n:])
		if i < 0 {
			d.write(b[n:])
			break
		}
		d.write(b[n : n+i])
		n += i
		if b[n] == '\r' {
			d.writeByte('\r')
			d.state = dwCR
		} else {
			d.write(crlf)
			d.state = dwBeginLine
		}
		n++
	}
	if d.err != nil {
		return 0, d.err
	}
	return len(b), nil
}

// Close ends the data (see end) and flushes.
func (d *dataWriter) Close() error {
	if err := d.end(); err != nil {
		return err
	}
	return d.w.Flush()
}

// end ends the data: the line in progress with CRLF, then "." CRLF,
// buffered (more commands may follow in the same write).
func (d *dataWriter) end() error {
	switch d.state {
	case dwBegin, dwData:
		d.write(crlf)
	case dwCR:
		d.writeByte('\n')
	}
	d.write(dotCRLF)
	return d.err
}

var (
	crlf    = []byte("\r\n")
	dotCRLF = []byte(".\r\n")
)

func (d *dataWriter) write(p []byte) {
	if d.err == nil {
		_, d.err = d.w.Write(p)
	}
}

func (d *dataWriter) writeByte(c byte) {
	if d.err == nil {
		d.err = d.w.WriteByte(c)
	}
}
