package admin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"

	"moat/relay/spool"
)

// QuarantineAPI is what the admin API needs of the quarantine: the
// quarantine spool's listing and message bytes, and the two operator
// decisions, release (deliver after all) and delete. The daemon passes
// a *quarantine.Quarantine (moat/relay/quarantine), which owns them.
type QuarantineAPI interface {
	List() ([]*spool.Envelope, error)
	Len() (int, error)
	Get(id string) (*spool.Envelope, error)
	Open(id string) (io.ReadCloser, error)
	// Release moves the message into the delivery queue and returns its
	// new queue id.
	Release(ctx context.Context, id string) (string, error)
	Delete(id string) error
}

// Released is the answer of POST /api/quarantine/{id}/release.
type Released struct {
	ID      string `json:"id"`       // the quarantine id
	QueueID string `json:"queue_id"` // the new id in the delivery queue
}

func (s *Server) quarantineAPI(w http.ResponseWriter) (QuarantineAPI, bool) {
	if s.opt.Quarantine == nil {
		http.Error(w, "503 the quarantine is not available", http.StatusServiceUnavailable)
		return nil, false
	}
	return s.opt.Quarantine, true
}

// quarantineList serves GET /api/quarantine (?limit=N as for the queue).
func (s *Server) quarantineList(w http.ResponseWriter, r *http.Request) {
	if q, ok := s.quarantineAPI(w); ok {
		s.writeList(w, r, q.List, "quarantined")
	}
}

// QuarantineDetail reads one quarantined message's envelope and headers.
func QuarantineDetail(q interface {
	Get(string) (*spool.Envelope, error)
	Open(string) (io.ReadCloser, error)
}, id string) (*Detail, error) {
	env, err := q.Get(id)
	if err != nil {
		return nil, err
	}
	d := &Detail{Envelope: env, State: "quarantined"}
	f, err := q.Open(id)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if d.Headers, d.HeadersTruncated, err = ReadHeaders(f, MaxShowHeaderBytes); err != nil {
		return nil, err
	}
	return d, nil
}

func (s *Server) quarantineShow(w http.ResponseWriter, r *http.Request, q QuarantineAPI, id string) {
	d, err := QuarantineDetail(q, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, d)
}

func (s *Server) quarantineRelease(w http.ResponseWriter, r *http.Request, q QuarantineAPI, id string) {
	newID, err := q.Release(r.Context(), id)
	if err != nil && newID == "" {
		s.fail(w, r, err)
		return
	}
	if err != nil {
		// Queued; only the removal failed. Say so, but it is done.
		s.log.Warn("quarantine release: " + err.Error())
	}
	writeJSON(w, Released{ID: id, QueueID: newID})
}

func (s *Server) quarantineDelete(w http.ResponseWriter, r *http.Request, q QuarantineAPI, id string) {
	if err := q.Delete(id); err != nil {
		s.fail(w, r, err)
		return
	}
	writeOK(w, id)
}

// QuarantineList returns up to limit quarantined messages (0: the
// server's default).
func (c *Client) QuarantineList(ctx context.Context, limit int) (*List, error) {
	return c.list(ctx, "/api/quarantine", limit)
}

// QuarantineShow returns one quarantined message's envelope and headers.
func (c *Client) QuarantineShow(ctx context.Context, id string) (*Detail, error) {
	return c.detail(ctx, "/api/quarantine/"+url.PathEscape(id))
}

// QuarantineRelease queues a quarantined message for delivery and
// returns its new queue id.
func (c *Client) QuarantineRelease(ctx context.Context, id string) (string, error) {
	var rel Released
	if err := c.doJSON(ctx, http.MethodPost, "/api/quarantine/"+url.PathEscape(id)+"/release", &rel); err != nil {
		return "", err
	}
	if !spool.ValidID(rel.QueueID) {
		return "", errors.New("admin API: bad answer: no queue id")
	}
	return rel.QueueID, nil
}

// QuarantineDelete deletes a quarantined message.
func (c *Client) QuarantineDelete(ctx context.Context, id string) error {
	return c.doDiscard(ctx, http.MethodDelete, "/api/quarantine/"+url.PathEscape(id))
}
