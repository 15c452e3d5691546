package testenv

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// DNSSECOptions describe the zones StartDNSSEC serves.
type DNSSECOptions struct {
	// Zone is the signed zone's origin; "" is "dane.test." (RFC 6761
	// reserves .test).
	Zone string
	// Records are zone-file lines of the signed zone, names relative to
	// Zone or absolute, e.g. "mx IN A 127.0.0.2"; the SOA, the NS and
	// ns.<zone> are added.
	Records []string
	// Unsigned is a second, unsigned zone ("" is "insecure.test.") served
	// alongside, whose answers the validating resolver passes without AD;
	// UnsignedRecords are its lines as Records.
	Unsigned        string
	UnsignedRecords []string
}

// DNSSEC is a zone signed in the test with ldns-keygen and ldns-signzone,
// served by an authoritative miekg/dns server on loopback, behind a
// validating unbound on loopback that has the zone's DS as its trust
// anchor: unbound answers for the zone with AD, answers for the unsigned
// zone without it, and SERVFAIL for records tampered with after signing.
// Point dns.servers (or relay/dane.NewResolver) at Resolver.
type DNSSEC struct {
	// Resolver is unbound's "127.0.0.1:port".
	Resolver string
	// Zone and Unsigned are the zones' origins (fully qualified).
	Zone, Unsigned string
	// Dir holds the zone files, keys and unbound's configuration and log.
	Dir string

	auth *authServer
}

// StartDNSSEC signs and serves the zones and starts unbound; everything
// stops in t.Cleanup. It needs unbound, ldns-keygen and ldns-signzone
// (skipped without them; see NeedBinary).
func StartDNSSEC(t testing.TB, o DNSSECOptions) *DNSSEC {
	t.Helper()
	unbound := NeedBinary(t, "/usr/sbin/unbound")
	keygen := NeedBinary(t, "/usr/bin/ldns-keygen")
	signzone := NeedBinary(t, "/usr/bin/ldns-signzone")
	if o.Zone == "" {
		o.Zone = "dane.test."
	}
	if o.Unsigned == "" {
		o.Unsigned = "insecure.test."
	}
	d := &DNSSEC{Zone: dns.Fqdn(strings.ToLower(o.Zone)), Unsigned: dns.Fqdn(strings.ToLower(o.Unsigned)), Dir: t.TempDir()}

	// Sign: a KSK and a ZSK (ECDSA P-256, RFC 6605), NSEC, valid from a
	// day ago for a month so clock skew does not matter.
	zoneFile := filepath.Join(d.Dir, "signed.zone")
	if err := os.WriteFile(zoneFile, []byte(zoneText(d.Zone, o.Records)), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(bin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = d.Dir
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("%s %v: %v\n%s%s", bin, args, err, out, stderr)
		}
		return strings.TrimSpace(string(out))
	}
	ksk := run(keygen, "-a", "ECDSAP256SHA256", "-k", d.Zone)
	zsk := run(keygen, "-a", "ECDSAP256SHA256", d.Zone)
	now := time.Now().UTC()
	run(signzone, "-i", now.Add(-24*time.Hour).Format("20060102150405"),
		"-e", now.Add(30*24*time.Hour).Format("20060102150405"), zoneFile, zsk, ksk)
	signed, err := os.ReadFile(zoneFile + ".signed")
	if err != nil {
		t.Fatal(err)
	}
	ds, err := os.ReadFile(filepath.Join(d.Dir, ksk+".ds"))
	if err != nil {
		t.Fatal(err)
	}
	anchor := filepath.Join(d.Dir, "trust-anchor.ds")
	if err := os.WriteFile(anchor, ds, 0o600); err != nil {
		t.Fatal(err)
	}

	d.auth = newAuthServer(t)
	d.auth.load(t, d.Zone, string(signed))
	d.auth.load(t, d.Unsigned, zoneText(d.Unsigned, o.UnsignedRecords))

	// unbound: validating, forwarding nothing, asking only our server
	// for the two zones (stub zones), on a free loopback port.
	port := FreePort(t)
	d.Resolver = fmt.Sprintf("127.0.0.1:%d", port)
	authHost, authPort, _ := net.SplitHostPort(d.auth.addr)
	conf := filepath.Join(d.Dir, "unbound.conf")
	logFile := filepath.Join(d.Dir, "unbound.log")
	text := fmt.Sprintf(`server:
	interface: 127.0.0.1
	port: %d
	do-ip6: no
	do-daemonize: no
	use-syslog: no
	logfile: %q
	verbosity: 1
	val-log-level: 2
	username: ""
	chroot: ""
	directory: %q
	pidfile: %q
	access-control: 127.0.0.0/8 allow
	do-not-query-localhost: no
	qname-minimisation: no
	module-config: "validator iterator"
	trust-anchor-file: %q
	num-threads: 1
	so-reuseport: no
	msg-cache-size: 1m
	rrset-cache-size: 1m
	key-cache-size: 1m
	neg-cache-size: 1m
	val-bogus-ttl: 0
%s
remote-control:
	control-enable: no
stub-zone:
	name: %q
	stub-addr: %s@%s
stub-zone:
	name: %q
	stub-addr: %s@%s
`, port, logFile, d.Dir, filepath.Join(d.Dir, "unbound.pid"), anchor, nodefault(d.Zone, d.Unsigned),
		d.Zone, authHost, authPort, d.Unsigned, authHost, authPort)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(unbound, "-d", "-c", conf)
	out, err := os.Create(filepath.Join(d.Dir, "unbound.out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); out.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	if err := WaitPort(d.Resolver, 15*time.Second); err != nil {
		b, _ := os.ReadFile(filepath.Join(d.Dir, "unbound.out"))
		l, _ := os.ReadFile(logFile)
		t.Fatalf("unbound: %v\n%s%s", err, b, l)
	}
	return d
}

// Tamper changes the served records of name and qtype (TLSA: the first
// octet of the data; A: the last octet of the address; others: the TTL
// and nothing that is signed, so use TLSA or A) after signing, so that
// unbound finds them bogus and answers SERVFAIL. Call it before anything
// asked for name: unbound caches what it validated.
func (d *DNSSEC) Tamper(name string, qtype uint16) {
	d.auth.tamper(dns.Fqdn(strings.ToLower(name)), qtype)
}

// Log is unbound's log, for a failing test's message.
func (d *DNSSEC) Log() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "unbound.log"))
	return string(b)
}

// TLSA3 is the DANE-EE record "3 1 1 <sha256 of c's public key>" for
// _port._tcp.host, as a zone-file line.
func TLSA3(host string, port int, c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return fmt.Sprintf("_%d._tcp.%s 300 IN TLSA 3 1 1 %s", port, dns.Fqdn(host), hex.EncodeToString(sum[:]))
}

// nodefault lifts unbound's built-in answers (RFC 6761: "test.",
// "invalid." …, always NXDOMAIN) for the top-level domains of zones.
func nodefault(zones ...string) string {
	var b strings.Builder
	seen := map[string]bool{}
	for _, z := range zones {
		labels := dns.SplitDomainName(z)
		if len(labels) == 0 {
			continue
		}
		tld := labels[len(labels)-1] + "."
		if !seen[tld] {
			seen[tld] = true
			fmt.Fprintf(&b, "\tlocal-zone: %q nodefault\n", tld)
		}
	}
	return b.String()
}

func zoneText(origin string, records []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "$ORIGIN %s\n$TTL 300\n", origin)
	fmt.Fprintf(&b, "@ IN SOA ns.%s hostmaster.%s 1 3600 600 86400 300\n", origin, origin)
	fmt.Fprintf(&b, "@ IN NS ns.%s\nns IN A 127.0.0.1\n", origin)
	for _, r := range records {
		b.WriteString(r)
		b.WriteByte('\n')
	}
	return b.String()
}

// authServer is the authoritative server of the zones: it answers from
// the records loaded, with their RRSIGs when asked with DO, and proves a
// negative answer with the zone's SOA and every NSEC record of the zone
// (small test zones: the resolver picks the proof it needs).
type authServer struct {
	addr string
	mu   sync.Mutex
	// zones by origin; records by owner name and type, RRSIGs under the
	// type they cover.
	zones map[string]*authZone
}

type authZone struct {
	rrs  map[string]map[uint16][]dns.RR
	sigs map[string]map[uint16][]dns.RR
	nsec []dns.RR // NSEC records and their RRSIGs
}

func newAuthServer(t testing.TB) *authServer {
	t.Helper()
	a := &authServer{zones: map[string]*authZone{}}
	var pc net.PacketConn
	var ln net.Listener
	var err error
	for range 20 {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	a.addr = pc.LocalAddr().String()
	var ready sync.WaitGroup
	ready.Add(2)
	h := dns.HandlerFunc(a.serve)
	udp := &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: ready.Done}
	tcp := &dns.Server{Listener: ln, Handler: h, NotifyStartedFunc: ready.Done}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	ready.Wait()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	return a
}

func (a *authServer) load(t testing.TB, origin, text string) {
	t.Helper()
	z := &authZone{rrs: map[string]map[uint16][]dns.RR{}, sigs: map[string]map[uint16][]dns.RR{}}
	zp := dns.NewZoneParser(strings.NewReader(text), origin, "zone")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		h := rr.Header()
		h.Name = strings.ToLower(h.Name)
		typ, m := h.Rrtype, z.rrs
		if sig, ok := rr.(*dns.RRSIG); ok {
			typ, m = sig.TypeCovered, z.sigs
		}
		if typ == dns.TypeNSEC {
			z.nsec = append(z.nsec, rr)
		}
		if m[h.Name] == nil {
			m[h.Name] = map[uint16][]dns.RR{}
		}
		m[h.Name][typ] = append(m[h.Name][typ], rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("zone %s: %v", origin, err)
	}
	a.mu.Lock()
	a.zones[origin] = z
	a.mu.Unlock()
}

func (a *authServer) tamper(name string, qtype uint16) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, z := range a.zones {
		for _, rr := range z.rrs[name][qtype] {
			switch r := rr.(type) {
			case *dns.TLSA:
				b, _ := hex.DecodeString(r.Certificate)
				if len(b) > 0 {
					b[0] ^= 0xff
					r.Certificate = hex.EncodeToString(b)
				}
			case *dns.A:
				ip := append(net.IP(nil), r.A.To4()...)
				ip[3] ^= 1
				r.A = ip
			default:
				r.Header().Ttl++
			}
		}
	}
}

func (a *authServer) serve(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	if len(req.Question) != 1 {
		resp.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(resp)
		return
	}
	resp.SetReply(req)
	resp.Authoritative = true
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	do := false
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		do, size = opt.Do(), int(opt.UDPSize())
		resp.SetEdns0(4096, do)
	}
	a.mu.Lock()
	var z *authZone
	for origin, cand := range a.zones {
		if dns.IsSubDomain(origin, name) {
			z = cand
		}
	}
	if z == nil {
		a.mu.Unlock()
		resp.Rcode = dns.RcodeRefused
		w.WriteMsg(resp)
		return
	}
	add := func(sec *[]dns.RR, owner string, typ uint16) bool {
		rrs := z.rrs[owner][typ]
		for _, rr := range rrs {
			*sec = append(*sec, dns.Copy(rr))
		}
		if do && len(rrs) > 0 {
			for _, rr := range z.sigs[owner][typ] {
				*sec = append(*sec, dns.Copy(rr))
			}
		}
		return len(rrs) > 0
	}
	switch {
	case add(&resp.Answer, name, q.Qtype):
	case q.Qtype != dns.TypeCNAME && add(&resp.Answer, name, dns.TypeCNAME):
		// The resolver follows the CNAME itself (RFC 1034 §4.3.2).
	default:
		exists := false
		for owner := range z.rrs {
			if owner == name || dns.IsSubDomain(name, owner) {
				exists = true
				break
			}
		}
		if !exists {
			resp.Rcode = dns.RcodeNameError
		}
		for origin := range a.zones {
			if a.zones[origin] == z {
				add(&resp.Ns, origin, dns.TypeSOA)
			}
		}
		if do {
			for _, rr := range z.nsec {
				resp.Ns = append(resp.Ns, dns.Copy(rr))
				for _, sig := range z.sigs[rr.Header().Name][dns.TypeNSEC] {
					resp.Ns = append(resp.Ns, dns.Copy(sig))
				}
			}
		}
	}
	a.mu.Unlock()
	if w.LocalAddr().Network() == "udp" {
		resp.Truncate(size)
	}
	w.WriteMsg(resp)
}
