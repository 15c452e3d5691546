package spool

import (
	"bytes"
	"testing"
)

// The junk flag round-trips; records written before it existed read as
// not junk, and a record without junk does not write the field.
func TestEnvelopeJunk(t *testing.T) {
	old := []byte(`{"v":1,"id":"abc","sender":"","recipients":[{"address":"a@b","route":"local","status":"pending"}],"received":"2026-01-02T03:04:05Z","size":10}`)
	env, err := ParseEnvelope(old)
	if err != nil || env.Junk {
		t.Fatalf("old record: %+v, %v", env, err)
	}
	b, err := encodeEnvelope(env)
	if err != nil || bytes.Contains(b, []byte("junk")) {
		t.Fatalf("clean record %s, %v", b, err)
	}
	env.Junk = true
	b, err = encodeEnvelope(env)
	if err != nil || !bytes.Contains(b, []byte(`"junk":true`)) {
		t.Fatalf("junk record %s, %v", b, err)
	}
	back, err := ParseEnvelope(bytes.TrimSpace(b))
	if err != nil || !back.Junk {
		t.Fatalf("read back %+v, %v", back, err)
	}
}
