package dnstest

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
)

// Unsupported is a resolver (it has the methods of dnsres.Resolver) whose
// every lookup fails with errors.ErrUnsupported. A test double embeds it
// and defines only the lookups it fakes.
type Unsupported struct{}

// LookupTXT fails.
func (Unsupported) LookupTXT(context.Context, string) ([]string, error) {
	return nil, errors.ErrUnsupported
}

// LookupMX fails.
func (Unsupported) LookupMX(context.Context, string) ([]*net.MX, error) {
	return nil, errors.ErrUnsupported
}

// LookupIPAddr fails.
func (Unsupported) LookupIPAddr(context.Context, string) ([]net.IPAddr, error) {
	return nil, errors.ErrUnsupported
}

// LookupIP fails.
func (Unsupported) LookupIP(context.Context, string, string) ([]net.IP, error) {
	return nil, errors.ErrUnsupported
}

// LookupAddr fails.
func (Unsupported) LookupAddr(context.Context, string) ([]string, error) {
	return nil, errors.ErrUnsupported
}

// LookupCNAME fails.
func (Unsupported) LookupCNAME(context.Context, string) (string, error) {
	return "", errors.ErrUnsupported
}

// AddrMap is a resolver double, with no wire, whose LookupIP answers from
// A: a name in Fail fails with a temporary error (as SERVFAIL would), a
// name in Slow waits for the context and then times out, any other name
// not in A is not found (NXDOMAIN). Names are as the code under test asks
// them. Its other lookups are Unsupported. Fill the maps before use; it is
// safe for concurrent lookups.
type AddrMap struct {
	Unsupported
	A    map[string][]string
	Fail map[string]bool
	Slow map[string]bool

	queries atomic.Int64
}

// LookupIP answers host from the maps (network is ignored).
func (m *AddrMap) LookupIP(ctx context.Context, network, host string) ([]net.IP, error) {
	m.queries.Add(1)
	switch {
	case m.Slow[host]:
		<-ctx.Done()
		return nil, &net.DNSError{Err: "timeout", Name: host, IsTimeout: true, IsTemporary: true}
	case m.Fail[host]:
		return nil, &net.DNSError{Err: "server misbehaving", Name: host, IsTemporary: true}
	}
	ans, ok := m.A[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	out := make([]net.IP, 0, len(ans))
	for _, s := range ans {
		out = append(out, net.ParseIP(s))
	}
	return out, nil
}

// Queries is how many LookupIP calls the double has had.
func (m *AddrMap) Queries() int { return int(m.queries.Load()) }
