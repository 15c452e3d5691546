package verify

import (
	"bufio"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	tests := []struct {
		in    string
		code  int
		lines int
		enh   string
		err   bool
	}{
		{"250 ok\r\n", 250, 1, "", false},
		{"250\r\n", 250, 1, "", false},
		{"550 5.1.1 no\n", 550, 1, "5.1.1", false},
		{"250-a\r\n250-b\r\n250 c\r\n", 250, 3, "", false},
		{"451 5.1.1 wrong class\r\n", 451, 1, "", false},
		{"25\r\n", 0, 0, "", true},
		{"abc def\r\n", 0, 0, "", true},
		{"650 x\r\n", 0, 0, "", true},
		{"250-a\r\n251 b\r\n", 0, 0, "", true},
		{"250_x\r\n", 0, 0, "", true},
		{"250 ok", 0, 0, "", true}, // no line end: EOF
		{strings.Repeat("250-x\r\n", maxReplyLines+1) + "250 y\r\n", 0, 0, "", true},
		{"250 " + strings.Repeat("x", maxLine) + "\r\n", 0, 0, "", true},
	}
	for _, tt := range tests {
		r, err := readReply(bufio.NewReaderSize(strings.NewReader(tt.in), maxLine))
		if (err != nil) != tt.err {
			t.Errorf("%q: err %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if err != nil {
			continue
		}
		e, ok := r.enhanced()
		got := ""
		if ok {
			got = e.String()
		}
		if r.code != tt.code || len(r.lines) != tt.lines || got != tt.enh {
			t.Errorf("%q: got %d %d lines %q, want %d %d %q", tt.in, r.code, len(r.lines), got, tt.code, tt.lines, tt.enh)
		}
	}
}

func FuzzReadReply(f *testing.F) {
	f.Add("250-a\r\n250 b\r\n")
	f.Add("550 5.1.1 no such user\r\n")
	f.Add("220\n")
	f.Add("\x00\xff")
	f.Fuzz(func(t *testing.T, in string) {
		br := bufio.NewReaderSize(strings.NewReader(in), maxLine)
		for range 10 {
			r, err := readReply(br)
			if err != nil {
				return
			}
			if r.code < 200 || r.code > 599 || len(r.lines) == 0 || len(r.lines) > maxReplyLines {
				t.Fatalf("bad reply %+v", r)
			}
			r.enhanced()
			_ = r.text()
			keywords(r)
		}
	})
}
