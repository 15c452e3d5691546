package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// progressBar draws a one-line progress bar on a terminal (`moat learn`,
// `moat queue flush`); a nil *progressBar draws nothing, so callers need
// not check.
type progressBar struct {
	w     io.Writer
	total int
	last  time.Time
}

// progressRedraw is the least time between two redraws, but for the last.
const progressRedraw = 100 * time.Millisecond

// newProgressBar returns a bar of total steps on w when w is a terminal
// and off is false; nil otherwise.
func newProgressBar(w io.Writer, total int, off bool) *progressBar {
	if f, ok := w.(*os.File); ok && !off && term.IsTerminal(int(f.Fd())) {
		return &progressBar{w: w, total: total}
	}
	return nil
}

// draw shows done of total steps, then detail (a few counters, one line).
func (p *progressBar) draw(done int, detail string) {
	if p == nil || (time.Since(p.last) < progressRedraw && done < p.total) {
		return
	}
	p.last = time.Now()
	const width = 30
	n := width
	if p.total > 0 {
		n = min(width, max(0, done*width/p.total))
	}
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d  %s ", strings.Repeat("=", n), strings.Repeat(" ", width-n), done, p.total, detail)
}

// finish ends the bar's line.
func (p *progressBar) finish() {
	if p != nil {
		fmt.Fprintln(p.w)
	}
}
