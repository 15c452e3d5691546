package dane

import (
	"testing"

	"github.com/miekg/dns"
)

// FuzzTLSAAnswer: any DNS message a resolver could send back for a TLSA
// query is read without a panic into a bounded set of usable records.
func FuzzTLSAAnswer(f *testing.F) {
	const name = "_25._tcp.mx.example.org."
	for _, rrs := range [][]string{
		{name + " 300 IN TLSA 3 1 1 " + hashA, name + " 300 IN TLSA 1 1 1 " + hashB},
		{name + " 300 IN CNAME _dane.example.net.", "_dane.example.net. 300 IN TLSA 2 0 1 " + hashB},
		{name + " 300 IN TLSA 3 1 1 ABCD", "other.example. 300 IN TLSA 3 1 1 " + hashA},
	} {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeTLSA)
		for _, text := range rrs {
			rr, err := dns.NewRR(text)
			if err != nil {
				f.Fatal(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := new(dns.Msg)
		if m.Unpack(data) != nil {
			return
		}
		res := tlsaResult(m, name)
		if len(res.Records) > maxRecords {
			t.Fatalf("%d records kept", len(res.Records))
		}
		for _, r := range res.Records {
			if !r.Usable() {
				t.Fatalf("unusable record %s kept", r)
			}
		}
		if res.Unusable && len(res.Records) > 0 {
			t.Fatal("unusable with usable records")
		}
	})
}
