package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"moat/relay/queue"
	"moat/relay/spool"
)

// Limits of the queue API.
const (
	// DefaultListLimit and MaxListLimit bound GET /api/queue (?limit=N).
	DefaultListLimit = 1000
	MaxListLimit     = 100000
	// MaxListRecipients is how many recipients one list entry names.
	MaxListRecipients = 20
	// MaxShowHeaderBytes bounds the header section GET /api/queue/{id} returns.
	MaxShowHeaderBytes = 64 << 10
	// progressLines is about how many "flushed N/M" lines a flush of all
	// writes (plus the last).
	progressLines = 100
)

// QueueAPI is what the admin API needs of the queue: the spool's
// listing and message bytes, and the queue manager's operator commands.
type QueueAPI interface {
	List() ([]*spool.Envelope, error)
	Sample(n int) ([]*spool.Envelope, error)
	Get(id string) (*spool.Envelope, error)
	Open(id string) (io.ReadCloser, error)
	Flush(id string) error
	Hold(id string) error
	Release(id string) error
	Delete(id string) error
	Stats() queue.Stats
}

// QueueOf joins a spool and its queue manager into a QueueAPI.
func QueueOf(sp *spool.Spool, m *queue.Manager) QueueAPI { return &queueOf{sp, m} }

type queueOf struct {
	*spool.Spool
	m *queue.Manager
}

func (q *queueOf) Flush(id string) error   { return q.m.Flush(id) }
func (q *queueOf) Hold(id string) error    { return q.m.Hold(id) }
func (q *queueOf) Release(id string) error { return q.m.Release(id) }
func (q *queueOf) Delete(id string) error  { return q.m.Delete(id) }
func (q *queueOf) Stats() queue.Stats      { return q.m.Stats() }

// Message is one entry of GET /api/queue.
type Message struct {
	ID          string    `json:"id"`
	Received    time.Time `json:"received"`
	AgeSeconds  int64     `json:"age_seconds"`
	State       string    `json:"state"` // held, deferred, queued
	Sender      string    `json:"sender"`
	Recipients  []string  `json:"recipients"` // pending ones first, at most MaxListRecipients
	RcptCount   int       `json:"recipient_count"`
	Pending     int       `json:"pending"`
	Size        int64     `json:"size"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	Client      string    `json:"client,omitempty"` // the client's IP address
	// Rule is, in the quarantine, the rule that quarantined the message
	// (none for messages quarantined before moat stored it).
	Rule string `json:"rule,omitempty"`
}

// List is the answer of GET /api/queue.
type List struct {
	Total     int       `json:"total"`
	Truncated bool      `json:"truncated,omitempty"`
	Messages  []Message `json:"messages"`
}

// Detail is the answer of GET /api/queue/{id}.
type Detail struct {
	Envelope         *spool.Envelope `json:"envelope"`
	State            string          `json:"state"`
	Headers          string          `json:"headers"`
	HeadersTruncated bool            `json:"headers_truncated,omitempty"`
}

// State names the state of a spooled message: held, deferred (tried
// before) or queued (not tried yet).
func State(env *spool.Envelope) string {
	switch {
	case env.Held:
		return "held"
	case env.Attempts > 0:
		return "deferred"
	}
	return "queued"
}

// SummarizeAll turns a listing into a List of at most limit entries; a
// state other than "" is every message's (the quarantine's).
func SummarizeAll(envs []*spool.Envelope, limit int, now time.Time, state string) *List {
	out := &List{Total: len(envs), Messages: make([]Message, 0, min(len(envs), limit))}
	for _, env := range envs {
		if len(out.Messages) == limit {
			out.Truncated = true
			break
		}
		m := Summarize(env, now)
		if state != "" {
			m.State = state
		}
		out.Messages = append(out.Messages, m)
	}
	return out
}

// Summarize turns an envelope into a list entry as of now.
func Summarize(env *spool.Envelope, now time.Time) Message {
	m := Message{
		ID: env.ID, Received: env.Received, AgeSeconds: int64(now.Sub(env.Received) / time.Second),
		State: State(env), Sender: env.Sender, RcptCount: len(env.Recipients), Size: env.Size,
		Attempts: env.Attempts, NextAttempt: env.NextAttempt, LastError: env.LastError, Client: env.ClientIP,
	}
	if env.Quarantine != nil {
		m.Rule = env.Quarantine.Rule
	}
	for pass := 0; pass < 2; pass++ { // pending recipients first
		for _, r := range env.Recipients {
			if (r.Status == spool.StatusPending) != (pass == 0) {
				continue
			}
			if pass == 0 {
				m.Pending++
			}
			if len(m.Recipients) < MaxListRecipients {
				m.Recipients = append(m.Recipients, r.Address)
			}
		}
	}
	if m.LastError == "" {
		for _, r := range env.Recipients {
			if r.Status == spool.StatusPending && r.LastError != "" {
				m.LastError = r.LastError
				break
			}
		}
	}
	return m
}

// ReadHeaders returns the header section of a message (up to the blank
// line, RFC 5322 §2.1), at most max bytes.
func ReadHeaders(r io.Reader, max int) (string, bool, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return "", false, err
	}
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		return string(b[:i+2]), false, nil
	}
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		return string(b[:i+1]), false, nil
	}
	if len(b) > max {
		return string(b[:max]), true, nil
	}
	return string(b), false, nil
}

func (s *Server) queueAPI(w http.ResponseWriter) (QueueAPI, bool) {
	if s.opt.Queue == nil {
		http.Error(w, "503 the queue is not available", http.StatusServiceUnavailable)
		return nil, false
	}
	return s.opt.Queue, true
}

// listLimit reads ?limit=N (1 to MaxListLimit, default DefaultListLimit)
// of the list endpoints; on a bad value it has answered 400.
func listLimit(w http.ResponseWriter, r *http.Request) (int, bool) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return DefaultListLimit, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxListLimit {
		http.Error(w, fmt.Sprintf("400 limit must be 1 to %d", MaxListLimit), http.StatusBadRequest)
		return 0, false
	}
	return n, true
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	if q, ok := s.queueAPI(w); ok {
		s.writeList(w, r, q.List, "")
	}
}

// writeList answers a listing (?limit=N) of what list returns; state as
// for SummarizeAll.
func (s *Server) writeList(w http.ResponseWriter, r *http.Request, list func() ([]*spool.Envelope, error), state string) {
	limit, ok := listLimit(w, r)
	if !ok {
		return
	}
	envs, err := list()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, SummarizeAll(envs, limit, time.Now(), state))
}

// idHandler serves a route of one message of what (queue, quarantine):
// fn runs once api has the store (else it has answered 503) and {id} is
// an id.
func idHandler[T any](api func(http.ResponseWriter) (T, bool), what string, fn func(http.ResponseWriter, *http.Request, T, string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, ok := api(w)
		if !ok {
			return
		}
		if id, ok := pathID(w, r, what); ok {
			fn(w, r, q, id)
		}
	})
}

// pathID reads the {id} path value, a spool id; on a bad one it has
// answered 400, naming what (queue, quarantine).
func pathID(w http.ResponseWriter, r *http.Request, what string) (string, bool) {
	id := r.PathValue("id")
	if !spool.ValidID(id) {
		http.Error(w, "400 not a "+what+" id", http.StatusBadRequest)
		return "", false
	}
	return id, true
}

// writeOK answers a done operation on id.
func writeOK(w http.ResponseWriter, id string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok", id)
}

func (s *Server) show(w http.ResponseWriter, r *http.Request, q QueueAPI, id string) {
	env, err := q.Get(id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d := Detail{Envelope: env, State: State(env)}
	if f, err := q.Open(id); err == nil {
		d.Headers, d.HeadersTruncated, err = ReadHeaders(f, MaxShowHeaderBytes)
		f.Close()
		if err != nil {
			s.fail(w, r, err)
			return
		}
	}
	writeJSON(w, d)
}

// op serves POST /api/queue/{id}/flush|hold|release and DELETE.
func (s *Server) op(fn func(QueueAPI, string) error) http.Handler {
	return idHandler(s.queueAPI, "queue", func(w http.ResponseWriter, r *http.Request, q QueueAPI, id string) {
		if err := fn(q, id); err != nil {
			s.fail(w, r, err)
			return
		}
		writeOK(w, id)
	})
}

// flushAll flushes every message and streams "flushed N/M" lines; the
// last line is "done: flushed N/M, H held, E failed". With ?wait= it
// also waits for the attempts (flushwait.go).
func (s *Server) flushAll(w http.ResponseWriter, r *http.Request) {
	q, ok := s.queueAPI(w)
	if !ok {
		return
	}
	wait, ok := flushWait(w, r)
	if !ok {
		return
	}
	envs, err := q.List()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if wait > 0 {
		s.flushAllWait(w, r, q, envs, wait)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	total := len(envs)
	step := max(1, total/progressLines)
	var flushed, held, failed int
	for i, env := range envs {
		if r.Context().Err() != nil {
			return
		}
		switch err := q.Flush(env.ID); {
		case err == nil:
			flushed++
		case errors.Is(err, queue.ErrHeld):
			held++
		case errors.Is(err, spool.ErrNotFound): // delivered meanwhile
		default:
			failed++
			s.log.Warn("admin flush failed", zap.String("queue_id", env.ID), zap.Error(err))
		}
		if (i+1)%step == 0 && i+1 < total {
			_ = rc.SetWriteDeadline(time.Now().Add(WriteTimeout))
			fmt.Fprintf(w, "flushed %d/%d\n", i+1, total)
			_ = rc.Flush()
		}
	}
	fmt.Fprintf(w, "done: flushed %d/%d, %d held, %d failed\n", flushed, total, held, failed)
}

// fail maps an error to a status: unknown id 404, held 409, anything else
// 500 (logged; the client gets no internal detail).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, spool.ErrNotFound):
		http.Error(w, "404 no such message", http.StatusNotFound)
	case errors.Is(err, queue.ErrHeld):
		http.Error(w, "409 the message is held; release it first", http.StatusConflict)
	default:
		s.log.Warn("admin request failed", zap.String("path", r.URL.Path), zap.Error(err))
		http.Error(w, "500 internal error (see the daemon's log)", http.StatusInternalServerError)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	_ = enc.Encode(v)
}
