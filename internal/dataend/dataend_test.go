package dataend

import "testing"

// end returns how many bytes of b make the data, "." CRLF included, or
// -1 when b does not end it.
func end(b []byte) int {
	s := BeginLine
	for i, c := range b {
		if s = Next(s, c); s == End {
			return i + 1
		}
	}
	return -1
}

func TestNext(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
	}{
		{".\r\n", 3},
		{"a\r\n.\r\n", 6},
		{"a\r\n.\r\nMAIL", 6},
		{"a\n.\r\n", -1},          // a bare LF does not start a line
		{"a\n.\n", -1},            //
		{"a\r\n.\n", -1},          // nor does a dot end it without CR
		{"a\r\n..\r\n.\r\n", 10},  // dot-stuffed line first
		{"a\r\r\n.\r\n", 7},       // CR CR LF ends a line
		{"a\r\n.\r\r\n.\r\n", 10}, // ".\r\r\n" is a line of data
		{"a\r\n.x\r\n", -1},
		{"", -1},
	} {
		if got := end([]byte(tt.in)); got != tt.want {
			t.Errorf("%q: end at %d, want %d", tt.in, got, tt.want)
		}
	}
}

// reference finds the end by the rule itself: the first "." CRLF at the
// start of a line, a line starting at 0 or after CRLF.
func reference(b []byte) int {
	for p := 0; p+3 <= len(b); p++ {
		if (p == 0 || p >= 2 && b[p-2] == '\r' && b[p-1] == '\n') && b[p] == '.' && b[p+1] == '\r' && b[p+2] == '\n' {
			return p + 3
		}
	}
	return -1
}

// FuzzNext: the state machine ends the data where the rule does.
func FuzzNext(f *testing.F) {
	for _, s := range []string{".\r\n", "a\r\r\n.\r\n", "a\n.\r\n", ".\r\r\n.\r\n", "x\r\n..\r\n.\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := end(b), reference(b); got != want {
			t.Fatalf("%q: end at %d, want %d", b, got, want)
		}
	})
}
