package smtpd

import (
	"bytes"
	"strings"
	"testing"
	"testing/iotest"

	"moat/internal/reply"
	"moat/internal/smtptest"
)

// FuzzCommand: the command, path and parameter parsers never panic, and
// what they accept has the shape the loop relies on.
func FuzzCommand(f *testing.F) {
	for _, s := range smtptest.CommandSeeds(f, "../testdata/command-seeds.tsv") {
		f.Add(strings.TrimRight(s, "\r\n"))
	}
	f.Fuzz(func(t *testing.T, line string) {
		verb, arg, err := parseCommand(line)
		if err != nil {
			return
		}
		if verb != "" && verb != "STARTTLS" && (len(verb) != 4 || strings.ToUpper(verb) != verb) {
			t.Fatalf("verb %q from %q", verb, line)
		}
		if arg != strings.TrimSpace(arg) {
			t.Fatalf("argument %q not trimmed", arg)
		}
		var rest string
		switch verb {
		case "MAIL":
			r, ok := cutPrefixFold(arg, "FROM:")
			if !ok {
				return
			}
			p := pathParser{s: strings.TrimSpace(r)}
			if _, err := p.reversePath(); err != nil {
				return
			}
			rest = p.s
		case "RCPT":
			r, ok := cutPrefixFold(arg, "TO:")
			if !ok {
				return
			}
			p := pathParser{s: strings.TrimSpace(r)}
			addr, err := p.path(true)
			if err != nil {
				return
			}
			if addr == "" {
				t.Fatalf("empty recipient accepted from %q", line)
			}
			rest = p.s
		default:
			return
		}
		ps, err := parseParams(rest)
		if err != nil {
			return
		}
		if len(ps) > maxParams {
			t.Fatalf("%d parameters", len(ps))
		}
		for _, p := range ps {
			if !isKeyword(p.key) || strings.ToUpper(p.key) != p.key {
				t.Fatalf("keyword %q", p.key)
			}
		}
		opts, r := mailOptions(ps, 1<<20, true)
		if r == nil && (opts.Size < 0 || opts.Size > 1<<20) {
			t.Fatalf("size %d accepted", opts.Size)
		}
	})
}

// FuzzConn drives a whole connection from client bytes, with a session
// that accepts everything. The loop never panics, every line it writes
// is a reply line, and the bytes it writes do not depend on how the
// client's bytes were split into reads.
func FuzzConn(f *testing.F) {
	prefix := "EHLO c.example\r\nMAIL FROM:<s@far.example>\r\nRCPT TO:<alice@example.org>\r\n"
	for _, s := range smtptest.CommandSeeds(f, "../testdata/command-seeds.tsv") {
		f.Add([]byte(s))
		f.Add([]byte(prefix + s))
	}
	f.Add([]byte(prefix + "DATA\r\nSubject: x\r\n\r\n..hi\r\n.\r\nQUIT\r\n"))
	f.Add([]byte(prefix + "BDAT 5 LAST\r\nab\r\nc"))
	f.Add([]byte(prefix + "DATA\r\na\r\r\n.\r\nNOOP\r\n"))
	f.Add([]byte(prefix + "BDAT 3\r\nabcBDAT 0 LAST\r\n"))
	cfg := testConfig()
	cfg.MaxLineLength = 1000
	cfg.MaxMessageBytes = 4096
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 16<<10 {
			return
		}
		run := func(split bool) (string, []*fakeSession) {
			ts := &testServer{}
			ts.srv = New(cfg, func(c *Conn) (Session, error) {
				s := &fakeSession{}
				ts.ses = append(ts.ses, s)
				return s, nil
			}, nil)
			r := iotest.DataErrReader(bytes.NewReader(in))
			if split {
				r = iotest.OneByteReader(bytes.NewReader(in))
			}
			b := newByteConn(r)
			ts.conn(b).serve()
			return b.String(), ts.ses
		}
		whole, ses := run(false)
		for _, line := range strings.SplitAfter(whole, "\r\n") {
			if line == "" {
				continue
			}
			if len(line) < 6 || !strings.HasSuffix(line, "\r\n") || line[3] != ' ' && line[3] != '-' ||
				strings.IndexFunc(line[:3], func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
				t.Fatalf("bad reply line %q from %q", line, in)
			}
			// RFC 3463 §2: an enhanced code has the class of the code.
			w, _, _ := strings.Cut(line[4:], " ")
			if e, err := reply.ParseEnhanced(strings.TrimSuffix(w, "\r\n")); err == nil && e[0] != int(line[0]-'0') {
				t.Fatalf("reply line %q: enhanced code of another class", line)
			}
		}
		if strings.Contains(whole, "Internal server error") {
			t.Fatalf("panic on %q:\n%s", in, whole)
		}
		for _, s := range ses {
			for _, m := range s.msgs {
				if int64(len(m)) > cfg.MaxMessageBytes {
					t.Fatalf("message of %d bytes over the limit", len(m))
				}
			}
		}
		if split, _ := run(true); split != whole {
			t.Fatalf("output depends on read sizes for %q:\nwhole:\n%s\none byte at a time:\n%s", in, whole, split)
		}
	})
}
