package smtptest

import (
	"errors"
	"testing"

	"moat/internal/reply"
)

// AsReply returns the *reply.Reply inside err and fails the test when
// there is none or it is not a valid reply (reply.Validate).
func AsReply(t testing.TB, err error) *reply.Reply {
	t.Helper()
	var r *reply.Reply
	if !errors.As(err, &r) {
		t.Fatalf("got %v, want a *reply.Reply", err)
	}
	if err := r.Validate(); err != nil {
		t.Fatalf("invalid reply %v: %v", r, err)
	}
	return r
}
