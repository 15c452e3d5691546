package verify

import "testing"

// The callahead asks the backend about the address delivery will send:
// its domain in A-label form (issue 27 item 4), so a backend without
// SMTPUTF8 is asked, and answers, about a mailbox with an ASCII local
// part; a non-ASCII local part still needs SMTPUTF8.
func TestCallaheadALabel(t *testing.T) {
	s := &sink{known: map[string]bool{"alice@xn--bcher-kva.example": true}}
	addr, _ := startSink(t, s, nil) // go-smtp's server: no SMTPUTF8 unless enabled
	v, _ := newTest(t, DefaultConfig(), callaheadRoutes(addr), nil)
	wantOutcome(t, check(t, v, client1, "alice@b\u00fccher.example"), 0, "")
	wantOutcome(t, check(t, v, client1, "carol@b\u00fccher.example"), 550, "5.1.1")
	wantOutcome(t, check(t, v, client1, "\u00e4lice@b\u00fccher.example"), 553, "5.6.7")
}
