// Package rspamd is the client of rspamd's normal (scanner) worker, as a
// scanner.Scanner, over HTTP on TCP or a unix socket.
//
// Protocol (rspamd.com/doc/developers/protocol.html): the message is the
// body of "POST /checkv2"; the envelope and connection go in request
// headers: IP, Helo, From, Rcpt (one per recipient), Queue-Id, User (the
// authenticated user), Hostname (the client's verified name), MTA-Name,
// Pass: all (run every rule, even when a pre-filter already decided) and
// Password when the worker wants one. The answer is a JSON object:
// score, required_score, action ("no action", "greylist", "add header",
// "rewrite subject", "soft reject", "reject"), symbols (name → {score,
// …}) and messages. "GET /ping" is answered "pong".
package rspamd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"moat/policy/scanner"
	"moat/policy/scanner/internal/scannet"
)

// MaxAnswer bounds the JSON answer (rspamd's answers are a few KB; with
// every symbol's options a few hundred).
const MaxAnswer = 4 << 20

// Client talks to one rspamd worker. It is safe for concurrent use; it
// keeps idle HTTP connections for reuse.
type Client struct {
	name string
	base string // scheme://host[:port][/prefix], without the trailing slash
	cfg  scanner.Config
	http *http.Client
}

var _ scanner.Scanner = (*Client)(nil)

// New checks cfg: Address "host:port", "http://host:port[/prefix]",
// "https://…" or "unix:/path"; Password, if set, is sent as the Password
// header.
func New(cfg scanner.Config) (*Client, error) {
	if cfg.Name == "" {
		return nil, errors.New("rspamd: scanner needs a name")
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("rspamd scanner %s: negative timeout", cfg.Name)
	}
	if !scannet.HeaderSafe(cfg.Password) {
		return nil, fmt.Errorf("rspamd scanner %s: password with a line break", cfg.Name)
	}
	var dialer net.Dialer
	tr := &http.Transport{
		Proxy:               nil, // never an environment proxy
		DialContext:         dialer.DialContext,
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     60 * time.Second,
		DisableCompression:  true,
		// rspamd speaks HTTP/1.x.
		ForceAttemptHTTP2: false,
	}
	c := &Client{name: cfg.Name, cfg: cfg}
	switch {
	case strings.HasPrefix(cfg.Address, "unix:"):
		a, err := scannet.ParseAddress(cfg.Address)
		if err != nil {
			return nil, fmt.Errorf("rspamd scanner %s: %w", cfg.Name, err)
		}
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", a.Addr)
		}
		c.base = "http://rspamd"
	case strings.Contains(cfg.Address, "://"):
		u, err := url.Parse(cfg.Address)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("rspamd scanner %s: address %q: want http://host:port", cfg.Name, cfg.Address)
		}
		c.base = strings.TrimSuffix(u.Scheme+"://"+u.Host+u.EscapedPath(), "/")
	default:
		a, err := scannet.ParseAddress(cfg.Address)
		if err != nil {
			return nil, fmt.Errorf("rspamd scanner %s: %w", cfg.Name, err)
		}
		c.base = "http://" + a.Addr
	}
	c.http = &http.Client{
		Transport: tr,
		// A scanner that redirects is misconfigured: its answer is used
		// as it is (a 3xx is refused).
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// Name is the scanner's configured name.
func (c *Client) Name() string { return c.name }

// Ping asks GET /ping and wants "pong".
func (c *Client) Ping(ctx context.Context) error {
	ctx, cancel := scannet.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/ping", nil)
	if err != nil {
		return scannet.Fail(c.name, scanner.KindConnect, err)
	}
	body, err := c.do(ctx, req)
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(body)) != "pong" {
		return scannet.Fail(c.name, scanner.KindProtocol, fmt.Errorf("/ping answered %q", scannet.Printable(string(body), 80)))
	}
	return nil
}

// Scan posts req.Message to /checkv2.
func (c *Client) Scan(ctx context.Context, req *scanner.Request) (*scanner.Result, error) {
	ctx, cancel := scannet.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/checkv2", bytes.NewReader(req.Message))
	if err != nil {
		return nil, scannet.Fail(c.name, scanner.KindConnect, err)
	}
	setHeaders(hr.Header, req, c.cfg.Password)
	body, err := c.do(ctx, hr)
	if err != nil {
		return nil, err
	}
	res, err := ParseAnswer(body)
	if err != nil {
		return nil, scannet.Classify(ctx, c.name, err)
	}
	return res, nil
}

// setHeaders puts the envelope into rspamd's request headers. A value
// that cannot go into a header (a line break) is left out.
func setHeaders(h http.Header, req *scanner.Request, password string) {
	set := func(k, v string) {
		if v != "" && scannet.HeaderSafe(v) {
			h.Add(k, v)
		}
	}
	if req.ClientIP.IsValid() {
		set("IP", req.ClientIP.Unmap().String())
	}
	set("Helo", req.HELO)
	set("Hostname", req.ClientName)
	if req.Sender == "" {
		set("From", "<>")
	} else {
		set("From", req.Sender)
	}
	for _, r := range req.Recipients {
		set("Rcpt", r)
	}
	set("Queue-Id", req.QueueID)
	set("User", req.AuthUser)
	set("MTA-Name", req.Hostname)
	set("Password", password)
	h.Set("Pass", "all")
	h.Set("Content-Type", "message/rfc822")
}

// do sends req and returns the body of a 200 answer, at most MaxAnswer
// octets.
func (c *Client) do(ctx context.Context, req *http.Request) ([]byte, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "dial" {
			return nil, scannet.Fail(c.name, scanner.KindConnect, err)
		}
		// net/http has no error type for an answer that is not HTTP.
		if strings.Contains(err.Error(), "malformed HTTP") {
			return nil, scannet.Fail(c.name, scanner.KindProtocol, err)
		}
		return nil, scannet.Classify(ctx, c.name, err)
	}
	defer resp.Body.Close()
	if resp.ContentLength > MaxAnswer {
		return nil, scannet.Fail(c.name, scanner.KindProtocol, scannet.ErrTooLarge)
	}
	body, err := scannet.ReadAll(resp.Body, MaxAnswer)
	if resp.StatusCode != http.StatusOK {
		// rspamd says why in {"error": "…"}; say it in the error.
		why := ""
		var e struct {
			Error string `json:"error"`
		}
		if err == nil && json.Unmarshal(body, &e) == nil {
			why = ": " + scannet.Printable(e.Error, 200)
		}
		return nil, scannet.Fail(c.name, scanner.KindRefused, fmt.Errorf("HTTP %d%s", resp.StatusCode, why))
	}
	if err != nil {
		return nil, scannet.Classify(ctx, c.name, err)
	}
	return body, nil
}

// answer is the part of rspamd's /checkv2 JSON we use.
type answer struct {
	Score         *float64                   `json:"score"`
	RequiredScore *float64                   `json:"required_score"`
	Action        *string                    `json:"action"`
	Symbols       map[string]json.RawMessage `json:"symbols"`
	Error         string                     `json:"error"`
}

// ParseAnswer decodes rspamd's JSON answer into a Result: Action is
// rspamd's action in lower case, Symbols the symbol names (sorted, at most
// scanner.MaxSymbols), HasScore when score and required_score are given.
// An answer with an error and no action is a *scanner.Error of
// KindRefused (without the scanner's name); one that does not parse a
// *scannet.ProtocolError.
func ParseAnswer(body []byte) (*scanner.Result, error) {
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, scannet.Protocolf("rspamd answer: %v", err)
	}
	if a.Action == nil {
		if a.Error != "" {
			return nil, &scanner.Error{Kind: scanner.KindRefused, Err: fmt.Errorf("rspamd: %s", scannet.Printable(a.Error, 200))}
		}
		return nil, scannet.Protocolf("rspamd answer without an action")
	}
	action := strings.ToLower(strings.TrimSpace(*a.Action))
	if action == "" || len(action) > 64 || scannet.Printable(action, 64) != action {
		return nil, scannet.Protocolf("rspamd action %q", scannet.Printable(action, 64))
	}
	res := &scanner.Result{Action: action}
	if a.Score != nil && a.RequiredScore != nil {
		res.Score, res.Threshold, res.HasScore = *a.Score, *a.RequiredScore, true
	}
	if len(a.Symbols) > 0 {
		names := make([]string, 0, len(a.Symbols))
		for n := range a.Symbols {
			names = append(names, n)
		}
		res.Symbols = scannet.Symbols(names)
	}
	return res, nil
}
