package dnstest

import (
	"context"
	"errors"
	"net"
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
