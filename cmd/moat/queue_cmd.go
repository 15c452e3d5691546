package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"moat/ops/admin"
	"moat/relay/spool"
)

// queueTimeout bounds one admin API call other than a flush of everything.
const queueTimeout = 30 * time.Second

// maxTokenFile bounds the admin token file read.
const maxTokenFile = 4096

// queueCommand is `moat queue list|show|flush|delete|hold|release`: it
// talks to the running daemon's admin API; list and show read the spool
// directly when the daemon does not answer.
func queueCommand() *cobra.Command {
	cmd, target := adminCommand("queue", "Inspect and manage the delivery queue of a running moat", newQueueTarget)
	var limit int
	list := targetCommand("list", "List queued messages: id, age, state, sender, recipients, last error", cobra.NoArgs, target,
		func(cmd *cobra.Command, t *queueTarget, _ []string) error {
			return t.list(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), limit)
		})
	list.Flags().IntVar(&limit, "limit", 0, fmt.Sprintf("at most this many messages (default %d)", admin.DefaultListLimit))
	var body bool
	show := targetCommand("show ID", "Show one message's envelope and headers (--body: and the whole message)", cobra.ExactArgs(1), target,
		func(cmd *cobra.Command, t *queueTarget, args []string) error {
			return t.show(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], body)
		})
	show.Flags().BoolVar(&body, "body", false, "print the whole message as stored after the envelope, instead of its headers")
	var fo flushOpts
	flush := targetCommand("flush [ID]", "Attempt delivery now: of one message, or of every message not held (and wait for the outcome)", cobra.MaximumNArgs(1), target,
		func(cmd *cobra.Command, t *queueTarget, args []string) error {
			if len(args) == 0 {
				return t.flushAll(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), fo)
			}
			return t.op(cmd.Context(), cmd.OutOrStdout(), "flush", args[0])
		})
	flush.Flags().DurationVar(&fo.wait, "wait", defaultFlushWait, fmt.Sprintf("with no ID, wait up to this long (at most %s) for the attempts and count delivered, deferred and bounced recipients; 0: only schedule", admin.MaxFlushWait))
	flush.Flags().BoolVar(&fo.noProgress, "no-progress", false, "no progress bar, even on a terminal")
	cmd.AddCommand(list, show, flush)
	for _, op := range []struct{ name, short string }{
		{"delete", "Remove a message from the queue without notice to anyone"},
		{"hold", "Stop delivery attempts of a message until release"},
		{"release", "Resume delivery attempts of a held message, starting now"},
	} {
		cmd.AddCommand(targetCommand(op.name+" ID", op.short, cobra.ExactArgs(1), target,
			func(cmd *cobra.Command, t *queueTarget, args []string) error {
				return t.op(cmd.Context(), cmd.OutOrStdout(), op.name, args[0])
			}))
	}
	return cmd
}

// adminCommand is the parent of commands that talk to the daemon's admin
// API (or read its data directory): it takes --config and --admin, and
// target builds what its subcommands work on from them.
func adminCommand[T any](use, short string, newTarget func(cfgPath, adminAddr string) (T, error)) (*cobra.Command, func() (T, error)) {
	var cfgPath, adminAddr string
	cmd := &cobra.Command{Use: use, Short: short}
	cmd.PersistentFlags().StringVar(&cfgPath, "config", "", "configuration file (YAML): admin.address, admin.token_file and data_dir")
	cmd.PersistentFlags().StringVar(&adminAddr, "admin", "", "admin API address host:port (overrides admin.address)")
	return cmd, func() (T, error) { return newTarget(cfgPath, adminAddr) }
}

// targetCommand is a subcommand of an adminCommand: it builds the target
// and runs fn on it.
func targetCommand[T any](use, short string, args cobra.PositionalArgs, target func() (T, error), fn func(*cobra.Command, T, []string) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  args,
		RunE: func(cmd *cobra.Command, a []string) error {
			t, err := target()
			if err != nil {
				return err
			}
			return fn(cmd, t, a)
		},
	}
}

// queueTarget is where the queue commands look: the daemon's admin API,
// and the spool directory for the offline fallback.
type queueTarget struct {
	addr     string
	spoolDir string
	client   *admin.Client
}

func newQueueTarget(cfgPath, adminAddr string) (*queueTarget, error) {
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("configuration: %s", strings.Join(errorLines(err), "; "))
	}
	addr := cfg.Admin.Address
	if adminAddr != "" {
		addr = adminAddr
	}
	if addr == "" {
		return nil, errors.New("no admin address: set admin.address in the configuration or pass --admin")
	}
	var token string
	if cfg.Admin.TokenFile != "" {
		if token, err = readToken(cfg.Admin.TokenFile); err != nil {
			return nil, err
		}
	}
	c, err := admin.NewClient(addr, token)
	if err != nil {
		return nil, err
	}
	return &queueTarget{addr: addr, spoolDir: filepath.Join(cfg.DataDir, "spool"), client: c}, nil
}

func readToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("admin.token_file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("admin.token_file: %w", err)
	}
	if len(b) > maxTokenFile {
		return "", fmt.Errorf("admin.token_file: %s is larger than %d bytes", path, maxTokenFile)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("admin.token_file: %s is empty", path)
	}
	return tok, nil
}

// fallback says on stderr that the spool is read directly and opens it.
func (t *queueTarget) fallback(stderr io.Writer, cause error) (*spool.Spool, error) {
	fmt.Fprintf(stderr, "moat: %s: %v\nmoat: reading the spool %s directly\n", t.addr, cause, t.spoolDir)
	sp, err := spool.OpenReadOnly(t.spoolDir)
	if err != nil {
		return nil, fmt.Errorf("the daemon does not answer and the spool cannot be read: %w", err)
	}
	return sp, nil
}

// offlineList lists a spool the daemon is not there to list, read-only,
// and closes it; state as for admin.SummarizeAll.
func offlineList(sp *spool.Spool, limit int, state string) (*admin.List, error) {
	defer sp.Close()
	envs, err := sp.List()
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = admin.DefaultListLimit
	}
	return admin.SummarizeAll(envs, limit, time.Now(), state), nil
}

func (t *queueTarget) list(ctx context.Context, stdout, stderr io.Writer, limit int) error {
	ctx, cancel := context.WithTimeout(ctx, queueTimeout)
	defer cancel()
	l, err := t.client.List(ctx, limit)
	if errors.Is(err, admin.ErrUnreachable) {
		sp, ferr := t.fallback(stderr, err)
		if ferr != nil {
			return ferr
		}
		if l, err = offlineList(sp, limit, ""); err != nil {
			return err
		}
	}
	if err != nil {
		return queueError("list", err)
	}
	printList(stdout, l)
	if l.Truncated {
		fmt.Fprintf(stderr, "moat: showing %d of %d messages (--limit)\n", len(l.Messages), l.Total)
	}
	return nil
}

func printList(w io.Writer, l *admin.List) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAGE\tSTATE\tSENDER\tRECIPIENTS\tLAST ERROR")
	for _, m := range l.Messages {
		rcpts := strings.Join(m.Recipients, ",")
		if more := m.RcptCount - len(m.Recipients); more > 0 {
			rcpts += fmt.Sprintf(",+%d more", more)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", clean(m.ID), admin.ShortDuration(time.Duration(m.AgeSeconds)*time.Second),
			m.State, clean(sender(m.Sender)), clean(rcpts), clean(m.LastError))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d message(s) in the queue\n", l.Total)
}

func (t *queueTarget) show(ctx context.Context, stdout, stderr io.Writer, id string, body bool) error {
	ctx, cancel := context.WithTimeout(ctx, queueTimeout)
	defer cancel()
	var sp *spool.Spool
	d, err := t.client.Show(ctx, id)
	if errors.Is(err, admin.ErrUnreachable) {
		var ferr error
		if sp, ferr = t.fallback(stderr, err); ferr != nil {
			return ferr
		}
		defer sp.Close()
		d, err = showOffline(sp, id)
	}
	if err != nil {
		return queueError("show "+id, err)
	}
	if err := printShown(stdout, d, body, sp, id, func(w io.Writer) error { return t.client.Message(ctx, id, w) }); err != nil {
		return queueError("show "+id, err)
	}
	return nil
}

// printShown prints what `queue show` and `quarantine show` print: the
// envelope and header (d) and, with body, the stored message, read from
// the spool sp when the daemon is down, else through fetch (the API).
func printShown(stdout io.Writer, d *admin.Detail, body bool, sp *spool.Spool, id string, fetch func(io.Writer) error) error {
	printDetail(stdout, d, !body)
	if !body {
		return nil
	}
	fmt.Fprintln(stdout, bodyMarker)
	if sp != nil {
		return copyMessage(messageWriter(stdout), sp, id)
	}
	return fetch(messageWriter(stdout))
}

// copyMessage copies the stored message id of sp to w.
func copyMessage(w io.Writer, sp interface {
	Open(string) (io.ReadCloser, error)
}, id string) error {
	f, err := sp.Open(id)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

func showOffline(sp *spool.Spool, id string) (*admin.Detail, error) {
	env, err := sp.Get(id)
	if err != nil {
		return nil, err
	}
	d := &admin.Detail{Envelope: env, State: admin.State(env)}
	if f, err := sp.Open(id); err == nil {
		d.Headers, d.HeadersTruncated, err = admin.ReadHeaders(f, admin.MaxShowHeaderBytes)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return d, nil
}

// printDetail prints a message's envelope and, when headers, its header
// section.
func printDetail(w io.Writer, d *admin.Detail, headers bool) {
	e := d.Envelope
	if e == nil {
		fmt.Fprintln(w, "(no envelope)")
		return
	}
	fmt.Fprintf(w, "id:           %s\n", clean(e.ID))
	fmt.Fprintf(w, "state:        %s\n", d.State)
	fmt.Fprintf(w, "received:     %s (%s ago)\n", e.Received.Format(time.RFC3339), admin.ShortDuration(time.Since(e.Received)))
	fmt.Fprintf(w, "sender:       %s\n", clean(sender(e.Sender)))
	fmt.Fprintf(w, "size:         %d bytes\n", e.Size)
	fmt.Fprintf(w, "client:       %s [%s] helo %s (%s)\n", clean(e.ClientName), clean(e.ClientIP), clean(e.HELO), clean(e.Protocol))
	fmt.Fprintf(w, "attempts:     %d\n", e.Attempts)
	if !e.NextAttempt.IsZero() {
		fmt.Fprintf(w, "next attempt: %s\n", e.NextAttempt.Format(time.RFC3339))
	}
	if e.LastError != "" {
		fmt.Fprintf(w, "last error:   %s\n", clean(e.LastError))
	}
	fmt.Fprintln(w, "recipients:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range e.Recipients {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\n", clean(r.Address), r.Status, clean(r.Route), r.Attempts, clean(r.LastError))
	}
	tw.Flush()
	printQuarantined(w, e)
	if !headers {
		return
	}
	fmt.Fprintln(w, "headers:")
	printHeaders(w, d.Headers)
	if d.HeadersTruncated {
		fmt.Fprintf(w, "  … (headers cut at %d bytes)\n", admin.MaxShowHeaderBytes)
	}
}

func (t *queueTarget) op(ctx context.Context, stdout io.Writer, op, id string) error {
	if !spool.ValidID(id) {
		return fmt.Errorf("queue %s: %q is not a queue id", op, id)
	}
	ctx, cancel := context.WithTimeout(ctx, queueTimeout)
	defer cancel()
	if err := t.client.Op(ctx, op, id); err != nil {
		return queueError(op+" "+id, err)
	}
	done := map[string]string{"flush": "flushed", "hold": "held", "release": "released", "delete": "deleted"}[op]
	fmt.Fprintf(stdout, "%s %s\n", done, id)
	return nil
}

func (t *queueTarget) flushAll(ctx context.Context, stdout, stderr io.Writer, o flushOpts) error {
	if o.wait < 0 || o.wait > admin.MaxFlushWait {
		return fmt.Errorf("queue flush: --wait must be from 0s to %s", admin.MaxFlushWait)
	}
	if o.wait > 0 {
		return t.flushAllWait(ctx, stdout, stderr, o)
	}
	last, err := t.client.FlushAll(ctx, func(line string) {
		if strings.HasPrefix(line, "flushed ") {
			fmt.Fprintln(stderr, clean(line))
		}
	})
	if err != nil {
		return queueError("flush", err)
	}
	fmt.Fprintln(stdout, clean(last))
	return nil
}

// queueError words an API failure for the operator.
func queueError(what string, err error) error {
	var se *admin.StatusError
	switch {
	case errors.Is(err, spool.ErrNotFound):
		return fmt.Errorf("queue %s: no such message", what)
	case errors.As(err, &se) && se.Code == 404:
		return fmt.Errorf("queue %s: no such message", what)
	case errors.As(err, &se) && se.Code == 401:
		return fmt.Errorf("queue %s: the admin API refused the token (check admin.token_file)", what)
	case errors.As(err, &se):
		return fmt.Errorf("queue %s: %s", what, se.Text)
	case errors.Is(err, admin.ErrUnreachable):
		return fmt.Errorf("queue %s: %w (is moat serve running?)", what, err)
	}
	return fmt.Errorf("queue %s: %w", what, err)
}

func sender(s string) string {
	if s == "" {
		return "<>"
	}
	return s
}

// clean makes an outside string safe for a terminal line: control
// characters (escape sequences, tabs that would break the columns) become '?'.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}
