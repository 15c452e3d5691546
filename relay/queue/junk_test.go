package queue

import (
	"context"
	"strings"
	"testing"

	"moat/relay/spool"
)

// The envelope's junk flag reaches every transport of the message.
func TestJunkFlagCarried(t *testing.T) {
	h := newHarness(t, t.TempDir(), Options{})
	for _, junk := range []bool{true, false} {
		env := &spool.Envelope{ID: h.sp.NewID(), Sender: "s@far.example", Received: h.clk.Now(), Junk: junk,
			Recipients: []spool.Recipient{
				{Address: "alice@example.org", Route: "local", Status: spool.StatusPending},
				{Address: "x@far.example", Route: "mx", Status: spool.StatusPending},
			}}
		if err := h.sp.Put(context.Background(), env, strings.NewReader("Subject: x\r\n\r\nbody\r\n")); err != nil {
			t.Fatal(err)
		}
		h.attempt(env.ID)
	}
	for name, f := range map[string]*fake{"local": h.local, "mx": h.tr} {
		if len(f.junk) != 2 || !f.junk[0] || f.junk[1] {
			t.Errorf("%s transport saw junk %v", name, f.junk)
		}
	}
}
