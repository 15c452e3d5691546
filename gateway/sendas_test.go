package gateway

import (
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
)

// submitHeader logs in as alice (who may send as sales@) and submits a
// message with the given header lines; it returns the DATA reply error.
func submitHeader(t *testing.T, ts *testServer, header string) error {
	t.Helper()
	c := dialTLS(t, ts.addr)
	if err := c.Auth(sasl.NewPlainClient("", "alice@example.org", "correct horse")); err != nil {
		t.Fatal(err)
	}
	msg := header + "To: friend@far.example\r\nSubject: s\r\n\r\nhi\r\n"
	return c.SendMail("alice@example.org", []string{"friend@far.example"}, strings.NewReader(msg))
}

// Issue 27 item 8: every originator field an MUA shows (From, every
// address in it, Sender, Resent-From, Resent-Sender) is checked against
// the user's addresses (RFC 6409 §8.1), and so is an address in a display
// name, which an MUA may show instead of the real one.
func TestSendAsOriginatorFields(t *testing.T) {
	ts := startSubmission(t, &fakeLimiter{})
	refused := map[string]string{
		"display name":              "From: \"bob@example.org\" <alice@example.org>\r\n",
		"display name, unquoted":    "From: bob@example.org <alice@example.org>\r\n",
		"display name, angle":       "From: \"Bob <bob@example.org>\" <alice@example.org>\r\n",
		"display name, encoded":     "From: =?utf-8?q?bob=40example.org?= <alice@example.org>\r\n",
		"display name, fullwidth":   "From: \"bob\uff20example.org\" <alice@example.org>\r\n",
		"comment":                   "From: alice@example.org (bob@example.org)\r\n",
		"second From address":       "From: alice@example.org, bob@example.org\r\n",
		"Sender":                    "From: alice@example.org\r\nSender: bob@example.org\r\n",
		"Sender display name":       "From: alice@example.org\r\nSender: \"bob@example.org\" <alice@example.org>\r\n",
		"Resent-From":               "From: alice@example.org\r\nResent-From: bob@example.org\r\n",
		"Resent-Sender":             "From: alice@example.org\r\nResent-Sender: Bob <bob@example.org>\r\n",
		"second Sender":             "From: alice@example.org\r\nSender: alice@example.org\r\nSender: bob@example.org\r\n",
		"Sender unparsable":         "From: alice@example.org\r\nSender: <<bob@example.org\r\n",
		"later From after bad line": "From: alice@example.org\r\nnot a header line\r\nFrom: bob@example.org\r\n",
	}
	for name, h := range refused {
		if err := submitHeader(t, ts, h); !isReply(err, 550, "5.7.1") && !isReply(err, 554, "5.6.0") {
			t.Errorf("%s: %v, want refused", name, err)
		}
	}
	accepted := map[string]string{
		"plain":                  "From: Alice <alice@example.org>\r\n",
		"own address as name":    "From: \"alice@example.org\" <alice@example.org>\r\n",
		"alias in name":          "From: \"Sales (sales@example.org)\" <alice@example.org>\r\n",
		"Sender own":             "From: Sales <sales@example.org>\r\nSender: Alice <alice@example.org>\r\n",
		"Resent own":             "From: alice@example.org\r\nResent-From: alice@example.org\r\nResent-Sender: sales@example.org\r\n",
		"case":                   "From: ALICE@Example.ORG\r\n",
		"at sign without domain": "From: \"Alice @ work\" <alice@example.org>\r\n",
	}
	for name, h := range accepted {
		if err := submitHeader(t, ts, h); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Issue 27 item 7: a submitted message whose header holds a line that is
// no field is refused (RFC 5322 §2.2), 554 5.6.0.
func TestSubmissionRefusesMalformedHeader(t *testing.T) {
	ts := startSubmission(t, &fakeLimiter{})
	for _, bad := range []string{"no colon here\r\n", "Bad Name: x\r\n", " folded\r\n"} {
		h := "From: alice@example.org\r\n" + bad
		if bad[0] == ' ' {
			h = bad + "From: alice@example.org\r\n"
		}
		if err := submitHeader(t, ts, h); !isReply(err, 554, "5.6.0") {
			t.Errorf("%q: %v, want 554 5.6.0", bad, err)
		}
	}
}
