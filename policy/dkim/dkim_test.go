package dkim

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"moat/internal/dnsres"
	"moat/internal/dnstest"
	"moat/policy"
)

func newDNS(t testing.TB) (*dnstest.Server, dnsres.Resolver) {
	srv := dnstest.NewServer(t)
	return srv, dnsres.ForTest(srv.Addr())
}

// loadKeys reads "name value" lines; "NXDOMAIN" is left absent and
// "~~...~~" becomes SERVFAIL.
func loadKeys(t *testing.T, srv *dnstest.Server, text string) {
	for _, line := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("bad DNS line %q", line)
		}
		value = strings.TrimSpace(value)
		switch {
		case value == "NXDOMAIN":
		case strings.HasPrefix(value, "~~"):
			srv.Fail(name, dns.TypeTXT, dnstest.ServFail)
		default:
			srv.AddTXT(name, value)
		}
	}
}

func crlf(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func results(d policy.DKIM) string {
	var s []string
	for _, sig := range d.Signatures {
		s = append(s, string(sig.Result)+"("+sig.Domain+"/"+sig.Selector+"/"+sig.Algorithm+": "+sig.Reason+")")
	}
	return string(d.Result) + " " + strings.Join(s, " ")
}

func TestRFC8463(t *testing.T) {
	srv, r := newDNS(t)
	loadKeys(t, srv, string(readFile(t, "testdata/rfc8463/dns-records.txt")))
	for _, f := range []string{"testdata/rfc8463/signed-message.eml", "testdata/dkimpy/rfc6376.signed.msg"} {
		got := Verify(context.Background(), r, bytes.NewReader(crlf(readFile(t, f))), Options{})
		if got.Result != policy.ResultPass || len(got.Signatures) != 2 {
			t.Fatalf("%s: %s", f, results(got))
		}
		algos := map[string]bool{}
		for _, s := range got.Signatures {
			if s.Result != policy.ResultPass || s.Domain != "football.example.com" || s.Identity != "@football.example.com" {
				t.Errorf("%s: %+v", f, s)
			}
			algos[s.Algorithm+"/"+s.Selector] = true
		}
		if !algos["ed25519-sha256/brisbane"] || !algos["rsa-sha256/test"] {
			t.Errorf("%s: algorithms %v", f, algos)
		}
	}
}

func TestDKIMPy(t *testing.T) {
	srv, r := newDNS(t)
	srv.AddTXT("sed._domainkey.test.ex", strings.TrimSpace(string(readFile(t, "testdata/dkimpy/eximtest.dns"))))
	got := Verify(context.Background(), r, bytes.NewReader(crlf(readFile(t, "testdata/dkimpy/ed25519test2.msg"))), Options{})
	if got.Result != policy.ResultPass {
		t.Fatalf("ed25519test2: %s", results(got))
	}
	// An unsigned message is none.
	got = Verify(context.Background(), r, bytes.NewReader(crlf(readFile(t, "testdata/dkimpy/test_extra.message"))), Options{})
	if got.Result != policy.ResultNone || len(got.Signatures) != 0 {
		t.Fatalf("unsigned: %s", results(got))
	}
}

// stalwartExpected: every file's last signature passes, except 005 whose
// x= expired in 2022: go-msgauth checks expiry against the clock, which we
// do not override, so it is permerror (RFC 6376 §3.5 x=).
var stalwartExpected = map[string]policy.Result{
	"001.txt": policy.ResultPass, "002.txt": policy.ResultPass, "003.txt": policy.ResultPass,
	"004.txt": policy.ResultPass, "005.txt": policy.ResultPermError, "006.txt": policy.ResultPass,
}

func TestStalwart(t *testing.T) {
	for file, want := range stalwartExpected {
		t.Run(file, func(t *testing.T) {
			srv, r := newDNS(t)
			b := strings.ReplaceAll(string(readFile(t, filepath.Join("testdata/stalwart", file))), "\r\n", "\n")
			dnsPart, msg, ok := strings.Cut(b, "\n\n")
			if !ok {
				t.Fatal("no blank line")
			}
			loadKeys(t, srv, dnsPart)
			got := Verify(context.Background(), r, bytes.NewReader(crlf([]byte(msg))), Options{})
			last := got.Signatures[len(got.Signatures)-1]
			if last.Result != want {
				t.Fatalf("last signature %s, want %s: %s", last.Result, want, results(got))
			}
		})
	}
}

type mailDKIMCase struct {
	want string // our result
	why  string // why it differs from Mail::DKIM's expectation, "" if it does not
}

// mailDKIMCases: our expected result for every Mail::DKIM corpus file, and,
// where it differs from EXPECTED.tsv's mail_dkim_expected (pass/fail/
// invalid/none), the reason. The test checks both.
var mailDKIMCases = map[string]mailDKIMCase{
	"bad_1.txt":           {"permerror", "RSA key < 1024 bits (RFC 8301 §3.2); pre-RFC draft signature without v=1 (RFC 6376 §3.5)"},
	"bad_1878954.txt":     {"permerror", "rsa-sha1 (RFC 8301 §3.1)"},
	"bad_dk_1.txt":        {"none", "DomainKey-Signature only: DomainKeys (RFC 4870) is not DKIM, the message is unsigned for RFC 6376"},
	"bad_dk_2.txt":        {"none", "DomainKey-Signature only: DomainKeys (RFC 4870) is not DKIM, the message is unsigned for RFC 6376"},
	"bad_dk_3.txt":        {"none", "DomainKey-Signature only: DomainKeys (RFC 4870) is not DKIM, the message is unsigned for RFC 6376"},
	"bad_dk_4.txt":        {"none", "DomainKey-Signature only: DomainKeys (RFC 4870) is not DKIM, the message is unsigned for RFC 6376"},
	"bad_dk_5.txt":        {"none", "DomainKey-Signature only: DomainKeys (RFC 4870) is not DKIM, the message is unsigned for RFC 6376"},
	"bad_ietf01_1.txt":    {"permerror", "RSA key < 1024 bits (RFC 8301 §3.2); pre-RFC draft signature without v=1 (RFC 6376 §3.5)"},
	"bad_ietf01_2.txt":    {"permerror", "RSA key < 1024 bits (RFC 8301 §3.2); pre-RFC draft signature without v=1 (RFC 6376 §3.5)"},
	"bad_ietf01_3.txt":    {"permerror", "RSA key < 1024 bits (RFC 8301 §3.2); pre-RFC draft signature without v=1 (RFC 6376 §3.5)"},
	"badkey1_ed25519.txt": {"permerror", ""},
	"badkey2_ed25519.txt": {"fail", ""},
	"badkey3_ed25519.txt": {"fail", ""},
	"badkey4_ed25519.txt": {"permerror", ""},
	"badkey5_ed25519.txt": {"permerror", ""},
	"badkey_1.txt":        {"permerror", ""},
	"badkey_10.txt":       {"permerror", ""},
	"badkey_11.txt":       {"permerror", ""},
	"badkey_12.txt":       {"permerror", ""},
	"badkey_13.txt":       {"permerror", ""},
	"badkey_14.txt":       {"temperror", "rsa-sha1 (RFC 8301 §3.1); DNS failure is temperror (RFC 6376 §6.1.2), Mail::DKIM says invalid"},
	"badkey_15.txt":       {"temperror", "rsa-sha1 (RFC 8301 §3.1); DNS failure is temperror (RFC 6376 §6.1.2), Mail::DKIM says invalid"},
	"badkey_2.txt":        {"permerror", ""},
	"badkey_3.txt":        {"permerror", ""},
	"badkey_4.txt":        {"permerror", ""},
	"badkey_5.txt":        {"permerror", ""},
	"badkey_6.txt":        {"permerror", ""},
	"badkey_7.txt":        {"permerror", ""},
	"badkey_8.txt":        {"permerror", ""},
	"badkey_9.txt":        {"permerror", ""},
	"dk_headers_1.txt":    {"none", "DomainKey-Signature only: DomainKeys (RFC 4870) is not DKIM, the message is unsigned for RFC 6376"},
	"dk_headers_2.txt":    {"none", "DomainKey-Signature only: DomainKeys (RFC 4870) is not DKIM, the message is unsigned for RFC 6376"},
	"dk_multiple_1.txt":   {"none", "DomainKey-Signature only: DomainKeys (RFC 4870) is not DKIM, the message is unsigned for RFC 6376"},
	"good_1878523.txt":    {"permerror", "rsa-sha1 (RFC 8301 §3.1); RSA key < 1024 bits (RFC 8301 §3.2)"},
	"good_83176.txt":      {"permerror", "rsa-sha1 (RFC 8301 §3.1)"},
	"good_dk_1.txt":       {"none", "DomainKey-Signature only: DomainKeys (RFC 4870) is not DKIM, the message is unsigned for RFC 6376"},
	"good_dk_2.txt":       {"none", "DomainKey-Signature only: DomainKeys (RFC 4870) is not DKIM, the message is unsigned for RFC 6376"},
	"good_dk_3.txt":       {"none", "DomainKey-Signature only: DomainKeys (RFC 4870) is not DKIM, the message is unsigned for RFC 6376"},
	"good_dk_4.txt":       {"none", "DomainKey-Signature only: DomainKeys (RFC 4870) is not DKIM, the message is unsigned for RFC 6376"},
	"good_dk_5.txt":       {"none", "DomainKey-Signature only: DomainKeys (RFC 4870) is not DKIM, the message is unsigned for RFC 6376"},
	"good_dk_6.txt":       {"none", "DomainKey-Signature only: DomainKeys (RFC 4870) is not DKIM, the message is unsigned for RFC 6376"},
	"good_dk_7.txt":       {"none", "DomainKey-Signature only: DomainKeys (RFC 4870) is not DKIM, the message is unsigned for RFC 6376"},
	"good_dk_gmail.txt":   {"none", "DomainKey-Signature only: DomainKeys (RFC 4870) is not DKIM, the message is unsigned for RFC 6376"},
	"good_dk_yahoo.txt":   {"none", "DomainKey-Signature only: DomainKeys (RFC 4870) is not DKIM, the message is unsigned for RFC 6376"},
	"good_ietf00_1.txt":   {"permerror", "rsa-sha1 (RFC 8301 §3.1); RSA key < 1024 bits (RFC 8301 §3.2); pre-RFC draft signature without v=1 (RFC 6376 §3.5)"},
	"good_ietf00_2.txt":   {"permerror", "rsa-sha1 (RFC 8301 §3.1); RSA key < 1024 bits (RFC 8301 §3.2); pre-RFC draft signature without v=1 (RFC 6376 §3.5)"},
	"good_ietf00_3.txt":   {"permerror", "rsa-sha1 (RFC 8301 §3.1); RSA key < 1024 bits (RFC 8301 §3.2); pre-RFC draft signature without v=1 (RFC 6376 §3.5)"},
	"good_ietf00_4.txt":   {"permerror", "rsa-sha1 (RFC 8301 §3.1); RSA key < 1024 bits (RFC 8301 §3.2); pre-RFC draft signature without v=1 (RFC 6376 §3.5)"},
	"good_ietf00_5.txt":   {"permerror", "rsa-sha1 (RFC 8301 §3.1); RSA key < 1024 bits (RFC 8301 §3.2); pre-RFC draft signature without v=1 (RFC 6376 §3.5)"},
	"good_ietf01_1.txt":   {"permerror", "RSA key < 1024 bits (RFC 8301 §3.2); pre-RFC draft signature without v=1 (RFC 6376 §3.5)"},
	"good_ietf01_2.txt":   {"permerror", "rsa-sha1 (RFC 8301 §3.1); RSA key < 1024 bits (RFC 8301 §3.2); pre-RFC draft signature without v=1 (RFC 6376 §3.5)"},
	"good_qp_1.txt":       {"permerror", "rsa-sha1 (RFC 8301 §3.1); RSA key < 1024 bits (RFC 8301 §3.2)"},
	"good_qp_2.txt":       {"permerror", "rsa-sha1 (RFC 8301 §3.1); RSA key < 1024 bits (RFC 8301 §3.2); i= not within d= (RFC 6376 §3.5)"},
	"good_qp_3.txt":       {"permerror", "rsa-sha1 (RFC 8301 §3.1); RSA key < 1024 bits (RFC 8301 §3.2); i= not within d= (RFC 6376 §3.5)"},
	"good_rfc4871_3.txt":  {"permerror", "rsa-sha1 (RFC 8301 §3.1); RSA key < 1024 bits (RFC 8301 §3.2)"},
	"good_rfc4871_4.txt":  {"permerror", "rsa-sha1 (RFC 8301 §3.1); RSA key < 1024 bits (RFC 8301 §3.2); i= not within d= (RFC 6376 §3.5)"},
	"goodkey_1.txt":       {"permerror", "rsa-sha1 (RFC 8301 §3.1); RSA key < 1024 bits (RFC 8301 §3.2)"},
	"goodkey_2.txt":       {"permerror", "rsa-sha1 (RFC 8301 §3.1); RSA key < 1024 bits (RFC 8301 §3.2)"},
	"goodkey_3.txt":       {"permerror", "rsa-sha1 (RFC 8301 §3.1); RSA key < 1024 bits (RFC 8301 §3.2)"},
	"goodkey_4.txt":       {"permerror", "rsa-sha1 (RFC 8301 §3.1); RSA key < 1024 bits (RFC 8301 §3.2)"},
	"goodkey_ed25519.txt": {"pass", ""},
	"ignore_1.txt":        {"permerror", ""},
	"ignore_2.txt":        {"permerror", ""},
	"ignore_3.txt":        {"permerror", ""},
	"ignore_4.txt":        {"permerror", ""},
	"ignore_5.txt":        {"permerror", ""},
	"ignore_6.txt":        {"permerror", ""},
	"ignore_7.txt":        {"permerror", ""},
	"ignore_8.txt":        {"permerror", ""},
	"mine_ietf01_1.txt":   {"permerror", "rsa-sha1 (RFC 8301 §3.1); pre-RFC draft signature without v=1 (RFC 6376 §3.5)"},
	"mine_ietf01_2.txt":   {"permerror", "rsa-sha1 (RFC 8301 §3.1); pre-RFC draft signature without v=1 (RFC 6376 §3.5)"},
	"mine_ietf01_3.txt":   {"permerror", "pre-RFC draft signature without v=1 (RFC 6376 §3.5)"},
	"mine_ietf01_4.txt":   {"permerror", "pre-RFC draft signature without v=1 (RFC 6376 §3.5)"},
	"mine_ietf05_1.txt":   {"permerror", "rsa-sha1 (RFC 8301 §3.1); pre-RFC draft signature without v=1 (RFC 6376 §3.5)"},
	"multiple_1.txt":      {"permerror", "RSA key < 1024 bits (RFC 8301 §3.2); pre-RFC draft signature without v=1 (RFC 6376 §3.5)"},
	"multiple_2.txt":      {"permerror", "rsa-sha1 (RFC 8301 §3.1); pre-RFC draft signature without v=1 (RFC 6376 §3.5); malformed tag-list (RFC 6376 §3.2)"},
	"no_body_1.txt":       {"permerror", "rsa-sha1 (RFC 8301 §3.1); pre-RFC draft signature without v=1 (RFC 6376 §3.5)"},
	"no_body_2.txt":       {"permerror", "rsa-sha1 (RFC 8301 §3.1); pre-RFC draft signature without v=1 (RFC 6376 §3.5)"},
	"no_body_3.txt":       {"permerror", "rsa-sha1 (RFC 8301 §3.1); pre-RFC draft signature without v=1 (RFC 6376 §3.5)"},
}

func TestMailDKIM(t *testing.T) {
	srv, r := newDNS(t)
	loadKeys(t, srv, string(readFile(t, "testdata/mail-dkim/FAKE_DNS.dat")))
	mdMap := map[string]string{"pass": "pass", "fail": "fail", "invalid": "permerror", "none": "none"}
	rows := strings.Split(strings.TrimSpace(string(readFile(t, "testdata/mail-dkim/EXPECTED.tsv"))), "\n")[1:]
	if len(rows) != len(mailDKIMCases) {
		t.Fatalf("%d rows, %d cases", len(rows), len(mailDKIMCases))
	}
	same, differ := 0, 0
	for _, row := range rows {
		f := strings.Split(row, "\t")
		file, md := f[0], mdMap[f[1]]
		c, ok := mailDKIMCases[file]
		if !ok {
			t.Errorf("%s: no case", file)
			continue
		}
		got := Verify(context.Background(), r, bytes.NewReader(readFile(t, "testdata/mail-dkim/corpus/"+file)), Options{})
		if string(got.Result) != c.want {
			t.Errorf("%s: got %s, want %s", file, results(got), c.want)
		}
		if (md != c.want) != (c.why != "") {
			t.Errorf("%s: Mail::DKIM says %s, we %s, reason %q", file, md, c.want, c.why)
		}
		if md == c.want {
			same++
		} else {
			differ++
		}
		if got.Result == policy.ResultPass && c.want != "pass" {
			t.Errorf("%s: pass", file)
		}
	}
	t.Logf("Mail::DKIM corpus: %d agree with Mail::DKIM, %d differ on purpose (reasons in mailDKIMCases)", same, differ)
}

// fakeResolver answers TXT from a map; err, if set, is returned for every
// TXT lookup. Other lookups are not made by DKIM and fail.
type fakeResolver struct {
	dnstest.Unsupported
	txt map[string]string
	err error
}

func (f fakeResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	if f.err != nil {
		return nil, f.err
	}
	if v, ok := f.txt[strings.TrimSuffix(name, ".")]; ok {
		return []string{v}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func rfc8463Keys(t testing.TB) map[string]string {
	m := map[string]string{}
	b, err := os.ReadFile("testdata/rfc8463/dns-records.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if name, v, ok := strings.Cut(line, " "); ok && !strings.HasPrefix(line, "#") {
			m[name] = v
		}
	}
	return m
}

func TestBadInput(t *testing.T) {
	signed := string(crlf(readFile(t, "testdata/rfc8463/signed-message.eml")))
	keys := rfc8463Keys(t)
	tests := []struct {
		name string
		msg  string
		r    dnsres.Resolver
		want policy.Result
	}{
		{"dns temporary failure", signed, fakeResolver{err: &net.DNSError{Err: "timeout", IsTimeout: true, IsTemporary: true}}, policy.ResultTempError},
		{"dns other error", signed, fakeResolver{err: errors.New("boom")}, policy.ResultTempError},
		{"no key", signed, fakeResolver{}, policy.ResultPermError},
		{"body changed", strings.Replace(signed, "Joe.", "Joe!", 1), fakeResolver{txt: keys}, policy.ResultFail},
		{"junk tags", "DKIM-Signature: v=1; a=rsa-sha256; ;;; x; ===; d=; s=\r\nFrom: a@b\r\n\r\nbody\r\n", fakeResolver{txt: keys}, policy.ResultPermError},
		{"huge key", "DKIM-Signature: v=1; a=rsa-sha256; d=x.test; s=s; h=from; bh=AA==; b=AA==\r\nFrom: a@x.test\r\n\r\n", fakeResolver{txt: map[string]string{"s._domainkey.x.test": "v=DKIM1; p=" + strings.Repeat("QUFB", 5000)}}, policy.ResultPermError},
		{"malformed key", "DKIM-Signature: v=1; a=rsa-sha256; d=x.test; s=s; h=from; bh=AA==; b=AA==\r\nFrom: a@x.test\r\n\r\n", fakeResolver{txt: map[string]string{"s._domainkey.x.test": "v=DKIM1; p=!!!"}}, policy.ResultPermError},
		{"l= tag, bad body hash", "DKIM-Signature: v=1; a=ed25519-sha256; d=football.example.com; s=brisbane; l=1; h=from; bh=AA==; b=AA==\r\nFrom: a@x.test\r\n\r\n", fakeResolver{txt: keys}, policy.ResultFail},
		{"l= tag malformed", "DKIM-Signature: v=1; a=ed25519-sha256; d=football.example.com; s=brisbane; l=-1; h=from; bh=AA==; b=AA==\r\nFrom: a@x.test\r\n\r\n", fakeResolver{txt: keys}, policy.ResultPermError},
		{"rsa-sha1", "DKIM-Signature: v=1; a=rsa-sha1; d=football.example.com; s=test; h=from; bh=AA==; b=AA==\r\nFrom: a@x.test\r\n\r\n", fakeResolver{txt: keys}, policy.ResultPermError},
		{"unsigned", "From: a@b\r\n\r\nhi\r\n", fakeResolver{}, policy.ResultNone},
		{"empty", "", fakeResolver{}, policy.ResultNone},
		{"header only", "DKIM-Signature: v=1; a=ed25519-sha256; d=football.example.com; s=brisbane; h=from; bh=AA==; b=AA==\r\nFrom: a@x.test", fakeResolver{txt: keys}, policy.ResultFail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Verify(context.Background(), tt.r, strings.NewReader(tt.msg), Options{})
			if got.Result != tt.want {
				t.Fatalf("got %s, want %s", results(got), tt.want)
			}
		})
	}
}

func TestMaxVerifications(t *testing.T) {
	signed := string(crlf(readFile(t, "testdata/rfc8463/signed-message.eml")))
	var extra strings.Builder
	for range 7 {
		extra.WriteString("DKIM-Signature: v=1; a=rsa-sha256; d=junk.test; s=x; h=from; bh=AA==; b=AA==\r\n")
	}
	got := Verify(context.Background(), fakeResolver{txt: rfc8463Keys(t)}, strings.NewReader(extra.String()+signed), Options{MaxVerifications: 3})
	if len(got.Signatures) != 9 {
		t.Fatalf("%d signatures", len(got.Signatures))
	}
	for _, s := range got.Signatures[3:] {
		if s.Result != policy.ResultNeutral {
			t.Errorf("%+v", s)
		}
	}
	if got.Result != policy.ResultPermError {
		t.Fatalf("got %s", results(got))
	}
}

func TestDNSFailureThroughResolver(t *testing.T) {
	srv, r := newDNS(t)
	srv.Fail("brisbane._domainkey.football.example.com", dns.TypeTXT, dnstest.ServFail)
	srv.Fail("test._domainkey.football.example.com", dns.TypeTXT, dnstest.Refused)
	got := Verify(context.Background(), r, bytes.NewReader(crlf(readFile(t, "testdata/rfc8463/signed-message.eml"))), Options{})
	if got.Result != policy.ResultTempError {
		t.Fatalf("got %s", results(got))
	}
}

type panicResolver struct{ fakeResolver }

func (panicResolver) LookupTXT(context.Context, string) ([]string, error) { panic("boom") }

func TestPanicIsTempError(t *testing.T) {
	// The panic happens inside go-msgauth's goroutine for multi-signature
	// messages; a single signature runs on our goroutine.
	msg := "DKIM-Signature: v=1; a=rsa-sha256; d=x.test; s=s; h=from; bh=AA==; b=AA==\r\nFrom: a@x.test\r\n\r\n"
	for _, m := range []string{msg, msg + msg} {
		got := Verify(context.Background(), panicResolver{}, strings.NewReader(strings.Replace(m, "\r\n\r\nDKIM", "\r\nDKIM", 1)), Options{})
		if got.Result != policy.ResultTempError {
			t.Fatalf("got %s", results(got))
		}
	}
}

func FuzzVerify(f *testing.F) {
	signed := crlf(readFile(f, "testdata/rfc8463/signed-message.eml"))
	f.Add(signed)
	f.Add([]byte("DKIM-Signature: v=1; a=rsa-sha256; d=x; s=s; h=from; bh=; b=\r\nFrom: a\r\n\r\n"))
	f.Add([]byte("DKIM-Signature:\r\n\r\n"))
	for _, name := range []string{"relaxed-whole.eml", "simple-part.eml"} {
		f.Add(readFile(f, "testdata/lengthtag/"+name))
	}
	keys := rfc8463Keys(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		got := Verify(context.Background(), fakeResolver{txt: keys}, bytes.NewReader(msg), Options{})
		if strings.Contains(results(got), "internal error") {
			t.Fatalf("panic: %s", results(got))
		}
		if got.Result == policy.ResultPass && !bytes.Contains(msg, []byte("football.example.com")) {
			t.Fatalf("pass without a known key: %s", results(got))
		}
	})
}

func FuzzParseTags(f *testing.F) {
	f.Add("v=1; a=rsa-sha256; d=example.org;\r\n s=sel; b=abc")
	f.Fuzz(func(t *testing.T, s string) {
		m := ParseTags(s)
		if len(m) > maxTags {
			t.Fatalf("%d tags", len(m))
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
	})
}

// TestSignatureTags: only DKIM-Signature fields count, whatever the case
// of the name or space before the colon; folded values are joined and
// stripped of white space; only the tags that label a result are kept
// (not v=, b=, bh=); the header section ends at the first blank line, with
// CRLF or bare LF.
func TestSignatureTags(t *testing.T) {
	tests := []struct {
		name, hdr string
		want      []map[string]string
	}{
		{"none", "From: a@example.org\r\nSubject: x\r\n\r\n", nil},
		{"one folded", "From: a@example.org\r\nDKIM-Signature: v=1; a=rsa-sha256;\r\n\td=example.org; s=sel;\r\n b=AB CD\r\nSubject: x\r\n\r\nbody DKIM-Signature: d=no\r\n",
			[]map[string]string{{"a": "rsa-sha256", "d": "example.org", "s": "sel"}}},
		{"case and space", "dkim-signature : d=a.example; s=1\r\nDKIM-SIGNATURE:d=b.example\r\n\r\n",
			[]map[string]string{{"d": "a.example", "s": "1"}, {"d": "b.example"}}},
		{"bare LF, no blank line", "X: y\nDKIM-Signature: d=c.example;\n i=@c.example", []map[string]string{{"d": "c.example", "i": "@c.example"}}},
		{"leading continuation", " DKIM-Signature: d=x\r\nDKIM-Signature: d=y\r\n", []map[string]string{{"d": "y"}}},
		{"not the name", "DKIM-Signatures: d=x\r\nX-DKIM-Signature: d=y\r\n", nil},
	}
	if got := ParseTags("v=1; a=rsa-sha256;\r\n\td=example.org; b=AB CD; d=dup"); !reflect.DeepEqual(got, map[string]string{"v": "1", "a": "rsa-sha256", "d": "example.org", "b": "ABCD"}) {
		t.Errorf("ParseTags: %v", got)
	}
	for _, tt := range tests {
		if got := signatureTags([]byte(tt.hdr)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}
