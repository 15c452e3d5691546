// Package scannet is the network plumbing the scanner protocol clients
// (rspamd, spamd, clamd, milter) share: the address forms of
// scanners[].address, dialing under a context, deadlines on every read and
// write, bounded reads of answers, clean symbol lists, and the mapping of
// network failures to scanner.ErrorKind. It knows no protocol.
package scannet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"moat/policy/scanner"
)

// DefaultTimeout bounds a call whose context has no deadline and whose
// scanner has no timeout configured: no call to a scanner is unbounded.
const DefaultTimeout = 30 * time.Second

// MaxSymbolLen bounds one symbol, test or virus name; longer names are
// dropped (no scanner gives such names; a scanner that does is broken).
const MaxSymbolLen = 128

// ErrTooLarge is an answer larger than the client's bound for it.
var ErrTooLarge = errors.New("answer larger than the limit")

// Address is a parsed scanners[].address: network "tcp" or "unix".
type Address struct {
	Network string
	Addr    string
}

func (a Address) String() string {
	if a.Network == "unix" {
		return "unix:" + a.Addr
	}
	return a.Addr
}

// ParseAddress reads "host:port" or "unix:/path".
func ParseAddress(s string) (Address, error) {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if path == "" || !strings.HasPrefix(path, "/") && !strings.HasPrefix(path, ".") {
			return Address{}, fmt.Errorf("address %q: unix: needs a socket path", s)
		}
		return Address{Network: "unix", Addr: path}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return Address{}, fmt.Errorf("address %q: want host:port or unix:/path: %v", s, err)
	}
	if host == "" {
		return Address{}, fmt.Errorf("address %q: empty host", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return Address{}, fmt.Errorf("address %q: port must be 1 to 65535", s)
	}
	return Address{Network: "tcp", Addr: s}, nil
}

// WithTimeout bounds one call to a scanner: it ends at ctx's deadline or
// after timeout (the scanner's configured timeout), whichever comes
// first; with neither, after DefaultTimeout.
func WithTimeout(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout <= 0 {
		if _, ok := ctx.Deadline(); ok {
			return context.WithCancel(ctx)
		}
		timeout = DefaultTimeout
	}
	return context.WithTimeout(ctx, timeout)
}

// Conn is a connection whose deadline is ctx's and which is interrupted
// when ctx is cancelled.
type Conn struct {
	net.Conn
	stop func() bool
}

// Close releases the context watch and closes the connection.
func (c *Conn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// CloseWrite half-closes the connection when the transport can (TCP, unix
// sockets): the scanner sees the end of the request.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Dial connects to a under ctx: the connect honours ctx, and every later
// read and write has ctx's deadline; cancelling ctx interrupts them.
func Dial(ctx context.Context, a Address) (*Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, a.Network, a.Addr)
	if err != nil {
		return nil, err
	}
	return Watch(ctx, c), nil
}

// Watch puts an established connection under ctx (see Dial).
func Watch(ctx context.Context, c net.Conn) *Conn {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	return &Conn{Conn: c, stop: stop}
}

// Fail builds the *scanner.Error of scanner name.
func Fail(name string, kind scanner.ErrorKind, err error) *scanner.Error {
	return &scanner.Error{Scanner: name, Kind: kind, Err: err}
}

// ProtocolError is an answer that does not parse.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return e.Msg }

// Protocolf builds a *ProtocolError.
func Protocolf(format string, args ...any) error {
	return &ProtocolError{Msg: fmt.Sprintf(format, args...)}
}

// Classify turns the failure of an exchange with a scanner into its
// *scanner.Error: an *scanner.Error is kept; a deadline (ctx's or the
// connection's) is KindTimeout; a context cancelled by the caller KindIO
// (wrapping context.Canceled); an answer that does not parse or is too
// large is KindProtocol; anything else (reset, closed mid-answer) KindIO.
func Classify(ctx context.Context, name string, err error) *scanner.Error {
	var se *scanner.Error
	if errors.As(err, &se) {
		if se.Scanner == "" {
			return Fail(name, se.Kind, se.Err)
		}
		return se
	}
	var pe *ProtocolError
	switch {
	case errors.As(err, &pe) || errors.Is(err, ErrTooLarge):
		return Fail(name, scanner.KindProtocol, err)
	case errors.Is(ctx.Err(), context.Canceled):
		// Our caller gave up (the session ended): not the scanner's
		// timeout.
		return Fail(name, scanner.KindIO, fmt.Errorf("%w: %v", context.Canceled, err))
	case IsTimeout(err) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return Fail(name, scanner.KindTimeout, err)
	}
	return Fail(name, scanner.KindIO, err)
}

// IsTimeout reports a deadline that passed.
func IsTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// IsReset reports a connection the peer reset or closed while we wrote.
func IsReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// ReadLine reads one line ended by delim (the delimiter and a CR before it
// removed), at most max bytes: a longer line is ErrTooLarge, and the end
// of the stream before delim is io.ErrUnexpectedEOF (io.EOF when nothing
// at all was read).
func ReadLine(br *bufio.Reader, delim byte, max int) (string, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice(delim)
		if len(line)+len(frag) > max+1 { // +1: the delimiter
			return "", ErrTooLarge
		}
		line = append(line, frag...)
		switch {
		case err == nil:
			line = line[:len(line)-1]
			if delim == '\n' && len(line) > 0 && line[len(line)-1] == '\r' {
				line = line[:len(line)-1]
			}
			return string(line), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(line) == 0 {
				return "", io.EOF
			}
			return "", io.ErrUnexpectedEOF
		default:
			return "", err
		}
	}
}

// ReadAll reads r to its end, at most max bytes (ErrTooLarge beyond).
func ReadAll(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, ErrTooLarge
	}
	return b, nil
}

// CleanName reports whether s is acceptable as a symbol, test or virus
// name: 1 to MaxSymbolLen printable ASCII octets without spaces.
func CleanName(s string) bool {
	if s == "" || len(s) > MaxSymbolLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// Symbols returns the clean names of names, sorted, without duplicates,
// at most scanner.MaxSymbols (the first ones in sort order); nil when
// none. Callers bound names by bounding the answer it comes from.
func Symbols(names []string) []string {
	out := make([]string, 0, min(len(names), scanner.MaxSymbols))
	for _, n := range names {
		if CleanName(n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > scanner.MaxSymbols {
		out = out[:scanner.MaxSymbols]
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Printable returns s with control and non-ASCII octets replaced by '?',
// cut to max octets: scanner text safe for an error message or a log.
func Printable(s string, max int) string {
	if len(s) > max {
		s = s[:max]
	}
	b := []byte(s)
	for i, c := range b {
		if c < ' ' || c >= 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}

// HeaderSafe reports whether s can go into a protocol header line: no CR,
// LF or NUL.
func HeaderSafe(s string) bool { return !strings.ContainsAny(s, "\r\n\x00") }

// Check is what every client's New checks: a name, an address ("host:port"
// or "unix:/path") and a timeout that is not negative. kind names the
// protocol in the errors.
func Check(kind, name, address string, timeout time.Duration) (Address, error) {
	if name == "" {
		return Address{}, fmt.Errorf("%s: scanner needs a name", kind)
	}
	if timeout < 0 {
		return Address{}, fmt.Errorf("%s scanner %s: negative timeout", kind, name)
	}
	a, err := ParseAddress(address)
	if err != nil {
		return Address{}, fmt.Errorf("%s scanner %s: %w", kind, name, err)
	}
	return a, nil
}
