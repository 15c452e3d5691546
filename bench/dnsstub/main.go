// Command dnsstub is the benchmark's DNS server: it answers on a loopback
// UDP/TCP port so that moat's session checks (SPF, DMARC, iprev) get
// answers without any query leaving the machine. It knows the loopback
// client (PTR 127.0.0.1 -> client.test, client.test A 127.0.0.1) and
// answers NXDOMAIN (RFC 1035 §4.1.1, RCODE 3) for every other name.
// -txt name=value (repeatable) adds TXT records, so the benchmark's sender
// domain can publish SPF, DMARC and a DKIM key and every check runs to a
// real result.
//
//	dnsstub -addr 127.0.0.1:5353 -txt 'client.test=v=spf1 ip4:127.0.0.0/8 -all'
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/miekg/dns"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5353", "loopback host:port for UDP and TCP")
	flag.Func("txt", "name=value: serve a TXT record (repeatable)", func(v string) error {
		name, val, ok := strings.Cut(v, "=")
		if !ok || name == "" {
			return fmt.Errorf("want name=value")
		}
		k := dns.Fqdn(strings.ToLower(name))
		txt[k] = append(txt[k], val)
		return nil
	})
	flag.Parse()
	host, _, err := net.SplitHostPort(*addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintln(os.Stderr, "dnsstub: -addr must be a loopback host:port")
		os.Exit(2)
	}
	h := dns.HandlerFunc(answer)
	errc := make(chan error, 2)
	for _, n := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: *addr, Net: n, Handler: h}
		go func() { errc <- srv.ListenAndServe() }()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-errc:
		fmt.Fprintln(os.Stderr, "dnsstub:", err)
		os.Exit(1)
	case <-sig:
	}
}

// txt holds the -txt records by lower-case FQDN; read-only once serving.
var txt = map[string][]string{}

// chunks splits a TXT value into strings of at most 255 octets (RFC 1035 §3.3.14).
func chunks(v string) []string {
	var out []string
	for len(v) > 255 {
		out, v = append(out, v[:255]), v[255:]
	}
	return append(out, v)
}

func answer(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) == 1 {
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: 300}
		switch {
		case txt[name] != nil && q.Qtype == dns.TypeTXT:
			for _, v := range txt[name] {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr, Txt: chunks(v)})
			}
		case txt[name] != nil:
			// The name exists: NOERROR, no data.
		case name == "1.0.0.127.in-addr.arpa." && q.Qtype == dns.TypePTR:
			m.Answer = append(m.Answer, &dns.PTR{Hdr: hdr, Ptr: "client.test."})
		case name == "client.test." && q.Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IPv4(127, 0, 0, 1)})
		case name == "1.0.0.127.in-addr.arpa." || name == "client.test.":
			// The name exists: NOERROR, no data (RFC 2308 §2.2).
		default:
			m.Rcode = dns.RcodeNameError
		}
	}
	w.WriteMsg(m)
}
