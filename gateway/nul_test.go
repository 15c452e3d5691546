package gateway

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"testing"

	"moat/internal/smtptest"
)

// TestNULInData (issue 27 item 6): with smtp.bare_line_endings: reject a
// message holding a NUL octet is refused with 550 5.6.0 after its final
// dot, by DATA and by BDAT, and nothing is spooled; with normalize the
// NUL is removed and the rest is spooled as sent.
func TestNULInData(t *testing.T) {
	const body = "Subject: x\r\n\r\na\x00b\r\n\x00\r\n"
	send := func(ts *testServer, bdat bool) (int, string) {
		rc := smtptest.DialRaw(t, ts.addr)
		rc.Expect("EHLO c.example", 250, "")
		rc.Expect("MAIL FROM:<s@far.example>", 250, "")
		rc.Expect("RCPT TO:<alice@example.org>", 250, "")
		if bdat {
			rc.Send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(body), body))
			return rc.Reply()
		}
		rc.Expect("DATA", 354, "")
		rc.Send(body)
		return rc.Cmd(".")
	}
	var mu sync.Mutex
	var counted []string
	count := func(o *Options) {
		o.Checks = &Checks{Smuggling: func(kind, action string) {
			mu.Lock()
			counted = append(counted, kind+"/"+action)
			mu.Unlock()
		}}
	}
	for _, bdat := range []bool{false, true} {
		ts := startServer(t, count)
		if code, text := send(ts, bdat); code != 550 || !bytes.Contains([]byte(text), []byte("5.6.0")) {
			t.Errorf("bdat=%v reject: %d %q, want 550 5.6.0", bdat, code, text)
		}
		if n := len(ts.spool.all()); n != 0 {
			t.Errorf("bdat=%v reject: %d messages spooled", bdat, n)
		}
		ts = startServer(t, func(o *Options) { count(o); o.SMTP.BareLineEndings = "normalize" })
		if code, text := send(ts, bdat); code != 250 {
			t.Fatalf("bdat=%v normalize: %d %q", bdat, code, text)
		}
		got := ts.spool.all()
		if len(got) != 1 || bytes.IndexByte(got[0].data, 0) >= 0 || !has(got[0].data, "\r\n\r\nab\r\n\r\n") {
			t.Errorf("bdat=%v normalize: spooled %d messages", bdat, len(got))
		}
	}
	// Counted once per message (moat_smuggling_total).
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"nul/rejected", "nul/normalized", "nul/rejected", "nul/normalized"}; !slices.Equal(counted, want) {
		t.Errorf("counted %q, want %q", counted, want)
	}
}
