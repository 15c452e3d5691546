package mx

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"testing"

	"moat/internal/dnsres"
	"moat/internal/reply"
	"moat/relay/transport"
)

// fakeResolver answers from maps; a name in fail fails with that kind.
type fakeResolver struct {
	mx    map[string][]*net.MX
	addrs map[string][]string
	fail  map[string]dnsres.Kind // "MX name" or "A name"
	calls int
}

func dnsErr(name, typ string, k dnsres.Kind) error {
	return (&dnsres.Error{Name: name + ".", Type: typ, Kind: k}).NetError()
}

func (f *fakeResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	f.calls++
	if k, ok := f.fail["MX "+name]; ok {
		return nil, dnsErr(name, "MX", k)
	}
	if r, ok := f.mx[name]; ok {
		return r, nil
	}
	if _, ok := f.addrs[name]; ok {
		return nil, dnsErr(name, "MX", dnsres.NoData)
	}
	return nil, dnsErr(name, "MX", dnsres.NXDomain)
}

func (f *fakeResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	f.calls++
	if k, ok := f.fail["A "+host]; ok {
		return nil, dnsErr(host, "A", k)
	}
	as, ok := f.addrs[host]
	if !ok {
		return nil, dnsErr(host, "A", dnsres.NXDomain)
	}
	var out []net.IPAddr
	for _, a := range as {
		out = append(out, net.IPAddr{IP: net.ParseIP(a)})
	}
	return out, nil
}

func (f *fakeResolver) LookupTXT(context.Context, string) ([]string, error) { return nil, nil }
func (f *fakeResolver) LookupIP(context.Context, string, string) ([]net.IP, error) {
	return nil, nil
}
func (f *fakeResolver) LookupAddr(context.Context, string) ([]string, error) { return nil, nil }
func (f *fakeResolver) LookupCNAME(_ context.Context, h string) (string, error) {
	return h, nil
}

var _ dnsres.Resolver = (*fakeResolver)(nil)

func mxs(pairs ...any) []*net.MX {
	var out []*net.MX
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, &net.MX{Pref: uint16(pairs[i].(int)), Host: pairs[i+1].(string)})
	}
	return out
}

func names(hs []Host) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return out
}

// reverse is a deterministic "shuffle" that reverses each group.
func reverse(n int, swap func(i, j int)) {
	for i, j := 0, n-1; i < j; i, j = i+1, j-1 {
		swap(i, j)
	}
}

func noShuffle(int, func(i, j int)) {}

func TestLookup(t *testing.T) {
	base := func() *fakeResolver {
		return &fakeResolver{
			mx: map[string][]*net.MX{
				"example.org":        mxs(20, "mx2.example.org.", 10, "MX1.example.org.", 20, "mx3.example.org."),
				"null.example":       mxs(0, "."),
				"mixed.example":      mxs(0, ".", 10, "mx1.example.org."),
				"self.example":       mxs(10, "mx1.example.org.", 20, "me.example.net.", 30, "mx2.example.org."),
				"selfbest.example":   mxs(10, "me.example.net.", 20, "mx1.example.org."),
				"selfip.example":     mxs(10, "mx1.example.org.", 20, "lo.example.org."),
				"selfiponly.example": mxs(10, "lo.example.org."),
				"eqself.example":     mxs(10, "mx1.example.org.", 10, "me.example.net."),
				"noaddr.example":     mxs(10, "gone.example.org."),
				"tempaddr.example":   mxs(10, "flaky.example.org.", 20, "gone.example.org."),
				"halfaddr.example":   mxs(10, "flaky.example.org.", 20, "mx1.example.org."),
			},
			addrs: map[string][]string{
				"mx1.example.org":  {"192.0.2.1", "2001:db8::1", "192.0.2.1"},
				"mx2.example.org":  {"192.0.2.2"},
				"mx3.example.org":  {"192.0.2.3"},
				"lo.example.org":   {"127.0.0.1"},
				"implicit.example": {"192.0.2.9"},
				"me.example.net":   {"198.51.100.1"},
			},
			fail: map[string]dnsres.Kind{
				"MX servfail.example":      dnsres.ServFail,
				"MX timeout.example":       dnsres.Timeout,
				"A flaky.example.org":      dnsres.ServFail,
				"MX implicit-temp.example": dnsres.NoData,
				"A implicit-temp.example":  dnsres.Timeout,
			},
		}
	}
	self := Self{Hostnames: []string{"ME.example.net."}}
	tests := []struct {
		domain  string
		shuffle func(int, func(i, j int))
		want    []string
		code    int
		enh     reply.Enhanced
	}{
		{domain: "example.org", shuffle: noShuffle, want: []string{"mx1.example.org", "mx2.example.org", "mx3.example.org"}},
		{domain: "Example.ORG.", shuffle: reverse, want: []string{"mx1.example.org", "mx3.example.org", "mx2.example.org"}},
		{domain: "null.example", code: 556, enh: reply.Enhanced{5, 1, 10}},
		{domain: "mixed.example", want: []string{"mx1.example.org"}},
		{domain: "implicit.example", want: []string{"implicit.example"}},
		{domain: "nxdomain.example", code: 550, enh: reply.Enhanced{5, 1, 2}},
		{domain: "servfail.example", code: 451, enh: reply.Enhanced{4, 4, 3}},
		{domain: "timeout.example", code: 451, enh: reply.Enhanced{4, 4, 3}},
		{domain: "implicit-temp.example", code: 451, enh: reply.Enhanced{4, 4, 3}},
		{domain: "self.example", want: []string{"mx1.example.org"}},
		{domain: "selfbest.example", code: 554, enh: reply.Enhanced{5, 4, 6}},
		{domain: "selfip.example", want: []string{"mx1.example.org"}},
		{domain: "selfiponly.example", code: 554, enh: reply.Enhanced{5, 4, 6}},
		{domain: "eqself.example", shuffle: noShuffle, code: 554, enh: reply.Enhanced{5, 4, 6}},
		{domain: "eqself.example", shuffle: reverse, code: 554, enh: reply.Enhanced{5, 4, 6}},
		{domain: "noaddr.example", code: 554, enh: reply.Enhanced{5, 4, 4}},
		{domain: "tempaddr.example", code: 451, enh: reply.Enhanced{4, 4, 3}},
		{domain: "halfaddr.example", want: []string{"mx1.example.org"}},
		{domain: "", code: 550},
	}
	for _, tt := range tests {
		o := Options{Shuffle: tt.shuffle}
		if o.Shuffle == nil {
			o.Shuffle = noShuffle
		}
		hs, err := o.Lookup(context.Background(), base(), tt.domain, self)
		if tt.code != 0 {
			var r *reply.Reply
			if !errors.As(err, &r) || r.Code != tt.code || (tt.enh != reply.Enhanced{} && r.Enhanced != tt.enh) {
				t.Errorf("%s: got %v, %v; want %d %s", tt.domain, names(hs), err, tt.code, tt.enh)
				continue
			}
			if err := r.Validate(); err != nil {
				t.Errorf("%s: invalid reply: %v", tt.domain, err)
			}
			if transport.IsPermanent(err) != (tt.code >= 500) {
				t.Errorf("%s: IsPermanent wrong for %v", tt.domain, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(names(hs), tt.want) {
			t.Errorf("%s: got %v, %v; want %v", tt.domain, names(hs), err, tt.want)
		}
	}
}

func TestLookupAddrs(t *testing.T) {
	r := &fakeResolver{
		mx:    map[string][]*net.MX{"example.org": mxs(10, "mx1.example.org.")},
		addrs: map[string][]string{"mx1.example.org": {"192.0.2.1", "::ffff:192.0.2.2", "192.0.2.1", "192.0.2.3", "192.0.2.4"}},
	}
	hs, err := Options{MaxAddrs: 3}.Lookup(context.Background(), r, "example.org", Self{})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")}
	if !reflect.DeepEqual(hs[0].Addrs, want) || hs[0].Pref != 10 {
		t.Errorf("got %+v", hs)
	}
	// Loopback is ours unless allowed.
	r.addrs["mx1.example.org"] = []string{"127.0.0.1"}
	if _, err := Lookup(context.Background(), r, "example.org", Self{}); !transport.IsPermanent(err) {
		t.Errorf("loopback MX: %v", err)
	}
	hs, err = Lookup(context.Background(), r, "example.org", Self{AllowLoopback: true})
	if err != nil || len(hs) != 1 {
		t.Errorf("loopback allowed: %v %v", hs, err)
	}
	if _, err := Lookup(context.Background(), r, "example.org", Self{AllowLoopback: true, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}); !transport.IsPermanent(err) {
		t.Errorf("own address: %v", err)
	}
}

func TestLookupBounded(t *testing.T) {
	r := &fakeResolver{mx: map[string][]*net.MX{}, addrs: map[string][]string{}}
	var recs []*net.MX
	for i := 0; i < 500; i++ {
		recs = append(recs, &net.MX{Pref: uint16(i), Host: "gone.example."})
	}
	r.mx["many.example"] = recs
	_, err := Options{MaxHosts: 5}.Lookup(context.Background(), r, "many.example", Self{})
	if !transport.IsPermanent(err) {
		t.Errorf("err %v", err)
	}
	if r.calls != 1+5 {
		t.Errorf("%d lookups, want 6", r.calls)
	}
}

func TestShuffleRandom(t *testing.T) {
	// With the default shuffle both orders of two equal exchangers occur.
	r := &fakeResolver{
		mx:    map[string][]*net.MX{"example.org": mxs(10, "a.example.", 10, "b.example.")},
		addrs: map[string][]string{"a.example": {"192.0.2.1"}, "b.example": {"192.0.2.2"}},
	}
	seen := map[string]bool{}
	for i := 0; i < 200 && len(seen) < 2; i++ {
		hs, err := Lookup(context.Background(), r, "example.org", Self{})
		if err != nil {
			t.Fatal(err)
		}
		seen[hs[0].Name] = true
	}
	if len(seen) != 2 {
		t.Errorf("equal preferences never reordered: %v", seen)
	}
}
