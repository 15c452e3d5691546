package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"moat/relay/queue"
	"moat/relay/spool"
)

// POST /api/queue/flush?wait=D flushes every message not held, as
// without wait, and then waits up to D (at most MaxFlushWait) for each
// flushed message's attempt to end, so that `moat queue flush` can say
// how many recipients were delivered, deferred or bounced, not only how
// many messages were scheduled. The answer is one JSON object per line
// (FlushStatus): progress while flushing and waiting, the last one with
// Done set.

// MaxFlushWait bounds ?wait= of a flush of everything.
const MaxFlushWait = 10 * time.Minute

// flushWaitTick is how often a waiting flush reports its progress.
const flushWaitTick = 500 * time.Millisecond

// FlushStatus is one line of a waiting flush's answer.
type FlushStatus struct {
	Phase string `json:"phase"` // "flush", then "wait"
	Done  bool   `json:"done,omitempty"`
	// The flush: messages listed, scheduled, held (not flushed) and
	// failed to schedule.
	Total   int `json:"total"`
	Flushed int `json:"flushed"`
	Held    int `json:"held"`
	Failed  int `json:"failed"`
	// The wait: the queue's count of the flushed messages' attempts.
	Wait queue.Progress `json:"wait"`
	// TimedOut: the last line came when ?wait= ran out, with messages
	// still waiting for their attempt.
	TimedOut bool `json:"timed_out,omitempty"`
}

// Watcher is what a QueueAPI offers to follow flushed messages; without
// it a flush cannot wait.
type Watcher interface {
	Watch(ids []string) *queue.Watch
}

func (q *queueOf) Watch(ids []string) *queue.Watch { return q.m.Watch(ids) }

// flushWait reads ?wait=; ok false has answered 400.
func flushWait(w http.ResponseWriter, r *http.Request) (time.Duration, bool) {
	v := r.URL.Query().Get("wait")
	if v == "" {
		return 0, true
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > MaxFlushWait {
		http.Error(w, fmt.Sprintf("400 wait must be a duration from 0s to %s", MaxFlushWait), http.StatusBadRequest)
		return 0, false
	}
	return d, true
}

// flushAllWait serves a flush of everything with ?wait=.
func (s *Server) flushAllWait(w http.ResponseWriter, r *http.Request, q QueueAPI, envs []*spool.Envelope, wait time.Duration) {
	wq, ok := q.(Watcher)
	if !ok {
		http.Error(w, "501 this queue cannot report outcomes", http.StatusNotImplemented)
		return
	}
	ids := make([]string, len(envs))
	for i, env := range envs {
		ids[i] = env.ID
	}
	watch := wq.Watch(ids) // before the flushes, so no attempt ends unseen
	defer watch.Stop()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	st := FlushStatus{Phase: "flush", Total: len(envs)}
	send := func() bool {
		_ = rc.SetWriteDeadline(time.Now().Add(WriteTimeout))
		if enc.Encode(st) != nil {
			return false
		}
		return rc.Flush() == nil
	}
	step := max(1, len(envs)/progressLines)
	for i, env := range envs {
		if r.Context().Err() != nil {
			return
		}
		switch err := q.Flush(env.ID); {
		case err == nil:
			st.Flushed++
		case errors.Is(err, queue.ErrHeld):
			st.Held++
			watch.Forget(env.ID)
		case errors.Is(err, spool.ErrNotFound): // delivered meanwhile
			watch.Forget(env.ID)
		default:
			st.Failed++
			watch.Forget(env.ID)
			s.log.Warn("admin flush failed", zap.String("queue_id", env.ID), zap.Error(err))
		}
		if (i+1)%step == 0 && i+1 < len(envs) && !send() {
			return
		}
	}
	st.Phase = "wait"
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	tick := time.NewTicker(flushWaitTick)
	defer tick.Stop()
	for {
		st.Wait = watch.Progress()
		select {
		case <-watch.Done():
			st.Wait, st.Done = watch.Progress(), true
			send()
			return
		case <-ctx.Done():
			if r.Context().Err() != nil {
				return
			}
			st.Wait, st.Done, st.TimedOut = watch.Progress(), true, true
			send()
			return
		case <-tick.C:
			if !send() {
				return
			}
		}
	}
}

// FlushAllWait flushes every message and waits up to wait for their
// attempts; progress gets every status line, the last one Done. It
// returns the last.
func (c *Client) FlushAllWait(ctx context.Context, wait time.Duration, progress func(FlushStatus)) (*FlushStatus, error) {
	resp, err := c.do(ctx, http.MethodPost, "/api/queue/flush?wait="+wait.String())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-ndjson") {
		return nil, errors.New("admin API: this daemon cannot wait for a flush (upgrade it, or use --wait 0)")
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 512), maxLine)
	var last *FlushStatus
	for sc.Scan() {
		var st FlushStatus
		if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
			return last, fmt.Errorf("admin API: bad answer: %w", err)
		}
		last = &st
		if progress != nil {
			progress(st)
		}
	}
	if err := sc.Err(); err != nil {
		return last, fmt.Errorf("admin API: flush interrupted: %w", err)
	}
	if last == nil || !last.Done {
		return last, errors.New("admin API: flush interrupted before it finished")
	}
	return last, nil
}
