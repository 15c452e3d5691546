package dane

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"moat/relay/tlsrpt"
)

func TestVerify(t *testing.T) {
	root := makeCert(t, certSpec{cn: "Test Root", ca: true}, nil)
	inter := makeCert(t, certSpec{cn: "Test Intermediate", ca: true}, root)
	leaf := makeCert(t, certSpec{cn: "mx.example.org", dnsNames: []string{"mx.example.org"}}, inter)
	wild := makeCert(t, certSpec{cn: "wild", dnsNames: []string{"*.example.org"}}, inter)
	cnOnly := makeCert(t, certSpec{cn: "mx.example.org"}, inter)
	other := makeCert(t, certSpec{cn: "other", dnsNames: []string{"other.example.net"}}, inter)
	expired := makeCert(t, certSpec{cn: "old", dnsNames: []string{"mx.example.org"},
		notBefore: testNow.Add(-400 * 24 * time.Hour), notAfter: testNow.Add(-time.Hour)}, inter)
	self := makeCert(t, certSpec{cn: "self", dnsNames: []string{"self.example"}}, nil)
	stranger := makeCert(t, certSpec{cn: "Stranger CA", ca: true}, nil)

	names := []string{"mx.example.org"}
	chain := func(cs ...*testCert) []*x509.Certificate {
		var out []*x509.Certificate
		for _, c := range cs {
			out = append(out, c.cert)
		}
		return out
	}
	sec := func(recs ...Record) Result { return Result{Records: recs, Secure: true, Names: names} }
	bad := rec(3, 1, 1, self.cert)
	bad.Data[0] ^= 0xff

	tests := []struct {
		name  string
		res   Result
		chain []*x509.Certificate
		want  tlsrpt.ResultType // "" means success
	}{
		{"EE full cert", sec(rec(3, 0, 0, leaf.cert)), chain(leaf, inter), ""},
		{"EE full spki", sec(rec(3, 1, 0, leaf.cert)), chain(leaf), ""},
		{"EE cert sha256", sec(rec(3, 0, 1, leaf.cert)), chain(leaf), ""},
		{"EE spki sha256", sec(rec(3, 1, 1, leaf.cert)), chain(leaf), ""},
		{"EE cert sha512", sec(rec(3, 0, 2, leaf.cert)), chain(leaf), ""},
		{"EE spki sha512", sec(rec(3, 1, 2, leaf.cert)), chain(leaf), ""},
		{"EE self-signed, other name", sec(rec(3, 1, 1, self.cert)), chain(self), ""},
		{"EE expired still OK", sec(rec(3, 1, 1, expired.cert)), chain(expired), ""},
		{"EE mismatch", sec(bad), chain(self), tlsrpt.ValidationFailure},
		{"EE matches intermediate only", sec(rec(3, 1, 1, inter.cert)), chain(leaf, inter), tlsrpt.ValidationFailure},
		{"EE second record matches", sec(bad, rec(3, 0, 1, self.cert)), chain(self), ""},
		{"TA intermediate sha256", sec(rec(2, 0, 1, inter.cert)), chain(leaf, inter), ""},
		{"TA root in chain", sec(rec(2, 1, 1, root.cert)), chain(leaf, inter, root), ""},
		{"TA root spki full, not sent", sec(rec(2, 1, 0, root.cert)), chain(leaf, inter), ""},
		{"TA intermediate spki full, not sent", sec(rec(2, 1, 0, inter.cert)), chain(leaf), ""},
		{"TA root full cert, not sent", sec(rec(2, 0, 0, root.cert)), chain(leaf, inter), ""},
		{"TA root full cert, wrong name", sec(rec(2, 0, 0, root.cert)), chain(other, inter), tlsrpt.CertificateHostMismatch},
		{"TA stranger full cert, not sent", sec(rec(2, 0, 0, stranger.cert)), chain(leaf, inter), tlsrpt.ValidationFailure},
		{"TA root hash, not sent", sec(rec(2, 1, 1, root.cert)), chain(leaf, inter), tlsrpt.ValidationFailure},
		{"TA wildcard name", sec(rec(2, 0, 1, inter.cert)), chain(wild, inter), ""},
		{"TA common name only", sec(rec(2, 0, 1, inter.cert)), chain(cnOnly, inter), ""},
		{"TA wrong name", sec(rec(2, 0, 1, inter.cert)), chain(other, inter), tlsrpt.CertificateHostMismatch},
		{"TA expired leaf", sec(rec(2, 0, 1, inter.cert)), chain(expired, inter), tlsrpt.CertificateExpired},
		{"TA other CA", sec(rec(2, 0, 1, stranger.cert)), chain(leaf, inter, stranger), tlsrpt.ValidationFailure},
		{"TA leaf is no anchor", sec(rec(2, 0, 1, leaf.cert)), chain(leaf, inter), tlsrpt.ValidationFailure},
		{"PKIX-EE ignored", sec(rec(1, 0, 1, leaf.cert)), chain(leaf, inter), tlsrpt.TLSAInvalid},
		{"PKIX-TA ignored", sec(rec(0, 0, 1, root.cert)), chain(leaf, inter, root), tlsrpt.TLSAInvalid},
		{"sha256 of wrong length", sec(Record{3, 1, 1, rec(3, 1, 1, leaf.cert).Data[:31]}), chain(leaf), tlsrpt.TLSAInvalid},
		{"sha512 of sha256 length", sec(Record{3, 1, 2, rec(3, 1, 1, leaf.cert).Data}), chain(leaf), tlsrpt.TLSAInvalid},
		{"full cert that does not parse", sec(Record{3, 0, 0, []byte("not a certificate")}), chain(leaf), tlsrpt.TLSAInvalid},
		{"full key that does not parse", sec(Record{2, 1, 0, []byte{0x30, 0x00}}), chain(leaf, inter), tlsrpt.TLSAInvalid},
		{"empty full data", sec(Record{3, 1, 0, nil}), chain(leaf), tlsrpt.TLSAInvalid},
		{"unknown selector", sec(Record{3, 2, 1, rec(3, 1, 1, leaf.cert).Data}), chain(leaf), tlsrpt.TLSAInvalid},
		{"unknown matching type", sec(Record{3, 1, 3, rec(3, 1, 1, leaf.cert).Data}), chain(leaf), tlsrpt.TLSAInvalid},
		{"malformed next to good", sec(Record{3, 1, 1, []byte{1}}, rec(3, 1, 1, leaf.cert)), chain(leaf), ""},
		{"no certificate", sec(rec(3, 1, 1, leaf.cert)), nil, tlsrpt.ValidationFailure},
		{"insecure result", Result{Records: []Record{rec(3, 1, 1, leaf.cert)}}, chain(leaf), tlsrpt.ValidationFailure},
		{"unusable RRset: TLS without authentication", Result{Secure: true, Unusable: true}, chain(self), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.res, tc.chain, testNow)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v, want success", err)
				}
				return
			}
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("Verify: %v, want a *VerifyError of kind %s", err, tc.want)
			}
			if ve.Kind != tc.want {
				t.Fatalf("Verify: kind %s (%v), want %s", ve.Kind, err, tc.want)
			}
		})
	}
}
