package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ErrUnreachable wraps the error of a request that got no HTTP answer at
// all (refused, timed out): the daemon is not running there.
var ErrUnreachable = errors.New("the daemon does not answer")

// Client talks to a running daemon's admin API (used by `moat queue`).
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// Client limits.
const (
	clientDialTimeout   = 3 * time.Second
	clientHeaderTimeout = 30 * time.Second
	maxResponse         = 64 << 20 // a list of MaxListLimit entries fits
	maxLine             = 4096
)

// NewClient returns a client of the admin API at address (host:port; an
// unspecified host such as 0.0.0.0 means this machine's loopback).
func NewClient(address, token string) (*Client, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("admin address %q is not host:port", address)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::", "[::]":
		host = "::1"
	}
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: clientDialTimeout}).DialContext,
		ResponseHeaderTimeout: clientHeaderTimeout,
		Proxy:                 nil, // never through an HTTP proxy from the environment
	}
	return &Client{
		base:  "http://" + net.JoinHostPort(host, port),
		token: token,
		hc:    &http.Client{Transport: tr},
	}, nil
}

func (c *Client) do(ctx context.Context, method, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %w", ErrUnreachable, c.base, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxLine))
		msg := strings.TrimSpace(string(b))
		if msg == "" {
			msg = resp.Status
		}
		return nil, &StatusError{Code: resp.StatusCode, Text: oneLine(msg)}
	}
	return resp, nil
}

// StatusError is a non-2xx answer of the daemon.
type StatusError struct {
	Code int
	Text string
}

func (e *StatusError) Error() string { return "admin API: " + e.Text }

// doJSON sends a request and decodes the JSON answer into v.
func (c *Client) doJSON(ctx context.Context, method, path string, v any) error {
	resp, err := c.do(ctx, method, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponse)).Decode(v); err != nil {
		return fmt.Errorf("admin API: bad answer: %w", err)
	}
	return nil
}

// doDiscard sends a request whose answer says nothing beyond its status.
func (c *Client) doDiscard(ctx context.Context, method, path string) error {
	resp, err := c.do(ctx, method, path)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxLine))
	return resp.Body.Close()
}

// list reads a listing at path of up to limit messages (0: the server's
// default).
func (c *Client) list(ctx context.Context, path string, limit int) (*List, error) {
	if limit > 0 {
		path += fmt.Sprintf("?limit=%d", limit)
	}
	var l List
	if err := c.doJSON(ctx, http.MethodGet, path, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// detail reads one message's envelope and headers at path.
func (c *Client) detail(ctx context.Context, path string) (*Detail, error) {
	var d Detail
	if err := c.doJSON(ctx, http.MethodGet, path, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// List returns up to limit queued messages (0: the server's default).
func (c *Client) List(ctx context.Context, limit int) (*List, error) {
	return c.list(ctx, "/api/queue", limit)
}

// Show returns one message's envelope and headers.
func (c *Client) Show(ctx context.Context, id string) (*Detail, error) {
	return c.detail(ctx, "/api/queue/"+url.PathEscape(id))
}

// Op runs flush, hold, release or delete on one message.
func (c *Client) Op(ctx context.Context, op, id string) error {
	method, path := http.MethodPost, "/api/queue/"+url.PathEscape(id)+"/"+op
	switch op {
	case "flush", "hold", "release":
	case "delete":
		method, path = http.MethodDelete, "/api/queue/"+url.PathEscape(id)
	default:
		return fmt.Errorf("unknown queue operation %q", op)
	}
	return c.doDiscard(ctx, method, path)
}

// FlushAll flushes every message; progress gets each line the daemon
// streams ("flushed N/M", the last "done: …"). It returns the last line.
func (c *Client) FlushAll(ctx context.Context, progress func(line string)) (string, error) {
	resp, err := c.do(ctx, http.MethodPost, "/api/queue/flush")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 256), maxLine)
	var last string
	for sc.Scan() {
		last = sc.Text()
		if progress != nil {
			progress(last)
		}
	}
	if err := sc.Err(); err != nil {
		return last, fmt.Errorf("admin API: flush interrupted: %w", err)
	}
	if !strings.HasPrefix(last, "done:") {
		return last, errors.New("admin API: flush interrupted before it finished")
	}
	return last, nil
}
