package spf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"gopkg.in/yaml.v3"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
)

// The RFC 7208 test suite (testdata/rfc7208-tests.yml, openspf.org via
// pyspf; licence in testdata/rfc7208-tests.LICENSE) runs through our
// resolver against a real DNS server holding each scenario's zonedata.

type suite struct {
	Description string
	Tests       map[string]suiteTest
	ZoneData    map[string][]yaml.Node `yaml:"zonedata"`
}

type suiteTest struct {
	Description string
	Spec        any
	Helo        string
	Host        string
	MailFrom    string `yaml:"mailfrom"`
	Result      strList
	Explanation string
}

// strList is a YAML scalar or sequence of scalars.
type strList []string

func (l *strList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*l = []string{n.Value}
		return nil
	case yaml.SequenceNode:
		var s []string
		if err := n.Decode(&s); err != nil {
			return err
		}
		*l = s
		return nil
	}
	return fmt.Errorf("line %d: want string or list", n.Line)
}

// latin1 turns the YAML string back into the octets the suite means: the
// file is ASCII and writes every other octet as a "\xNN" escape, which YAML
// decodes to the code point U+00NN.
func latin1(s string) string {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff {
			return s
		}
		b = append(b, byte(r))
	}
	return string(b)
}

// knownFailures lists cases that cannot pass, with the reason, keyed by
// "scenario/test". Issue 23 allows at most 3; today there are none: the
// syntax of every record is checked before the library evaluates it
// (record.go), %{p} and domain-specs with "/" are expanded for it
// (session.go), and internal/dnsres compares names as DNS does.
var knownFailures = map[string]string{}

// maxKnownFailures is the most exceptions issue 23 allows.
const maxKnownFailures = 3

func loadSuite(t *testing.T) []suite {
	f, err := os.Open("testdata/rfc7208-tests.yml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var out []suite
	for {
		var s suite
		err := dec.Decode(&s)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// txtRR builds a TXT record from its strings; backslashes are escaped
// because miekg/dns keeps TXT strings in presentation form.
func txtRR(name string, strs []string) dns.RR {
	esc := make([]string, len(strs))
	for i, s := range strs {
		esc[i] = strings.ReplaceAll(latin1(s), `\`, `\\`)
	}
	return &dns.TXT{Hdr: hdr(name, dns.TypeTXT), Txt: esc}
}

func hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: zoneName(name), Rrtype: t, Class: dns.ClassINET, Ttl: 300}
}

// zoneName writes a suite name (octets, "\xNN" decoded by latin1) in the
// presentation form miekg/dns gives the names it unpacks, which is what
// dnstest compares the question with: the special characters escaped as
// \X, octets outside printable ASCII as \DDD (RFC 1035 §5.1). The suite
// has names with spaces and "%" from macro expansion.
func zoneName(name string) string {
	var b strings.Builder
	for _, c := range []byte(latin1(name)) {
		switch {
		case strings.IndexByte(` "'();@\`, c) >= 0:
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x21 || c > 0x7e:
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	return dns.Fqdn(b.String())
}

// loadZone puts a scenario's zonedata into srv, the way the suite's
// reference harness (pyspf) reads it:
//   - records of type SPF (obsolete RR type 99, RFC 7208 §3.1) are served
//     as TXT, unless the name has TXT entries of its own (the "Record
//     lookup" and "Selecting records" scenarios tell the two apart);
//   - "TXT: NONE" means no TXT record;
//   - TIMEOUT makes every query type for the name that has no records of
//     its own go unanswered (a TXT present with TIMEOUT still answers:
//     only the SPF-type query timed out there).
func loadZone(t *testing.T, srv *dnstest.Server, zone map[string][]yaml.Node) {
	for name, recs := range zone {
		hasTXT, timeout := false, false
		has := map[uint16]bool{}
		for _, n := range recs {
			if n.Kind == yaml.MappingNode && len(n.Content) == 2 && n.Content[0].Value == "TXT" {
				hasTXT = true
			}
		}
		for _, n := range recs {
			if n.Kind == yaml.ScalarNode && n.Value == "TIMEOUT" {
				timeout = true
				continue
			}
			if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
				t.Fatalf("%s: bad record at line %d", name, n.Line)
			}
			typ, val := n.Content[0].Value, n.Content[1]
			var vals strList
			if typ != "MX" {
				if err := val.Decode(&vals); err != nil {
					t.Fatalf("%s %s: %v", name, typ, err)
				}
			}
			switch typ {
			case "SPF", "TXT":
				if typ == "SPF" && hasTXT {
					continue
				}
				if typ == "TXT" && len(vals) == 1 && vals[0] == "NONE" {
					continue
				}
				if len(vals) == 0 {
					continue // an RR with no strings cannot be sent
				}
				has[dns.TypeTXT] = true
				if val.Kind == yaml.SequenceNode {
					srv.AddRR(txtRR(name, vals))
				} else {
					srv.AddRR(txtRR(name, vals[:1]))
				}
			case "A":
				has[dns.TypeA] = true
				for _, v := range vals {
					srv.AddRR(&dns.A{Hdr: hdr(name, dns.TypeA), A: netip.MustParseAddr(v).AsSlice()})
				}
			case "AAAA":
				has[dns.TypeAAAA] = true
				for _, v := range vals {
					srv.AddRR(&dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: netip.MustParseAddr(v).AsSlice()})
				}
			case "PTR":
				has[dns.TypePTR] = true
				for _, v := range vals {
					srv.AddRR(&dns.PTR{Hdr: hdr(name, dns.TypePTR), Ptr: zoneName(v)})
				}
			case "CNAME":
				has[dns.TypeCNAME] = true
				srv.AddRR(&dns.CNAME{Hdr: hdr(name, dns.TypeCNAME), Target: zoneName(vals[0])})
			case "MX":
				var mx []any
				if err := val.Decode(&mx); err != nil || len(mx) != 2 {
					t.Fatalf("%s MX: %v", name, err)
				}
				has[dns.TypeMX] = true
				target := fmt.Sprint(mx[1])
				srv.AddRR(&dns.MX{Hdr: hdr(name, dns.TypeMX), Preference: uint16(mx[0].(int)), Mx: zoneName(target)})
			default:
				t.Fatalf("%s: record type %s not supported", name, typ)
			}
		}
		if timeout {
			for _, qt := range []uint16{dns.TypeTXT, dns.TypeA, dns.TypeAAAA, dns.TypeMX, dns.TypePTR, dns.TypeCNAME} {
				if !has[qt] {
					srv.Fail(zoneName(name), qt, dnstest.Timeout)
				}
			}
		}
	}
}

func TestRFC7208Suite(t *testing.T) {
	suites := loadSuite(t)
	total, passed, skipped := 0, 0, 0
	var skipReasons []string
	for _, s := range suites {
		srv := dnstest.NewServer(t)
		loadZone(t, srv, s.ZoneData)
		// A short timeout: the suite's TIMEOUT names never answer. No
		// cache, so every case sees the zone as loaded.
		r, err := dnsres.New(dnsres.Config{Servers: []string{srv.Addr()}, Timeout: 50 * time.Millisecond, CacheSize: -1})
		if err != nil {
			t.Fatal(err)
		}
		names := make([]string, 0, len(s.Tests))
		for n := range s.Tests {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, name := range names {
			tc := s.Tests[name]
			total++
			key := s.Description + "/" + name
			ip, err := netip.ParseAddr(tc.Host)
			if err != nil {
				t.Fatalf("%s: bad host %q", key, tc.Host)
			}
			got := Check(context.Background(), r, ip, latin1(tc.Helo), latin1(tc.MailFrom))
			ok := slices.Contains(tc.Result, string(got.Result))
			if why, known := knownFailures[key]; known {
				if ok {
					t.Errorf("%s: listed as failing (%s) but passes", key, why)
				}
				skipped++
				skipReasons = append(skipReasons, key+": "+why)
				continue
			}
			if !ok {
				t.Errorf("%s: helo=%q mailfrom=%q ip=%s: got %s (%s), want %v — %s", key, tc.Helo, tc.MailFrom, tc.Host, got.Result, got.Reason, tc.Result, strings.TrimSpace(tc.Description))
				continue
			}
			passed++
		}
	}
	if total != 203 {
		t.Errorf("suite has %d cases, want 203", total)
	}
	if len(knownFailures) > maxKnownFailures || passed+skipped != total {
		t.Errorf("passed %d of %d with %d named exceptions; issue 23 wants all with at most %d", passed, total, skipped, maxKnownFailures)
	}
	t.Logf("RFC 7208 suite: passed %d of %d, skipped %d with reasons:\n%s", passed, total, skipped, strings.Join(skipReasons, "\n"))
	t.Logf("note: exp= explanation strings are not checked (policy.SPF carries no explanation); the result of those cases is.")
}
