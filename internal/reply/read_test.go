package reply

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		code  int
		lines []string
		enh   string
		err   error // ErrMalformed, io.EOF / io.ErrUnexpectedEOF, or nil
	}{
		{"one line", "220 hi\r\n", 220, []string{"hi"}, "", nil},
		{"bare LF", "550 5.1.1 no\n", 550, []string{"5.1.1 no"}, "5.1.1", nil},
		{"code only", "250\r\n", 250, []string{""}, "", nil},
		{"multi-line", "250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n", 250, []string{"mx.example", "PIPELINING", "SIZE 1000"}, "", nil},
		{"enhanced of another class", "451 5.1.1 wrong class\r\n", 451, []string{"5.1.1 wrong class"}, "", nil},
		{"empty continuation", "250-\n250 \n", 250, []string{"", ""}, "", nil},
		{"bad continuation separator", "250_x\r\n", 0, nil, "", ErrMalformed},
		{"bad separator after continuation", "250-a\r\n250xb\r\n", 0, nil, "", ErrMalformed},
		{"mismatched codes", "250-a\r\n251 b\r\n", 0, nil, "", ErrMalformed},
		{"mismatched class", "250-a\r\n550 b\r\n", 0, nil, "", ErrMalformed},
		{"short code", "25\r\n", 0, nil, "", ErrMalformed},
		{"letters", "abc def\r\n", 0, nil, "", ErrMalformed},
		{"sign", "+50 x\r\n", 0, nil, "", ErrMalformed},
		{"1yz", "150 x\r\n", 0, nil, "", ErrMalformed},
		{"6yz", "650 x\r\n", 0, nil, "", ErrMalformed},
		{"too long", "250 " + strings.Repeat("x", 1024) + "\r\n", 0, nil, "", ErrMalformed},
		{"too many lines", strings.Repeat("250-x\r\n", MaxLines) + "250 y\r\n", 0, nil, "", ErrMalformed},
		{"as many lines as allowed", strings.Repeat("250-x\r\n", MaxLines-1) + "250 y\r\n", 250, nil, "", nil},
		{"no line end", "250 ok", 0, nil, "", io.EOF},
		{"cut in a multi-line reply", "250-a\r\n", 0, nil, "", io.EOF},
		{"empty", "", 0, nil, "", io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Read(bufio.NewReaderSize(strings.NewReader(tt.in), 1024))
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("got %+v, %v; want %v", r, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Code != tt.code || (tt.lines != nil && strings.Join(r.Lines, "|") != strings.Join(tt.lines, "|")) {
				t.Fatalf("got %d %q, want %d %q", r.Code, r.Lines, tt.code, tt.lines)
			}
			e, ok := r.Enhanced()
			if got := e.String(); ok != (tt.enh != "") || got != tt.enh {
				t.Fatalf("Enhanced = %q %v, want %q", got, ok, tt.enh)
			}
		})
	}
}

func TestReadSequence(t *testing.T) {
	// Pipelined replies are read one at a time from one reader.
	br := bufio.NewReader(strings.NewReader("250 2.1.0 ok\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\n354 go\r\n"))
	var got []string
	for range 4 {
		r, err := Read(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
		got = append(got, r.String())
	}
	want := "250 2.1.0 ok|550 5.1.1 no / 5.1.1 such user|354 go"
	if strings.Join(got, "|") != want {
		t.Fatalf("got %q, want %q", strings.Join(got, "|"), want)
	}
}

func TestResponseKeywords(t *testing.T) {
	r, err := Read(bufio.NewReader(strings.NewReader("250-mx Hello\r\n250-pipelining\r\n250-SIZE 1000\r\n250 AUTH PLAIN LOGIN\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	k := r.Keywords()
	if len(k) != 3 || k["PIPELINING"] != "" || k["SIZE"] != "1000" || k["AUTH"] != "PLAIN LOGIN" {
		t.Fatalf("Keywords = %q", k)
	}
	if _, ok := k["MX"]; ok {
		t.Fatal("the greeting line is not a keyword")
	}
}

func TestResponseString(t *testing.T) {
	r := &Response{Code: 550, Lines: []string{"5.1.1 a\x00b", strings.Repeat("x", 400), "never"}}
	s := r.String()
	if !strings.HasPrefix(s, "550 5.1.1 ab / x") || !strings.HasSuffix(s, " …") || strings.Contains(s, "never") {
		t.Fatalf("String = %q", s)
	}
}

func FuzzRead(f *testing.F) {
	for _, s := range []string{"220 hi\r\n", "250-a\r\n250 b\r\n", "550 5.1.1 no such user\r\n", "220\n",
		"5", "250-\n250 \n", "999 x\r\n", "250-a\r\n251 b\r\n", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		br := bufio.NewReaderSize(strings.NewReader(in), 256)
		for range 10 {
			r, err := Read(br)
			if err != nil {
				return
			}
			if r.Code < 200 || r.Code > 599 || len(r.Lines) == 0 || len(r.Lines) > MaxLines {
				t.Fatalf("bad reply %+v from %q", r, in)
			}
			for _, l := range r.Lines {
				if len(l) > 256 || strings.ContainsAny(l, "\n") {
					t.Fatalf("bad line %q from %q", l, in)
				}
			}
			if e, ok := r.Enhanced(); ok && e[0] != r.Code/100 {
				t.Fatalf("enhanced %s of another class than %d", e, r.Code)
			}
			if s := r.String(); len(s) > 400 {
				t.Fatalf("String too long: %d", len(s))
			}
			r.Keywords()
		}
	})
}
