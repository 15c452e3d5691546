package dmarc_test

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
	"moat/policy"
	"moat/policy/dkim"
	"moat/policy/dkimsign"
	"moat/policy/dmarc"
	"moat/policy/spf"
)

// BenchmarkAuthChain measures SPF + DKIM (rsa-2048) + DMARC for one
// message with every DNS answer in the resolver's cache (one warm-up run
// first). Target: < 200 µs CPU per message.
func BenchmarkAuthChain(b *testing.B) {
	srv := dnstest.NewServer(b)
	priv, txt, err := dkimsign.GenerateKey("rsa-2048")
	if err != nil {
		b.Fatal(err)
	}
	keyFile := filepath.Join(b.TempDir(), "k.pem")
	if err := os.WriteFile(keyFile, priv, 0o600); err != nil {
		b.Fatal(err)
	}
	signer, err := dkimsign.NewSigner([]dkimsign.Key{{Domain: "example.org", Selector: "s1", KeyFile: keyFile}})
	if err != nil {
		b.Fatal(err)
	}
	var chunks []string
	for len(txt) > 255 {
		chunks, txt = append(chunks, txt[:255]), txt[255:]
	}
	srv.AddRR(&dns.TXT{Hdr: dns.RR_Header{Name: "s1._domainkey.example.org.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 3600}, Txt: append(chunks, txt)})
	srv.Add(
		`example.org. 3600 IN TXT "v=spf1 ip4:192.0.2.0/24 include:_spf.example.org -all"`,
		`_spf.example.org. 3600 IN TXT "v=spf1 ip4:198.51.100.0/24 -all"`,
		`_dmarc.example.org. 3600 IN TXT "v=DMARC1; p=reject; rua=mailto:d@example.org"`,
	)
	r, err := dnsres.New(dnsres.Config{Servers: []string{srv.Addr()}, Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	body := strings.Repeat("This is a line of a message body of moderate length.\r\n", 60)
	msg := "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: hi\r\n" +
		"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\n" + body
	sig, ok, err := signer.Sign("example.org", strings.NewReader(msg))
	if err != nil || !ok {
		b.Fatal(err)
	}
	signed := []byte(sig + msg)
	ip := netip.MustParseAddr("198.51.100.7")
	ctx := context.Background()
	run := func() policy.DMARC {
		s := spf.Check(ctx, r, ip, "mail.example.org", "bounce@example.org")
		d := dkim.Verify(ctx, r, bytes.NewReader(signed), dkim.Options{})
		return dmarc.Evaluate(ctx, r, dmarc.Input{From: []string{"Alice <alice@example.org>"}, SPF: s, DKIM: d})
	}
	if got := run(); got.Result != policy.ResultPass || !got.DKIMAligned || !got.SPFAligned {
		b.Fatalf("warm-up: %+v", got)
	}
	q := srv.Queries()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for b.Loop() {
		run()
	}
	b.StopTimer()
	// Process CPU time (user+system) per message: the figure the target is
	// about, less noisy than wall time on a shared machine.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	if srv.Queries() != q {
		b.Fatalf("cache not warm: %d queries during the run", srv.Queries()-q)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
