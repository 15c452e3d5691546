// Package dnstest is a real authoritative DNS server for tests: it serves
// an in-memory record set over UDP and TCP on 127.0.0.1 (one port for
// both), built on github.com/miekg/dns, and can inject failures (SERVFAIL,
// REFUSED, no answer at all, truncation) for chosen names and types.
//
// Answers follow RFC 1034 §4.3.2 (authoritative answers, CNAME chasing
// inside the zone: a zone is the records at and below a name holding an
// SOA, and with no SOA loaded everything is one zone) and RFC 2308 §2 (NXDOMAIN when the name and every
// name below it have no records; NOERROR with an empty answer, "no data",
// when the name exists with other types or is an empty non-terminal). A
// negative answer carries the SOA of the closest enclosing name that has
// one, so a resolver can derive its negative-cache TTL (RFC 2308 §5); with
// no SOA loaded the authority section is empty.
//
// UDP answers larger than the client's advertised size (512 octets without
// EDNS0, RFC 1035 §4.2.1; the OPT payload size with it, RFC 6891 §6.2.5)
// are truncated with TC=1, as real servers do; TCP answers are complete
// (RFC 7766 §5).
//
// Typical use:
//
//	srv := dnstest.NewServer(t)
//	srv.Add("example.org. 300 IN MX 10 mx.example.org.",
//		"mx.example.org. 300 IN A 192.0.2.1")
//	r, _ := dnsres.New(dnsres.Config{Servers: []string{srv.Addr()}})
//
// To stand in for a DNSSEC-validating resolver, Secure marks names whose
// data counts as validated: an answer sets AD when the query asked for it
// (DO or AD set) and every name on its CNAME chain is marked (RFC 4035
// §3.2.3, RFC 6840 §5.7); a bogus answer is a SERVFAIL (Fail).
//
// For a unit test that needs no wire at all, Unsupported is the base of a
// resolver double: embed it and define only the lookups the test fakes.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Failure is a fault the server injects for a name and type.
type Failure int

const (
	// ServFail answers with RCODE SERVFAIL (2).
	ServFail Failure = iota + 1
	// Timeout never answers, over UDP or TCP.
	Timeout
	// Truncate answers over UDP with TC=1 and an empty answer section;
	// over TCP the full answer is given (RFC 7766 §5).
	Truncate
	// Refused answers with RCODE REFUSED (5).
	Refused
)

// String names the failure.
func (f Failure) String() string {
	switch f {
	case ServFail:
		return "servfail"
	case Timeout:
		return "timeout"
	case Truncate:
		return "truncate"
	case Refused:
		return "refused"
	}
	return "none"
}

// maxChase bounds the CNAME chain the server follows inside its own data.
const maxChase = 8

type key struct {
	name  string // lower-case, fully qualified
	qtype uint16
}

// Server is an authoritative DNS server on 127.0.0.1. It is safe for
// concurrent use.
type Server struct {
	t    testing.TB
	addr string
	udp  *dns.Server
	tcp  *dns.Server

	mu       sync.Mutex
	records  map[key][]dns.RR
	failures map[key]Failure
	secure   map[string]bool
	queries  int
}

// NewServer starts UDP and TCP listeners on 127.0.0.1:0 (the same port for
// both), waits until both serve, and registers t.Cleanup to shut them down.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		t:        t,
		records:  make(map[key][]dns.RR),
		failures: make(map[key]Failure),
		secure:   make(map[string]bool),
	}
	var pc net.PacketConn
	var ln net.Listener
	var err error
	// The UDP port the kernel picks may be taken for TCP; try a few.
	for range 20 {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("dnstest: listen udp: %v", err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("dnstest: listen tcp: %v", err)
	}
	s.addr = pc.LocalAddr().String()

	h := dns.HandlerFunc(s.serve)
	var ready sync.WaitGroup
	ready.Add(2)
	s.udp = &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: ready.Done}
	s.tcp = &dns.Server{Listener: ln, Handler: h, NotifyStartedFunc: ready.Done}
	errc := make(chan error, 2)
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		go func() { errc <- srv.ActivateAndServe() }()
	}
	started := make(chan struct{})
	go func() { ready.Wait(); close(started) }()
	select {
	case <-started:
	case err := <-errc:
		t.Fatalf("dnstest: serve: %v", err)
	}
	t.Cleanup(func() {
		s.udp.Shutdown()
		s.tcp.Shutdown()
	})
	return s
}

// NewServerWithZone starts a server (see NewServer) and loads zoneText, a
// zone file in RFC 1035 §5 master-file syntax ($ORIGIN and $TTL allowed;
// relative names without $ORIGIN are relative to the root).
func NewServerWithZone(t testing.TB, zoneText string) *Server {
	t.Helper()
	s := NewServer(t)
	s.AddZone(zoneText)
	return s
}

// Addr is the "127.0.0.1:PORT" the server answers on, over UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Add adds records written in zone-file syntax, one per string, e.g.
// "example.org. 300 IN MX 10 mx.example.org.". Names are
// case-insensitive; a TXT record may have several strings. A parse error
// fails the test.
func (s *Server) Add(rrs ...string) {
	s.t.Helper()
	for _, text := range rrs {
		rr, err := dns.NewRR(text)
		if err != nil {
			s.t.Fatalf("dnstest: parse %q: %v", text, err)
		}
		if rr == nil {
			s.t.Fatalf("dnstest: parse %q: no record", text)
		}
		s.AddRR(rr)
	}
}

// AddZone adds every record of a zone-file text (see NewServerWithZone).
func (s *Server) AddZone(zoneText string) {
	s.t.Helper()
	zp := dns.NewZoneParser(strings.NewReader(zoneText), ".", "zone")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		s.AddRR(rr)
	}
	if err := zp.Err(); err != nil {
		s.t.Fatalf("dnstest: parse zone: %v", err)
	}
}

// AddRR adds records. A record equal to one already held is not added
// twice (RFC 2181 §5: an RRset has no duplicates).
func (s *Server) AddRR(rrs ...dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		rr = dns.Copy(rr)
		h := rr.Header()
		h.Name = dns.Fqdn(h.Name)
		k := key{strings.ToLower(h.Name), h.Rrtype}
		dup := false
		for _, old := range s.records[k] {
			if dns.IsDuplicate(old, rr) {
				dup = true
				break
			}
		}
		if !dup {
			s.records[k] = append(s.records[k], rr)
		}
	}
}

// AddTXT adds one TXT record (TTL 300) holding value, split in strings
// of at most 255 octets (RFC 1035 §3.3.14) as real zones hold long DKIM
// keys; a resolver joins them again (RFC 6376 §3.6.2.2).
func (s *Server) AddTXT(name, value string) {
	var chunks []string
	for len(value) > 255 {
		chunks, value = append(chunks, value[:255]), value[255:]
	}
	chunks = append(chunks, value)
	s.AddRR(&dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300}, Txt: chunks})
}

// Remove deletes the records of name and qtype (dns.TypeANY: every type).
func (s *Server) Remove(name string, qtype uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := canon(name)
	for k := range s.records {
		if k.name == n && (qtype == dns.TypeANY || k.qtype == qtype) {
			delete(s.records, k)
		}
	}
}

// Fail makes queries for name and qtype fail with f (dns.TypeANY: queries
// of every type for name). A failure for the exact type wins over one for
// dns.TypeANY. Fail(name, qtype, 0) removes the failure.
func (s *Server) Fail(name string, qtype uint16, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{canon(name), qtype}
	if f == 0 {
		delete(s.failures, k)
		return
	}
	s.failures[k] = f
}

// Secure marks names as validated: answers about them carry AD (see the
// package doc). Secure with no names does nothing.
func (s *Server) Secure(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		s.secure[canon(n)] = true
	}
}

// Insecure removes the marks Secure set on names.
func (s *Server) Insecure(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		delete(s.secure, canon(n))
	}
}

// Clear removes all records and failures. The query count is kept.
func (s *Server) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.records)
	clear(s.failures)
	clear(s.secure)
}

// Queries is the number of queries the server received (over UDP and TCP,
// including those it failed or left unanswered), for cache tests.
func (s *Server) Queries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries
}

func canon(name string) string { return strings.ToLower(dns.Fqdn(name)) }

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	udp := w.LocalAddr().Network() == "udp"
	resp, ok := s.answer(req, udp)
	if !ok {
		return // Timeout: never answer.
	}
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(1232, false) // RFC 6891 §6.1.1: answer with OPT when asked with it.
	}
	if udp {
		size := dns.MinMsgSize // RFC 1035 §4.2.1
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize()) // RFC 6891 §6.2.5
		}
		resp.Truncate(size)
	}
	_ = w.WriteMsg(resp)
}

// answer builds the reply to req; ok is false when no reply must be sent.
func (s *Server) answer(req *dns.Msg, udp bool) (resp *dns.Msg, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries++

	resp = new(dns.Msg)
	if req.Opcode != dns.OpcodeQuery {
		resp.SetRcode(req, dns.RcodeNotImplemented)
		return resp, true
	}
	if len(req.Question) != 1 {
		resp.SetRcode(req, dns.RcodeFormatError) // RFC 1035 §4.1.2: one question in practice
		return resp, true
	}
	resp.SetReply(req)
	resp.Authoritative = true // RFC 1035 §4.1.1 AA
	resp.RecursionAvailable = false
	q := req.Question[0]
	name := canon(q.Name)

	switch s.failureFor(name, q.Qtype) {
	case ServFail:
		resp.Rcode = dns.RcodeServerFailure
		return resp, true
	case Refused:
		resp.Rcode = dns.RcodeRefused
		return resp, true
	case Timeout:
		return nil, false
	case Truncate:
		if udp {
			resp.Truncated = true
			return resp, true
		}
	}

	// RFC 4035 §3.2.3, RFC 6840 §5.7: a validating resolver sets AD only
	// when asked (DO or AD) and every RRset of the answer is secure.
	wantAD := req.AuthenticatedData
	if opt := req.IsEdns0(); opt != nil && opt.Do() {
		wantAD = true
	}
	secure := wantAD
	defer func() {
		if resp != nil && (resp.Rcode == dns.RcodeSuccess || resp.Rcode == dns.RcodeNameError) {
			resp.AuthenticatedData = secure
		}
	}()

	// RFC 1034 §4.3.2 step 3: follow CNAMEs inside the data we hold.
	seen := map[string]bool{}
	for hop := 0; ; hop++ {
		secure = secure && s.secure[name]
		rrs := s.records[key{name, q.Qtype}]
		if q.Qtype == dns.TypeANY {
			rrs = s.all(name)
		}
		if len(rrs) > 0 {
			resp.Answer = append(resp.Answer, copyAll(rrs)...)
			return resp, true
		}
		cn := s.records[key{name, dns.TypeCNAME}]
		if len(cn) == 0 || q.Qtype == dns.TypeCNAME {
			break
		}
		if hop >= maxChase || seen[name] {
			return resp, true // a loop or an over-long chain: what we have
		}
		seen[name] = true
		resp.Answer = append(resp.Answer, dns.Copy(cn[0]))
		target := canon(cn[0].(*dns.CNAME).Target)
		if s.soaFor(target) != s.soaFor(name) {
			// Another zone: a real authoritative server stops here and the
			// resolver asks again (RFC 1034 §4.3.2 step 3a).
			return resp, true
		}
		name = target
	}
	// Negative answer (RFC 2308 §2.1, §2.2) for the last name of the chain.
	if !s.exists(name) {
		resp.Rcode = dns.RcodeNameError // RFC 6604 §2: rcode applies to the last name
	}
	if soa := s.soaFor(name); soa != nil {
		resp.Ns = append(resp.Ns, dns.Copy(soa))
	}
	return resp, true
}

func (s *Server) failureFor(name string, qtype uint16) Failure {
	if f, ok := s.failures[key{name, qtype}]; ok {
		return f
	}
	return s.failures[key{name, dns.TypeANY}]
}

// exists reports whether name has records or is an empty non-terminal
// (RFC 8020 §2: a name with descendants exists).
func (s *Server) exists(name string) bool {
	for k, rrs := range s.records {
		if len(rrs) == 0 {
			continue
		}
		if k.name == name || dns.IsSubDomain(name, k.name) {
			return true
		}
	}
	return false
}

func (s *Server) all(name string) []dns.RR {
	var out []dns.RR
	for k, rrs := range s.records {
		if k.name == name {
			out = append(out, rrs...)
		}
	}
	return out
}

// soaFor finds the SOA of the closest enclosing name that has one.
func (s *Server) soaFor(name string) dns.RR {
	for off, end := 0, false; !end; off, end = dns.NextLabel(name, off) {
		if rrs := s.records[key{name[off:], dns.TypeSOA}]; len(rrs) > 0 {
			return rrs[0]
		}
	}
	return nil
}

func copyAll(rrs []dns.RR) []dns.RR {
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = dns.Copy(rr)
	}
	return out
}
