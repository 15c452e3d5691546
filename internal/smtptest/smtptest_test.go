package smtptest

import (
	"fmt"
	"testing"
)

func TestMessageAndBody(t *testing.T) {
	for _, tc := range []struct {
		raw, id, body string
	}{
		{string(Message("a@x.test", "b@y.test", "id1@x.test", "hello\r\n")), "<id1@x.test>", "hello\r\n"},
		{"Subject: x\r\n\r\nno id\r\n", "", "no id\r\n"},
		{"Message-ID: <lf@x>\n\nbody\n", "<lf@x>", "body\n"},
	} {
		if got := MessageID([]byte(tc.raw)); got != tc.id {
			t.Errorf("MessageID(%q) = %q, want %q", tc.raw, got, tc.id)
		}
		if got := string(Body([]byte(tc.raw))); got != tc.body {
			t.Errorf("Body(%q) = %q, want %q", tc.raw, got, tc.body)
		}
	}
}

// TestSinkRecords: the recording sink counts each Message-ID it gets.
func TestSinkRecords(t *testing.T) {
	s := StartSink(t)
	for i, id := range []string{"a@t", "b@t", "a@t"} {
		msg := Message("s@t.test", "r@t.test", id, fmt.Sprintf("body %d\r\n", i))
		if err := Send(s.Addr, "s@t.test", []string{"r@t.test"}, msg); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Seen(); got["<a@t>"] != 2 || got["<b@t>"] != 1 || s.Count() != 2 {
		t.Errorf("Seen = %v, Count = %d", got, s.Count())
	}
}
