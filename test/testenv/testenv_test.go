package testenv

import (
	"fmt"
	"testing"
	"time"
)

func TestLastCounter(t *testing.T) {
	for _, tc := range []struct {
		out  string
		key  string
		want int
	}{
		{"", "mesg=", 0},
		{"sess=1 quit=1 mesg=1\r", "mesg=", 1},
		{"sess=1 quit=0 mesg=1\rsess=2 quit=2 mesg=17\r", "mesg=", 17},
		{"sess=2 quit=2 mesg=17\r", "sess=", 2},
		{"mesg=", "mesg=", 0},
	} {
		if got := LastCounter([]byte(tc.out), tc.key); got != tc.want {
			t.Errorf("LastCounter(%q, %q) = %d, want %d", tc.out, tc.key, got, tc.want)
		}
	}
}

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
	if !WaitFor(time.Second, func() bool { return true }) {
		t.Error("WaitFor on a true condition reported false")
	}
}
