package main

import (
	"context"
	"github.com/spf13/cobra"
	"net"
	"slices"
	"strings"
	"testing"

	"moat/internal/dnsres"
)

const resolverZone = `$ORIGIN example.org.
$TTL 300
@               IN MX  20 mx2
@               IN MX  10 mx1
@               IN TXT "v=spf1 " "-all"
mx1             IN A   192.0.2.1
mx1             IN AAAA 2001:db8::1
mx2             IN A   192.0.2.2
alias           IN CNAME mx1
chain           IN CNAME alias
loop1           IN CNAME loop2
loop2           IN CNAME loop1
a.b.deep        IN TXT "deep"
*.wild          IN TXT "wildcard"
1.2.0.192.in-addr.arpa. IN PTR mx1.example.org.
`

func TestZoneResolver(t *testing.T) {
	z, err := loadZone(strings.NewReader(resolverZone), "zone")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kind := func(err error) string {
		switch {
		case err == nil:
			return "ok"
		case dnsres.IsNXDomain(err):
			return "nxdomain"
		case dnsres.IsNoData(err):
			return "nodata"
		case dnsres.IsTemporary(err):
			return "temporary"
		}
		return "other"
	}
	txt := []struct {
		name, want, kind string
	}{
		{"example.org", "v=spf1 -all", "ok"},
		{"EXAMPLE.ORG.", "v=spf1 -all", "ok"},
		{"mx1.example.org", "", "nodata"},
		{"nope.example.org", "", "nxdomain"},
		{"b.deep.example.org", "", "nodata"}, // empty non-terminal
		{"deep.example.org", "", "nodata"},
		{"x.b.deep.example.org", "", "nxdomain"},
		{"anything.wild.example.org", "wildcard", "ok"},
		{"a.b.wild.example.org", "wildcard", "ok"},
		{"wild.example.org", "", "nodata"},
		{"loop1.example.org", "", "other"},
		{"bad..name", "", "other"},
	}
	for _, tc := range txt {
		got, err := z.LookupTXT(ctx, tc.name)
		if kind(err) != tc.kind || (tc.want != "" && (len(got) != 1 || got[0] != tc.want)) {
			t.Errorf("TXT %s = %q, %v (%s); want %q %s", tc.name, got, err, kind(err), tc.want, tc.kind)
		}
		var ne *net.DNSError
		if err != nil && tc.kind != "other" && !(errorsAs(err, &ne) && ne.IsNotFound) {
			t.Errorf("TXT %s: %v is not a not-found *net.DNSError", tc.name, err)
		}
	}
	mx, err := z.LookupMX(ctx, "example.org")
	if err != nil || len(mx) != 2 || mx[0].Host != "mx1.example.org." || mx[0].Pref != 10 {
		t.Errorf("MX = %v, %v", mx, err)
	}
	ips, err := z.LookupIP(ctx, "ip", "chain.example.org")
	if err != nil || len(ips) != 2 || !ips[0].Equal(net.ParseIP("192.0.2.1")) || !ips[1].Equal(net.ParseIP("2001:db8::1")) {
		t.Errorf("IP via CNAME chain = %v, %v", ips, err)
	}
	if ips, err := z.LookupIP(ctx, "ip6", "mx2.example.org"); kind(err) != "nodata" {
		t.Errorf("AAAA of mx2 = %v, %v", ips, err)
	}
	if _, err := z.LookupIPAddr(ctx, "none.example.org"); kind(err) != "nxdomain" {
		t.Errorf("IPAddr of a missing name: %v", err)
	}
	names, err := z.LookupAddr(ctx, "192.0.2.1")
	if err != nil || !slices.Equal(names, []string{"mx1.example.org."}) {
		t.Errorf("PTR = %v, %v", names, err)
	}
	if _, err := z.LookupAddr(ctx, "192.0.2.9"); kind(err) != "nxdomain" {
		t.Errorf("PTR of unknown: %v", err)
	}
	if c, err := z.LookupCNAME(ctx, "chain.example.org"); err != nil || c != "mx1.example.org." {
		t.Errorf("CNAME = %q, %v", c, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := z.LookupTXT(cctx, "example.org"); kind(err) != "temporary" {
		t.Errorf("cancelled lookup: %v", err)
	}
}

func errorsAs(err error, target **net.DNSError) bool {
	ne, ok := err.(*net.DNSError)
	if ok {
		*target = ne
	}
	return ok
}

func TestLoadZoneErrors(t *testing.T) {
	for _, zone := range []string{
		"$INCLUDE /etc/passwd\n",
		"example.org. IN A 999.1.1.1\n",
		"example.org. IN BOGUS foo\n",
	} {
		if _, err := loadZone(strings.NewReader(zone), "z"); err == nil {
			t.Errorf("zone %q loaded", zone)
		}
	}
}

func FuzzLoadZone(f *testing.F) {
	f.Add(resolverZone)
	f.Add("*.x. TXT a\nx. CNAME x.\n")
	f.Fuzz(func(t *testing.T, zone string) {
		z, err := loadZone(strings.NewReader(zone), "z")
		if err != nil {
			return
		}
		ctx := context.Background()
		for name := range z.names {
			z.LookupTXT(ctx, name)
			z.LookupIP(ctx, "ip", "x."+name)
			z.LookupCNAME(ctx, name)
		}
	})
}

// TestHelpZoneExampleParses: the zone file shown in `moat rules test
// --help` loads as it is and answers what it says.
func TestHelpZoneExampleParses(t *testing.T) {
	var test *cobra.Command
	for _, c := range rulesCommand().Commands() {
		if c.Name() == "test" {
			test = c
		}
	}
	if test == nil {
		t.Fatal("no rules test command")
	}
	var zone []string
	for _, l := range strings.Split(test.Long, "\n") {
		if strings.HasPrefix(l, "  ") && strings.Contains(l, ". ") {
			zone = append(zone, strings.TrimSpace(l))
		}
	}
	if len(zone) < 3 {
		t.Fatalf("no zone example found in:\n%s", test.Long)
	}
	z, err := loadZone(strings.NewReader(strings.Join(zone, "\n")+"\n"), "help")
	if err != nil {
		t.Fatalf("the --help zone example does not parse: %v\n%s", err, strings.Join(zone, "\n"))
	}
	if txt, err := z.LookupTXT(context.Background(), "_dmarc.example.com"); err != nil || len(txt) != 1 || txt[0] != "v=DMARC1; p=reject" {
		t.Errorf("_dmarc.example.com TXT = %q, %v", txt, err)
	}
}
