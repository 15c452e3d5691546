package dnstest

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

func TestAddrMap(t *testing.T) {
	m := &AddrMap{
		A:    map[string][]string{"a.test.": {"192.0.2.1", "2001:db8::1"}},
		Fail: map[string]bool{"fail.test.": true},
		Slow: map[string]bool{"slow.test.": true},
	}
	ips, err := m.LookupIP(context.Background(), "ip", "a.test.")
	if err != nil || len(ips) != 2 || !ips[0].Equal(net.ParseIP("192.0.2.1")) {
		t.Fatalf("a.test: %v %v", ips, err)
	}
	var de *net.DNSError
	if _, err := m.LookupIP(context.Background(), "ip", "none.test."); !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("none.test: %v, want not found", err)
	}
	if _, err := m.LookupIP(context.Background(), "ip", "fail.test."); !errors.As(err, &de) || !de.Temporary() || de.IsNotFound {
		t.Errorf("fail.test: %v, want a temporary error", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if _, err := m.LookupIP(ctx, "ip", "slow.test."); !errors.As(err, &de) || !de.IsTimeout {
		t.Errorf("slow.test: %v, want a timeout", err)
	}
	if n := m.Queries(); n != 4 {
		t.Errorf("Queries = %d, want 4", n)
	}
	if _, err := m.LookupTXT(context.Background(), "a.test."); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("LookupTXT: %v, want unsupported", err)
	}
}
