package spool

import (
	"bytes"
	"testing"
)

// Issue 27 item 1: the sender check round-trips, and a record written
// before the field existed reads as unchecked, which still gets notices.
func TestEnvelopeSenderCheck(t *testing.T) {
	old := []byte(`{"v":1,"id":"abc","sender":"x@far.example","recipients":[{"address":"a@b","route":"local","status":"pending"}],"received":"2026-01-02T03:04:05Z","size":10}`)
	env, err := ParseEnvelope(old)
	if err != nil || env.SenderCheck != SenderUnchecked || !env.SenderCheck.Verified() {
		t.Fatalf("old record: %+v, %v", env, err)
	}
	b, err := encodeEnvelope(env)
	if err != nil || bytes.Contains(b, []byte("sender_check")) {
		t.Fatalf("unchecked record %s, %v", b, err)
	}
	for _, c := range []SenderCheck{SenderSPF, SenderDMARC, SenderAuthenticated, SenderTrusted, SenderLocal, SenderUnverified} {
		env.SenderCheck = c
		b, err = encodeEnvelope(env)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseEnvelope(bytes.TrimSpace(b))
		if err != nil || back.SenderCheck != c {
			t.Fatalf("%q read back %+v, %v", c, back, err)
		}
		if back.SenderCheck.Verified() != (c != SenderUnverified) {
			t.Errorf("%q: Verified() = %v", c, back.SenderCheck.Verified())
		}
	}
	// An unknown value (a later version's) is kept and notified.
	if c := SenderCheck("arc"); !c.Verified() {
		t.Error("an unknown check withholds notices")
	}
}
