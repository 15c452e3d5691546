package admin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// GET /api/queue/{id}/message and GET /api/quarantine/{id}/message answer
// a message's stored bytes, exactly as spooled (what `moat queue show
// --body` prints, like Postfix's postcat). The spool bounds a message by
// smtp.max_message_size, so the answer is bounded; it is streamed, never
// held in memory whole.

// writeMessage streams the stored message id of open to w.
func (s *Server) writeMessage(w http.ResponseWriter, r *http.Request, open func(string) (io.ReadCloser, error), size int64, id string) {
	f, err := open(id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer f.Close()
	h := w.Header()
	// Never rendered by a browser: raw mail from outside.
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", "attachment; filename=\""+id+".eml\"")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	if size > 0 {
		h.Set("X-Moat-Message-Size", strconv.FormatInt(size, 10))
	}
	if _, err := io.Copy(w, f); err != nil {
		s.log.Warn("admin: message not sent whole: " + err.Error())
	}
}

func (s *Server) queueMessage(w http.ResponseWriter, r *http.Request, q QueueAPI, id string) {
	env, err := q.Get(id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeMessage(w, r, q.Open, env.Size, id)
}

func (s *Server) quarantineMessage(w http.ResponseWriter, r *http.Request, q QuarantineAPI, id string) {
	env, err := q.Get(id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeMessage(w, r, q.Open, env.Size, id)
}

// Message copies the stored bytes of queued message id to dst.
func (c *Client) Message(ctx context.Context, id string, dst io.Writer) error {
	return c.copyTo(ctx, "/api/queue/"+url.PathEscape(id)+"/message", dst)
}

// QuarantineMessage copies the stored bytes of quarantined message id to dst.
func (c *Client) QuarantineMessage(ctx context.Context, id string, dst io.Writer) error {
	return c.copyTo(ctx, "/api/quarantine/"+url.PathEscape(id)+"/message", dst)
}

func (c *Client) copyTo(ctx context.Context, path string, dst io.Writer) error {
	resp, err := c.do(ctx, http.MethodGet, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// Not bounded here: the daemon's spool bounds a message
	// (smtp.max_message_size) and it is streamed, not buffered.
	if _, err := io.Copy(dst, resp.Body); err != nil {
		return fmt.Errorf("admin API: message cut short: %w", err)
	}
	return nil
}
