package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"moat/ops/admin"
)

// `moat queue flush` of everything waits, by default, for the flushed
// messages' attempts (the daemon's POST /api/queue/flush?wait=) and says
// what became of their recipients, with a progress bar on a terminal.

// defaultFlushWait is --wait's default.
const defaultFlushWait = 60 * time.Second

type flushOpts struct {
	wait       time.Duration
	noProgress bool
}

func (t *queueTarget) flushAllWait(ctx context.Context, stdout, stderr io.Writer, o flushOpts) error {
	var bar *progressBar
	phase, step := "", 0
	last, err := t.client.FlushAllWait(ctx, o.wait, func(st admin.FlushStatus) {
		if st.Phase != phase { // one bar per phase: scheduling, then attempts
			bar.finish()
			phase = st.Phase
			total := st.Total
			if phase == "wait" {
				total = st.Wait.Messages
			}
			bar = newProgressBar(stderr, total, o.noProgress)
		}
		switch {
		case bar != nil && phase == "flush":
			bar.draw(st.Flushed+st.Held+st.Failed, fmt.Sprintf("scheduled %d  held %d", st.Flushed, st.Held))
		case bar != nil:
			w := st.Wait
			bar.draw(w.Messages-w.Waiting, fmt.Sprintf("delivered %d  deferred %d  bounced %d", w.Delivered, w.Deferred, w.Bounced))
		case phase == "flush" && !st.Done:
			// Not a terminal: the lines `moat queue flush --wait 0` prints.
			fmt.Fprintf(stderr, "flushed %d/%d\n", st.Flushed+st.Held+st.Failed, st.Total)
		case phase == "wait" && step == 0:
			step++
			fmt.Fprintf(stderr, "scheduled %d/%d, waiting up to %s for the attempts\n", st.Flushed, st.Total, o.wait)
		}
	})
	bar.finish()
	if err != nil {
		return queueError("flush", err)
	}
	fmt.Fprintln(stdout, flushSummary(last))
	return nil
}

// flushSummary is the last line of a waiting flush, for the operator.
func flushSummary(st *admin.FlushStatus) string {
	w := st.Wait
	var b strings.Builder
	fmt.Fprintf(&b, "done: flushed %d/%d, %d held, %d failed; attempted %d/%d: %d delivered, %d deferred, %d bounced (recipients)",
		st.Flushed, st.Total, st.Held, st.Failed, w.Attempted, w.Messages, w.Delivered, w.Deferred, w.Bounced)
	if w.Failed > 0 {
		fmt.Fprintf(&b, ", %d attempt(s) failed (see the daemon's log)", w.Failed)
	}
	if w.Removed+w.Held > 0 {
		fmt.Fprintf(&b, ", %d deleted or held meanwhile", w.Removed+w.Held)
	}
	if st.TimedOut {
		fmt.Fprintf(&b, "; %d still under way after --wait", w.Waiting)
	}
	return b.String()
}
