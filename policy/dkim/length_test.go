package dkim

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"

	msgauth "github.com/emersion/go-msgauth/dkim"

	"moat/policy"
)

// TestBodyLengthTag covers issue 23 item 6 (RFC 6376 §3.5 l=, §8.2): a
// signature whose l= covers the whole (canonicalized) body is a pass, as
// dkimpy, OpenDKIM and Mail::DKIM agree; content after the l= count is
// unsigned: the result is policy, with UnsignedBytes saying how much. The
// messages in testdata/lengthtag were signed by Mail::DKIM (see
// SOURCES.md), not by this package.
func TestBodyLengthTag(t *testing.T) {
	keys := rfc8463Keys(t)
	const ad = "Click here: https://evil.example/\r\n"
	tests := []struct {
		name     string
		file     string
		edit     func(string) string
		want     policy.Result
		unsigned int64
	}{
		{"relaxed l= whole body", "relaxed-whole.eml", nil, policy.ResultPass, 0},
		{"simple l= whole body", "simple-whole.eml", nil, policy.ResultPass, 0},
		{"relaxed whole body, trailing empty lines added", "relaxed-whole.eml", func(m string) string { return m + "\r\n\r\n" }, policy.ResultPass, 0},
		{"relaxed whole body, content appended", "relaxed-whole.eml", func(m string) string { return m + ad }, policy.ResultPolicy, int64(len(ad)) + 2}, // the empty line before it is no longer trailing
		{"simple whole body, content appended", "simple-whole.eml", func(m string) string { return m + ad }, policy.ResultPolicy, int64(len(ad)) + 2},   // simple keeps the empty line before it
		{"relaxed l=20 of 54", "relaxed-part.eml", nil, policy.ResultPolicy, 34},
		{"simple l=20 of 55", "simple-part.eml", nil, policy.ResultPolicy, 35},
		{"relaxed l= beyond the body", "relaxed-overlong.eml", nil, policy.ResultFail, 0},
		{"signed part changed", "relaxed-whole.eml", func(m string) string { return strings.Replace(m, "Hi.", "Ho.", 1) }, policy.ResultFail, 0},
		{"signed header changed", "relaxed-whole.eml", func(m string) string { return strings.Replace(m, "dinner", "lunch", 1) }, policy.ResultFail, 0},
		{"unsigned part changed", "relaxed-part.eml", func(m string) string { return strings.Replace(m, "Joe.", "Eve.", 1) }, policy.ResultPolicy, 34},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := string(readFile(t, "testdata/lengthtag/"+tt.file))
			if tt.edit != nil {
				msg = tt.edit(msg)
			}
			got := Verify(context.Background(), fakeResolver{txt: keys}, strings.NewReader(msg), Options{})
			if got.Result != tt.want || len(got.Signatures) != 1 || got.Signatures[0].UnsignedBytes != tt.unsigned {
				t.Fatalf("got %s %+v, want %s with %d unsigned bytes", results(got), got.Signatures, tt.want, tt.unsigned)
			}
			if got.UnsignedBytes() != tt.unsigned {
				t.Errorf("DKIM.UnsignedBytes() = %d, want %d", got.UnsignedBytes(), tt.unsigned)
			}
		})
	}
}

// FuzzBodyCanonicalization compares the streaming body canonicalization
// of l= verification with go-msgauth's, through the body hash its signer
// writes: for every body the two must agree, with l= the whole length.
func FuzzBodyCanonicalization(f *testing.F) {
	for _, s := range []string{"", "\r\n", "a\r\n\r\n\r\n", "a  b \t\r\n \r\nc", "x\ry\r\n\r", "\n\nz\n", " \t\r\n\r\n"} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	f.Fuzz(func(t *testing.T, body []byte, relaxed bool) {
		can := msgauth.CanonicalizationSimple
		if relaxed {
			can = msgauth.CanonicalizationRelaxed
		}
		var out bytes.Buffer
		msg := append([]byte("From: a@x.test\r\n\r\n"), body...)
		err := msgauth.Sign(&out, bytes.NewReader(msg), &msgauth.SignOptions{Domain: "x.test", Selector: "s", Signer: key, BodyCanonicalization: can, HeaderKeys: []string{"From"}})
		if err != nil {
			t.Skip(err)
		}
		sig, _, _ := strings.Cut(out.String(), "\r\nFrom:")
		want := ParseTags(strings.TrimPrefix(sig, "DKIM-Signature:"))["bh"]
		h := sha256.New()
		n := int64(0)
		c := bodyCanonicalizer{relaxed: relaxed, out: func(b []byte) { h.Write(b); n += int64(len(b)) }}
		c.Write(body)
		c.Close()
		if got := base64.StdEncoding.EncodeToString(h.Sum(nil)); got != want {
			t.Fatalf("body %q relaxed=%v: our body hash %s, go-msgauth %s", body, relaxed, got, want)
		}
	})
}
