package gateway

import (
	"bytes"
	"testing"

	"moat/policy/scanner"
)

func TestApplyHeaderChanges(t *testing.T) {
	const msg = "Subject: a\r\nReceived: one\r\n\tfolded\r\nReceived: two\r\nTo: b@c\r\n\r\nbody\r\nSubject: in body\r\n"
	add := func(n, v string) scanner.HeaderChange {
		return scanner.HeaderChange{Op: scanner.HeaderAdd, Name: n, Value: v}
	}
	ins := func(i int, n, v string) scanner.HeaderChange {
		return scanner.HeaderChange{Op: scanner.HeaderInsert, Index: i, Name: n, Value: v}
	}
	chg := func(i int, n, v string) scanner.HeaderChange {
		return scanner.HeaderChange{Op: scanner.HeaderReplace, Index: i, Name: n, Value: v}
	}
	tests := []struct {
		name    string
		in      string
		changes []scanner.HeaderChange
		want    string
	}{
		{"none", msg, nil, msg},
		{"add", msg, []scanner.HeaderChange{add("X-A", "1")},
			"Subject: a\r\nReceived: one\r\n\tfolded\r\nReceived: two\r\nTo: b@c\r\nX-A: 1\r\n\r\nbody\r\nSubject: in body\r\n"},
		{"insert first", msg, []scanner.HeaderChange{ins(0, "X-A", " 1")},
			"X-A: 1\r\nSubject: a\r\nReceived: one\r\n\tfolded\r\nReceived: two\r\nTo: b@c\r\n\r\nbody\r\nSubject: in body\r\n"},
		{"insert after folded", msg, []scanner.HeaderChange{ins(2, "X-A", "1")},
			"Subject: a\r\nReceived: one\r\n\tfolded\r\nX-A: 1\r\nReceived: two\r\nTo: b@c\r\n\r\nbody\r\nSubject: in body\r\n"},
		{"insert past end", msg, []scanner.HeaderChange{ins(99, "X-A", "1")},
			"Subject: a\r\nReceived: one\r\n\tfolded\r\nReceived: two\r\nTo: b@c\r\nX-A: 1\r\n\r\nbody\r\nSubject: in body\r\n"},
		{"change second", msg, []scanner.HeaderChange{chg(2, "received", "new")},
			"Subject: a\r\nReceived: one\r\n\tfolded\r\nreceived: new\r\nTo: b@c\r\n\r\nbody\r\nSubject: in body\r\n"},
		{"delete folded", msg, []scanner.HeaderChange{chg(1, "Received", "")},
			"Subject: a\r\nReceived: two\r\nTo: b@c\r\n\r\nbody\r\nSubject: in body\r\n"},
		{"change missing adds", msg, []scanner.HeaderChange{chg(1, "X-New", "v")},
			"Subject: a\r\nReceived: one\r\n\tfolded\r\nReceived: two\r\nTo: b@c\r\nX-New: v\r\n\r\nbody\r\nSubject: in body\r\n"},
		{"delete missing", msg, []scanner.HeaderChange{chg(3, "Received", "")}, msg},
		{"bad names ignored", msg, []scanner.HeaderChange{add("X A", "1"), add("X:A", "1"), add("", "1"), add("X-\xff", "1")}, msg},
		{"value folded and cleaned", msg, []scanner.HeaderChange{add("X-A", "a\r\nb\n\n\tc\x00")},
			"Subject: a\r\nReceived: one\r\n\tfolded\r\nReceived: two\r\nTo: b@c\r\nX-A: a\r\n\tb\r\n\tc\r\n\r\nbody\r\nSubject: in body\r\n"},
		{"no body", "Subject: a\r\n", []scanner.HeaderChange{add("X-A", "1")}, "Subject: a\r\nX-A: 1\r\n"},
		{"no final CRLF", "Subject: a", []scanner.HeaderChange{add("X-A", "1")}, "Subject: a\r\nX-A: 1\r\n"},
		{"empty header", "\r\nbody\r\n", []scanner.HeaderChange{add("X-A", "1")}, "X-A: 1\r\n\r\nbody\r\n"},
		{"8-bit value kept", msg, []scanner.HeaderChange{chg(1, "Subject", "caf\xc3\xa9 \xff")},
			"Subject: caf\xc3\xa9 \xff\r\nReceived: one\r\n\tfolded\r\nReceived: two\r\nTo: b@c\r\n\r\nbody\r\nSubject: in body\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			orig := bytes.Clone(in)
			if got := string(ApplyHeaderChanges(in, tt.changes)); got != tt.want {
				t.Fatalf("got\n%q\nwant\n%q", got, tt.want)
			}
			if !bytes.Equal(in, orig) {
				t.Fatal("input changed in place")
			}
		})
	}
}

// FuzzApplyHeaderChanges: whatever a milter asks, the body is unchanged,
// no empty line appears inside the header, and the growth is bounded.
func FuzzApplyHeaderChanges(f *testing.F) {
	f.Add([]byte("Subject: a\r\nTo: b\r\n\r\nbody\r\n"), uint8(0), 0, "X-A", "v")
	f.Add([]byte("Subject: a\r\n\tfold\r\n\r\n"), uint8(1), 1, "Subject", "")
	f.Add([]byte("\r\nbody"), uint8(2), 5, "To", "a\nb\r\n\r\nc")
	f.Add([]byte("no colon line\r\nx"), uint8(2), -3, "X", "\x00")
	f.Fuzz(func(t *testing.T, raw []byte, op uint8, index int, name, value string) {
		c := scanner.HeaderChange{Op: scanner.HeaderOp(op % 3), Index: index, Name: name, Value: value}
		out := ApplyHeaderChanges(raw, []scanner.HeaderChange{c, c})
		_, rest := splitHeader(raw)
		if !bytes.HasSuffix(out, rest) {
			t.Fatalf("body changed: %q -> %q", raw, out)
		}
		head := out[:len(out)-len(rest)]
		if bytes.Contains(head, []byte("\r\n\r\n")) || bytes.HasPrefix(head, []byte("\r\n")) && len(head) > 2 {
			t.Fatalf("empty line inside the header: %q", head)
		}
		if len(out) > len(raw)+2*(maxChangeNameLen+maxChangeValueLen*2+16)+2 {
			t.Fatalf("grew too much: %d -> %d", len(raw), len(out))
		}
	})
}
