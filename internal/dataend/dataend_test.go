package dataend

import (
	"bytes"
	"testing"
)

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

func TestIndexLineEnd(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
	}{
		{"", -1},
		{"abc", -1},
		{"abc\r\n", 3},
		{"abc\n", 3},
		{"a\rb\n", 1},
		{"ab\nc\r", 2},
		{"\r", 0},
		{"\n\r", 0},
	} {
		if got := IndexLineEnd([]byte(tt.in)); got != tt.want {
			t.Errorf("%q: %d, want %d", tt.in, got, tt.want)
		}
	}
}

// FuzzIndexLineEnd: the same answer as bytes.IndexAny(b, "\r\n").
func FuzzIndexLineEnd(f *testing.F) {
	for _, s := range []string{"", "a\r\n", "a\nb\r", "a\rb\n", "\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := IndexLineEnd(b), bytes.IndexAny(b, "\r\n"); got != want {
			t.Fatalf("%q: %d, want %d", b, got, want)
		}
	})
}

// message is 2 KB of 70-character lines, as the relay benchmark sends.
var message = bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqr\r\n"), 29)

func scanLines(b []byte, index func([]byte) int) int {
	n := 0
	for {
		i := index(b)
		if i < 0 {
			return n
		}
		n++
		b = b[i+1:]
	}
}

// BenchmarkLineEnds: IndexLineEnd against bytes.IndexAny over a message.
func BenchmarkLineEnds(b *testing.B) {
	b.Run("IndexLineEnd", func(b *testing.B) {
		for b.Loop() {
			scanLines(message, IndexLineEnd)
		}
	})
	b.Run("IndexAny", func(b *testing.B) {
		for b.Loop() {
			scanLines(message, func(p []byte) int { return bytes.IndexAny(p, "\r\n") })
		}
	})
}
