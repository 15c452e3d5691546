// Package clamd is the client of ClamAV's clamd daemon, as a
// scanner.Scanner: the message goes over TCP or a unix socket with the
// INSTREAM command, the answer says clean or which signatures matched.
//
// Protocol (clamd(8), "COMMANDS"): a command prefixed by 'z' ends with a
// NUL and so does each answer line. INSTREAM is followed by chunks, each a
// 4-octet big-endian length and that many octets, and a zero-length chunk
// that ends the stream. The answer is "stream: OK", "stream: NAME FOUND"
// (one line per match with AllMatchScan) or "... ERROR", e.g.
// "INSTREAM size limit exceeded. ERROR" when the stream is larger than
// clamd's StreamMaxLength. PING is answered "PONG".
package clamd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"moat/policy/scanner"
	"moat/policy/scanner/internal/scannet"
)

// ChunkSize is the size of the INSTREAM chunks we send (clamd reads
// chunks of any size up to StreamMaxLength).
const ChunkSize = 64 << 10

// MaxLine bounds one answer line; MaxLines the lines of one answer.
const (
	MaxLine  = 4 << 10
	MaxLines = 64
)

// Client talks to one clamd. It is safe for concurrent use: each call
// opens its own connection.
type Client struct {
	name string
	addr scannet.Address
	cfg  scanner.Config
}

var _ scanner.Scanner = (*Client)(nil)

// New checks cfg (Address "host:port" or "unix:/path") and returns the
// client. It opens no connection.
func New(cfg scanner.Config) (*Client, error) {
	a, err := scannet.Check("clamd", cfg.Name, cfg.Address, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	return &Client{name: cfg.Name, addr: a, cfg: cfg}, nil
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
	if _, err := conn.Write([]byte("zPING\x00")); err != nil {
		return scannet.Classify(ctx, c.name, err)
	}
	line, err := scannet.ReadLine(bufio.NewReader(conn), 0, MaxLine)
	if err != nil {
		return scannet.Classify(ctx, c.name, err)
	}
	if strings.TrimRight(line, "\n") != "PONG" {
		return scannet.Fail(c.name, scanner.KindProtocol, fmt.Errorf("PING answered %q", scannet.Printable(line, 80)))
	}
	return nil
}

// Scan streams req.Message with INSTREAM and reads the verdict.
func (c *Client) Scan(ctx context.Context, req *scanner.Request) (*scanner.Result, error) {
	ctx, cancel := scannet.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	conn, err := scannet.Dial(ctx, c.addr)
	if err != nil {
		return nil, scannet.Fail(c.name, scanner.KindConnect, err)
	}
	defer conn.Close()
	werr := writeStream(conn, req.Message)
	if werr == nil {
		_ = conn.CloseWrite()
	}
	// clamd answers and closes as soon as the stream passes
	// StreamMaxLength, while we may still be writing: when the write
	// failed, its answer, if any, says why. A clean verdict on a stream
	// we could not finish sending is not one.
	res, rerr := ReadAnswer(bufio.NewReader(conn))
	var se *scanner.Error
	switch {
	case rerr != nil && errors.As(rerr, &se):
		return nil, scannet.Classify(ctx, c.name, rerr)
	case werr != nil && (rerr != nil || !res.Virus):
		return nil, scannet.Classify(ctx, c.name, werr)
	case rerr != nil:
		return nil, scannet.Classify(ctx, c.name, rerr)
	}
	return res, nil
}

// writeStream sends INSTREAM, the message in chunks, and the end chunk.
func writeStream(w io.Writer, msg []byte) error {
	buf := make([]byte, 0, 10+4+min(len(msg), ChunkSize))
	buf = append(buf, "zINSTREAM\x00"...)
	for len(msg) > 0 {
		n := min(len(msg), ChunkSize)
		buf = binary.BigEndian.AppendUint32(buf, uint32(n))
		buf = append(buf, msg[:n]...)
		if _, err := w.Write(buf); err != nil {
			return err
		}
		buf, msg = buf[:0], msg[n:]
	}
	buf = append(buf, 0, 0, 0, 0)
	_, err := w.Write(buf)
	return err
}

// ReadAnswer reads clamd's answer to INSTREAM: one line, or with
// AllMatchScan one FOUND line per signature until clamd closes.
func ReadAnswer(br *bufio.Reader) (*scanner.Result, error) {
	line, err := scannet.ReadLine(br, 0, MaxLine)
	if err != nil {
		return nil, err
	}
	v, err := ParseLine(line)
	if err != nil {
		return nil, err
	}
	switch v.Status {
	case StatusOK:
		return &scanner.Result{Action: "clean"}, nil
	case StatusError:
		return nil, &scanner.Error{Kind: scanner.KindRefused, Err: fmt.Errorf("clamd: %s", scannet.Printable(v.Text, 200))}
	}
	names := []string{v.Virus}
	for len(names) < MaxLines {
		line, err := scannet.ReadLine(br, 0, MaxLine)
		if err != nil {
			break // the answer so far stands: clamd closes after it
		}
		if v, err := ParseLine(line); err == nil && v.Status == StatusFound {
			names = append(names, v.Virus)
		}
	}
	res := &scanner.Result{Action: "infected", Virus: true, VirusNames: scannet.Symbols(names)}
	if res.VirusNames == nil {
		res.VirusNames = []string{"unknown"}
	}
	return res, nil
}

// Status is what one answer line says.
type Status int

const (
	StatusOK    Status = iota // "stream: OK"
	StatusFound               // "stream: NAME FOUND"
	StatusError               // "... ERROR"
)

// Verdict is one parsed answer line.
type Verdict struct {
	Status Status
	Virus  string // the signature name, for StatusFound
	Text   string // the line, for StatusError
}

// ParseLine reads one answer line (without its NUL).
func ParseLine(line string) (Verdict, error) {
	line = strings.TrimRight(line, "\r\n")
	if rest, ok := strings.CutSuffix(line, " ERROR"); ok {
		return Verdict{Status: StatusError, Text: rest}, nil
	}
	// With IDSESSION an answer starts with "<id>: "; the stream's name
	// is "stream" (older clamd: "stream(127.0.0.1@1234)").
	_, rest, ok := strings.Cut(line, ": ")
	if !ok {
		return Verdict{}, scannet.Protocolf("clamd answered %q", scannet.Printable(line, 80))
	}
	if i := strings.LastIndex(line, ": "); i >= 0 {
		rest = line[i+2:]
	}
	switch {
	case rest == "OK":
		return Verdict{Status: StatusOK}, nil
	case strings.HasSuffix(rest, " FOUND"):
		name := strings.TrimSpace(strings.TrimSuffix(rest, " FOUND"))
		if !scannet.CleanName(name) {
			// A name we cannot keep is still a virus found.
			name = "unknown"
		}
		return Verdict{Status: StatusFound, Virus: name}, nil
	}
	return Verdict{}, scannet.Protocolf("clamd answered %q", scannet.Printable(line, 80))
}
