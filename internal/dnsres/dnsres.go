// Package dnsres is moat's one DNS resolver: the interface every part
// (gateway, policy, relay) looks names up through, and its implementation
// over github.com/miekg/dns.
//
// The implementation is being written; this file is the contract.
package dnsres

import (
	"context"
	"net"
)

// Resolver looks up DNS records. Every method takes a context whose
// deadline bounds the whole lookup.
//
// Errors: a name that does not exist (NXDOMAIN) and a name that exists
// without records of the asked type (no data) are distinct from a
// temporary failure (SERVFAIL, timeout, refused, network error). Use
// IsNotFound, IsNoData, IsNXDomain and IsTemporary to tell them apart;
// every error also satisfies errors.As(err, **net.DNSError) with
// IsNotFound set for NXDOMAIN and no data, and IsTemporary/IsTimeout set
// for temporary failures, so libraries written against net.Resolver
// (blitiri.com.ar/go/spf) classify them correctly.
type Resolver interface {
	// LookupTXT returns each TXT record with its strings concatenated
	// (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
	LookupTXT(ctx context.Context, name string) ([]string, error)
	// LookupMX returns MX records sorted by preference.
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	// LookupIPAddr returns A and AAAA records.
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	// LookupIP returns A ("ip4"), AAAA ("ip6") or both ("ip").
	LookupIP(ctx context.Context, network, host string) ([]net.IP, error)
	// LookupAddr returns the PTR names of an address.
	LookupAddr(ctx context.Context, addr string) ([]string, error)
	// LookupCNAME returns the canonical name of host after following
	// CNAME records (bounded), or host itself.
	LookupCNAME(ctx context.Context, host string) (string, error)
}
