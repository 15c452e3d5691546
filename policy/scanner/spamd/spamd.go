// Package spamd is the client of SpamAssassin's spamd, as a
// scanner.Scanner, over TCP or a unix socket.
//
// Protocol (spamd(1p), "The SpamAssassin Network Protocol" in spamd's
// PROTOCOL file, version 1.5): the request is a command line
// "SYMBOLS SPAMC/1.5", header lines (Content-length, the message size in
// octets, required; User, optional), an empty line and the message; the
// client then half-closes. The answer is a status line
// "SPAMD/1.5 0 EX_OK" (a non-zero sysexits code is an error, and nothing
// follows), header lines among which "Spam: True ; 5.1 / 5.0" (verdict,
// score, threshold) and, for SYMBOLS, Content-length, an empty line and
// the names of the tests that hit, comma-separated. CHECK gives the
// header only. "PING SPAMC/1.5" is answered "SPAMD/1.5 0 PONG".
package spamd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"moat/policy/scanner"
	"moat/policy/scanner/internal/scannet"
)

// Bounds on an answer.
const (
	MaxLine    = 8 << 10  // one status or header line
	MaxHeaders = 64       // header lines of one answer
	MaxBody    = 64 << 10 // the SYMBOLS body (test names)
)

// Client talks to one spamd. It is safe for concurrent use: each call
// opens its own connection (spamd serves one request per connection).
type Client struct {
	name    string
	addr    scannet.Address
	cfg     scanner.Config
	command string
}

var _ scanner.Scanner = (*Client)(nil)

// New checks cfg: Address "host:port" or "unix:/path"; Command CHECK or
// SYMBOLS (the default, "" ); User, if set, is sent as spamd's User
// header (whose preferences spamd applies).
func New(cfg scanner.Config) (*Client, error) {
	a, err := scannet.Check("spamd", cfg.Name, cfg.Address, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	cmd := strings.ToUpper(cfg.Command)
	switch cmd {
	case "":
		cmd = "SYMBOLS"
	case "CHECK", "SYMBOLS":
	default:
		return nil, fmt.Errorf("spamd scanner %s: command %q: want CHECK or SYMBOLS", cfg.Name, cfg.Command)
	}
	if !scannet.HeaderSafe(cfg.User) || strings.ContainsAny(cfg.User, " \t") {
		return nil, fmt.Errorf("spamd scanner %s: user %q: no spaces or line breaks", cfg.Name, cfg.User)
	}
	return &Client{name: cfg.Name, addr: a, cfg: cfg, command: cmd}, nil
}

// Name is the scanner's configured name.
func (c *Client) Name() string { return c.name }

// Ping sends PING and wants PONG.
func (c *Client) Ping(ctx context.Context) error {
	ctx, cancel := scannet.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	conn, err := scannet.Dial(ctx, c.addr)
	if err != nil {
		return scannet.Fail(c.name, scanner.KindConnect, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("PING SPAMC/1.5\r\n\r\n")); err != nil {
		return scannet.Classify(ctx, c.name, err)
	}
	line, err := scannet.ReadLine(bufio.NewReader(conn), '\n', MaxLine)
	if err != nil {
		return scannet.Classify(ctx, c.name, err)
	}
	code, text, err := parseStatus(line)
	if err != nil {
		return scannet.Classify(ctx, c.name, err)
	}
	if code != 0 || text != "PONG" {
		return scannet.Fail(c.name, scanner.KindProtocol, fmt.Errorf("PING answered %q", scannet.Printable(line, 80)))
	}
	return nil
}

// Scan sends req.Message with the configured command.
func (c *Client) Scan(ctx context.Context, req *scanner.Request) (*scanner.Result, error) {
	ctx, cancel := scannet.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	conn, err := scannet.Dial(ctx, c.addr)
	if err != nil {
		return nil, scannet.Fail(c.name, scanner.KindConnect, err)
	}
	defer conn.Close()
	var head bytes.Buffer
	fmt.Fprintf(&head, "%s SPAMC/1.5\r\nContent-length: %d\r\n", c.command, len(req.Message))
	if c.cfg.User != "" {
		fmt.Fprintf(&head, "User: %s\r\n", c.cfg.User)
	}
	head.WriteString("\r\n")
	werr := writeAll(conn, head.Bytes(), req.Message)
	if werr == nil {
		_ = conn.CloseWrite()
	}
	// A spamd that refuses the request (EX_DATAERR and the like) answers
	// and closes, maybe before it has read the whole message.
	// A verdict on a message we could not finish sending is not one.
	res, rerr := ReadAnswer(bufio.NewReader(conn), c.command == "SYMBOLS")
	var se *scanner.Error
	switch {
	case rerr != nil && errors.As(rerr, &se):
		return nil, scannet.Classify(ctx, c.name, rerr)
	case werr != nil:
		return nil, scannet.Classify(ctx, c.name, werr)
	case rerr != nil:
		return nil, scannet.Classify(ctx, c.name, rerr)
	}
	return res, nil
}

func writeAll(w io.Writer, parts ...[]byte) error {
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// parseStatus reads "SPAMD/1.5 0 EX_OK": the code and its text.
func parseStatus(line string) (int, string, error) {
	proto, rest, _ := strings.Cut(line, " ")
	if !strings.HasPrefix(proto, "SPAMD/") {
		return 0, "", scannet.Protocolf("spamd status line %q", scannet.Printable(line, 80))
	}
	codeStr, text, _ := strings.Cut(rest, " ")
	code, err := strconv.Atoi(codeStr)
	if err != nil || code < 0 || code > 255 {
		return 0, "", scannet.Protocolf("spamd status line %q", scannet.Printable(line, 80))
	}
	return code, strings.TrimSpace(text), nil
}

// ReadAnswer reads spamd's answer to CHECK (symbols false) or SYMBOLS
// (symbols true). A non-zero status is a *scanner.Error of KindRefused
// (without the scanner's name); an answer that does not parse a
// *scannet.ProtocolError; a short read the reader's error.
func ReadAnswer(br *bufio.Reader, symbols bool) (*scanner.Result, error) {
	line, err := scannet.ReadLine(br, '\n', MaxLine)
	if err != nil {
		return nil, err
	}
	code, text, err := parseStatus(line)
	if err != nil {
		return nil, err
	}
	if code != 0 {
		// sysexits.h codes: 64 EX_USAGE, 65 EX_DATAERR, 74 EX_IOERR,
		// 76 EX_PROTOCOL, 78 EX_CONFIG …
		return nil, &scanner.Error{Kind: scanner.KindRefused, Err: fmt.Errorf("spamd: %d %s", code, scannet.Printable(text, 200))}
	}
	res := &scanner.Result{}
	sawSpam := false
	length := -1
	for n := 0; ; n++ {
		if n > MaxHeaders {
			return nil, scannet.Protocolf("spamd answer: more than %d header lines", MaxHeaders)
		}
		line, err := scannet.ReadLine(br, '\n', MaxLine)
		if errors.Is(err, io.EOF) && !symbols && sawSpam {
			break // CHECK: spamd may close right after its header
		}
		if err != nil {
			return nil, err
		}
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, scannet.Protocolf("spamd header line %q", scannet.Printable(line, 80))
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "spam":
			if err := parseSpam(value, res); err != nil {
				return nil, err
			}
			sawSpam = true
		case "content-length":
			l, err := strconv.Atoi(value)
			if err != nil || l < 0 {
				return nil, scannet.Protocolf("spamd Content-length %q", scannet.Printable(value, 40))
			}
			length = l
		}
	}
	if !sawSpam {
		return nil, scannet.Protocolf("spamd answer without a Spam header")
	}
	if !symbols {
		return res, nil
	}
	var body []byte
	switch {
	case length > MaxBody:
		return nil, scannet.ErrTooLarge
	case length >= 0:
		body = make([]byte, length)
		if _, err := io.ReadFull(br, body); err != nil {
			return nil, err
		}
	default: // no Content-length: to the end
		if body, err = scannet.ReadAll(br, MaxBody); err != nil {
			return nil, err
		}
	}
	res.Symbols = scannet.Symbols(strings.Split(strings.TrimSpace(string(body)), ","))
	return res, nil
}

// parseSpam reads the value of the Spam header: "True ; 5.1 / 5.0"
// (protocol 1.1 and later; older spamd said Yes or No).
func parseSpam(value string, res *scanner.Result) error {
	verdict, nums, ok := strings.Cut(value, ";")
	if !ok {
		return scannet.Protocolf("spamd Spam header %q", scannet.Printable(value, 80))
	}
	action := ""
	switch strings.ToLower(strings.TrimSpace(verdict)) {
	case "true", "yes":
		action = "spam"
	case "false", "no":
		action = "ham"
	default:
		return scannet.Protocolf("spamd Spam header %q", scannet.Printable(value, 80))
	}
	score, threshold, ok := strings.Cut(nums, "/")
	if !ok {
		return scannet.Protocolf("spamd Spam header %q", scannet.Printable(value, 80))
	}
	s, err1 := parseNum(score)
	th, err2 := parseNum(threshold)
	if err1 != nil || err2 != nil {
		return scannet.Protocolf("spamd Spam header %q", scannet.Printable(value, 80))
	}
	res.Action, res.Score, res.Threshold, res.HasScore = action, s, th, true
	return nil
}

func parseNum(s string) (float64, error) {
	s = strings.TrimSpace(s)
	f, err := strconv.ParseFloat(s, 64)
	// Finite numbers only: no "NaN", "Inf" or 1e999.
	if err != nil || f != f || f > 1e9 || f < -1e9 || strings.ContainsAny(s, "xXpP_") {
		return 0, errors.New("bad number")
	}
	return f, nil
}
