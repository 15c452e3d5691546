package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"moat/relay/spool"
)

// What `moat queue show` and `moat quarantine show` print of a message
// itself: its header section, line by line, or with --body the whole
// message as stored (like Postfix's postcat).

// bodyMarker is the line after which `show --body` prints the stored
// message.
const bodyMarker = "message:"

// cleanHeader makes one header line safe for a terminal and keeps it
// readable: a tab (the usual folding white space, RFC 5322 §2.2.3) stays a
// tab, other control characters become '?', and the rest (UTF-8, RFC 6532;
// encoded words, RFC 2047, which are left as they are) is printed as it
// is; bytes that are not UTF-8 print as U+FFFD.
func cleanHeader(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' {
			return r
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}

// printHeaders prints a header section, one indented line per line;
// folded lines keep their leading white space.
func printHeaders(w io.Writer, headers string) {
	for _, line := range strings.Split(strings.TrimRight(headers, "\r\n"), "\n") {
		io.WriteString(w, "  "+cleanHeader(strings.TrimRight(line, "\r"))+"\n")
	}
}

// messageWriter is where the stored message goes: w itself (the exact
// bytes, for `> file.eml`), or, when w is a terminal, a writer that turns
// control characters other than tab, CR and LF into '?' so that a message
// cannot drive the terminal.
func messageWriter(w io.Writer) io.Writer {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return termSafe{w}
	}
	return w
}

type termSafe struct{ w io.Writer }

func (t termSafe) Write(p []byte) (int, error) {
	q := bytes.Map(func(r rune) rune {
		switch {
		case r == '\t', r == '\r', r == '\n':
			return r
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return '?'
		}
		return r
	}, p)
	if _, err := t.w.Write(q); err != nil {
		return 0, err
	}
	return len(p), nil
}

// printQuarantined prints why a quarantined message is there, when its
// envelope says (messages quarantined before moat stored the reason do
// not).
func printQuarantined(w io.Writer, e *spool.Envelope) {
	q := e.Quarantine
	if q == nil {
		return
	}
	fmt.Fprintf(w, "rule:         %s\n", clean(q.Rule))
	fmt.Fprintf(w, "score:        %.2f\n", q.Score)
	if q.Incident != "" {
		fmt.Fprintf(w, "incident:     %s (moat rules explain %s)\n", clean(q.Incident), clean(q.Incident))
	}
	if len(q.Facts) > 0 {
		fmt.Fprintln(w, "facts:")
		for _, f := range q.Facts {
			fmt.Fprintf(w, "  %s\n", clean(f))
		}
	}
}
