package dnsres

import (
	"errors"
	"net"
)

// Kind classifies a failed lookup.
type Kind int

const (
	// Other is a permanent failure that is none of the below: an invalid
	// name, a CNAME loop, FORMERR/NOTIMP from every server, a bad address.
	Other Kind = iota
	// NXDomain: the name does not exist (RCODE 3, RFC 1035 §4.1.1,
	// RFC 2308 §2.1).
	NXDomain
	// NoData: the name exists but has no records of the type (RFC 2308
	// §2.2).
	NoData
	// ServFail: the server failed (RCODE 2). Temporary.
	ServFail
	// Timeout: no answer in time, or the context ended. Temporary.
	Timeout
	// Refused: the server refused (RCODE 5). Temporary.
	Refused
	// Network: the query could not be sent or the answer read (connection
	// refused, unreachable, malformed answer). Temporary.
	Network
)

var kindNames = [...]string{
	Other: "error", NXDomain: "nxdomain", NoData: "no data", ServFail: "servfail",
	Timeout: "timeout", Refused: "refused", Network: "network error",
}

// String names the kind.
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Temporary reports whether a lookup failing this way may succeed later.
// RFC 7208 §5 / §2.6.6 and RFC 7489 §6.6.3 turn these into temperror.
func (k Kind) Temporary() bool {
	return k == ServFail || k == Timeout || k == Refused || k == Network
}

// Error is a failed lookup. Client methods return it wrapped in a
// *net.DNSError (see the package doc); get it with errors.As.
type Error struct {
	Name string // the name asked, fully qualified
	Type string // the query type, e.g. "TXT"
	Kind Kind
	Err  error // the underlying cause, if any (e.g. context.DeadlineExceeded)
}

func (e *Error) Error() string {
	s := "dns: " + e.Type + " " + e.Name + ": " + e.Kind.String()
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Timeout implements net.Error.
func (e *Error) Timeout() bool { return e.Kind == Timeout }

// Temporary implements net.Error.
func (e *Error) Temporary() bool { return e.Kind.Temporary() }

// NetError converts e to the *net.DNSError a net.Resolver would return:
// IsNotFound for NXDOMAIN and no data, IsTimeout for timeouts,
// IsTemporary for every temporary kind. Its UnwrapErr is e.
func (e *Error) NetError() *net.DNSError {
	return &net.DNSError{
		UnwrapErr:   e,
		Err:         e.netText(),
		Name:        e.Name,
		IsNotFound:  e.Kind == NXDomain || e.Kind == NoData,
		IsTimeout:   e.Kind == Timeout,
		IsTemporary: e.Kind.Temporary(),
	}
}

// netText is the DNSError.Err text, close to what net.Resolver says.
func (e *Error) netText() string {
	switch e.Kind {
	case NXDomain:
		return "no such host"
	case NoData:
		return "no such host (no " + e.Type + " records)"
	case Timeout:
		return "i/o timeout"
	case ServFail:
		return "server misbehaving (SERVFAIL)"
	case Refused:
		return "server misbehaving (REFUSED)"
	}
	if e.Err != nil {
		return e.Err.Error()
	}
	return e.Kind.String()
}

// As lets errors.As(err, &dnsErr) with dnsErr a *net.DNSError succeed on a
// bare *Error.
func (e *Error) As(target any) bool {
	if p, ok := target.(**net.DNSError); ok {
		*p = e.NetError()
		return true
	}
	return false
}

// wrap is how every Client method returns an error.
func (e *Error) wrap() error { return e.NetError() }

func kindOf(err error) (Kind, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind, true
	}
	return 0, false
}

// IsNotFound reports whether err says the name does not exist or has no
// records of the type asked (NXDOMAIN or no data).
func IsNotFound(err error) bool {
	k, ok := kindOf(err)
	if ok {
		return k == NXDomain || k == NoData
	}
	var ne *net.DNSError
	return errors.As(err, &ne) && ne.IsNotFound
}

// IsNXDomain reports whether err says the name does not exist.
func IsNXDomain(err error) bool {
	k, ok := kindOf(err)
	return ok && k == NXDomain
}

// IsNoData reports whether err says the name exists without records of
// the type asked.
func IsNoData(err error) bool {
	k, ok := kindOf(err)
	return ok && k == NoData
}

// IsTemporary reports whether err is a failure that may go away: SERVFAIL,
// timeout, REFUSED, a network error (also a *net.DNSError or net.Error
// saying so from elsewhere).
func IsTemporary(err error) bool {
	if err == nil {
		return false
	}
	k, ok := kindOf(err)
	if ok {
		return k.Temporary()
	}
	var ne net.Error
	return errors.As(err, &ne) && (ne.Timeout() || ne.Temporary())
}
