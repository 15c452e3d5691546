package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"moat/ops/admin"
	"moat/relay/quarantine"
	"moat/relay/spool"
)

// quarantineCommand is `moat quarantine list|show|release|delete`: the
// arguments and the printing. The operations belong to relay/quarantine;
// the daemon holds the quarantine locked, so the commands go through its
// admin API. When the daemon does not answer, list and show read the
// directory, and release and delete work on the spools directly
// (quarantine.ReleaseOffline, DeleteOffline).
func quarantineCommand() *cobra.Command {
	cmd, target := adminCommand("quarantine", "List, inspect, release or delete quarantined messages",
		func(cfgPath, adminAddr string) (*quarantineTarget, error) {
			t, err := newQueueTarget(cfgPath, adminAddr)
			if err != nil {
				return nil, err
			}
			cfg, _ := loadConfig(cfgPath) // newQueueTarget loaded it without error
			return &quarantineTarget{queueTarget: t, dir: quarantine.Dir(filepath.Dir(t.spoolDir)), cfg: cfg}, nil
		})
	var limit int
	list := targetCommand("list", "List quarantined messages: id, age, sender, recipients, client, rule", cobra.NoArgs, target,
		func(cmd *cobra.Command, t *quarantineTarget, _ []string) error {
			return t.list(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), limit)
		})
	list.Flags().IntVar(&limit, "limit", 0, fmt.Sprintf("at most this many messages (default %d)", admin.DefaultListLimit))
	var body bool
	show := targetCommand("show ID", "Show one quarantined message's envelope, why it is quarantined, and its headers (--body: the whole message)", cobra.ExactArgs(1), target,
		func(cmd *cobra.Command, t *quarantineTarget, args []string) error {
			return t.show(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], body)
		})
	show.Flags().BoolVar(&body, "body", false, "print the whole message as stored after the envelope, instead of its headers")
	release := targetCommand("release ID", "Deliver a quarantined message after all: move it into the delivery queue", cobra.ExactArgs(1), target,
		func(cmd *cobra.Command, t *quarantineTarget, args []string) error {
			return t.release(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0])
		})
	del := targetCommand("delete ID", "Delete a quarantined message without notice to anyone", cobra.ExactArgs(1), target,
		func(cmd *cobra.Command, t *quarantineTarget, args []string) error {
			return t.delete(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0])
		})
	cmd.AddCommand(list, show, release, del)
	return cmd
}

type quarantineTarget struct {
	*queueTarget
	dir string  // <data_dir>/quarantine
	cfg *Config // for learning a release offline (nil: not learned)
}

func ctxOr(ctx context.Context) context.Context {
	if ctx == nil {
		return context.Background()
	}
	return ctx
}

// readOnly opens the quarantine for reading, saying so on stderr.
func (t *quarantineTarget) readOnly(stderr io.Writer, cause error) (*spool.Spool, error) {
	fmt.Fprintf(stderr, "moat: %s: %v\nmoat: reading the quarantine %s directly\n", t.addr, cause, t.dir)
	sp, err := spool.OpenReadOnly(t.dir)
	if err != nil {
		return nil, fmt.Errorf("the daemon does not answer and the quarantine cannot be read: %w", err)
	}
	return sp, nil
}

func (t *quarantineTarget) list(ctx context.Context, stdout, stderr io.Writer, limit int) error {
	ctx, cancel := context.WithTimeout(ctxOr(ctx), queueTimeout)
	defer cancel()
	l, err := t.client.QuarantineList(ctx, limit)
	if errors.Is(err, admin.ErrUnreachable) {
		sp, ferr := t.readOnly(stderr, err)
		if ferr != nil {
			return ferr
		}
		if l, err = offlineList(sp, limit, "quarantined"); err != nil {
			return err
		}
	}
	if err != nil {
		return quarantineError("list", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAGE\tSENDER\tRECIPIENTS\tCLIENT\tRULE")
	for _, m := range l.Messages {
		rcpts := strings.Join(m.Recipients, ",")
		if more := m.RcptCount - len(m.Recipients); more > 0 {
			rcpts += fmt.Sprintf(",+%d more", more)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", clean(m.ID), admin.ShortDuration(time.Duration(m.AgeSeconds)*time.Second), clean(sender(m.Sender)), clean(rcpts), clean(m.Client), clean(m.Rule))
	}
	tw.Flush()
	fmt.Fprintf(stdout, "%d message(s) in quarantine\n", l.Total)
	if l.Truncated {
		fmt.Fprintf(stderr, "moat: showing %d of %d messages (--limit)\n", len(l.Messages), l.Total)
	}
	return nil
}

func (t *quarantineTarget) show(ctx context.Context, stdout, stderr io.Writer, id string, body bool) error {
	if !spool.ValidID(id) {
		return fmt.Errorf("quarantine show: %q is not a quarantine id", id)
	}
	ctx, cancel := context.WithTimeout(ctxOr(ctx), queueTimeout)
	defer cancel()
	var sp *spool.Spool
	d, err := t.client.QuarantineShow(ctx, id)
	if errors.Is(err, admin.ErrUnreachable) {
		var ferr error
		if sp, ferr = t.readOnly(stderr, err); ferr != nil {
			return ferr
		}
		defer sp.Close()
		d, err = admin.QuarantineDetail(sp, id)
	}
	if err != nil {
		return quarantineError("show "+id, err)
	}
	if err := printShown(stdout, d, body, sp, id, func(w io.Writer) error { return t.client.QuarantineMessage(ctx, id, w) }); err != nil {
		return quarantineError("show "+id, err)
	}
	return nil
}

func (t *quarantineTarget) release(ctx context.Context, stdout, stderr io.Writer, id string) error {
	if !spool.ValidID(id) {
		return fmt.Errorf("quarantine release: %q is not a quarantine id", id)
	}
	ctx, cancel := context.WithTimeout(ctxOr(ctx), queueTimeout)
	defer cancel()
	newID, err := t.client.QuarantineRelease(ctx, id)
	if errors.Is(err, admin.ErrUnreachable) {
		t.direct(stderr, err)
		// bayes.learn.released_as_ham: the daemon is down, so its
		// classifier store can be opened here (learnops.go).
		learned, closeStore := offlineReleased(t.cfg, stderr)
		newID, err = quarantine.ReleaseOfflineThen(ctx, t.dir, t.spoolDir, id, learned, t.maxBytes())
		closeStore()
		err = offlineError(err)
		if err == nil {
			fmt.Fprintln(stderr, "moat: delivery starts when moat serve runs")
		}
	}
	if err != nil && newID == "" {
		return quarantineError("release "+id, err)
	}
	fmt.Fprintf(stdout, "released %s: queued as %s\n", id, newID)
	if err != nil {
		return quarantineError("release "+id, err)
	}
	return nil
}

func (t *quarantineTarget) delete(ctx context.Context, stdout, stderr io.Writer, id string) error {
	if !spool.ValidID(id) {
		return fmt.Errorf("quarantine delete: %q is not a quarantine id", id)
	}
	ctx, cancel := context.WithTimeout(ctxOr(ctx), queueTimeout)
	defer cancel()
	err := t.client.QuarantineDelete(ctx, id)
	if errors.Is(err, admin.ErrUnreachable) {
		t.direct(stderr, err)
		err = offlineError(quarantine.DeleteOffline(t.dir, id))
	}
	if err != nil {
		return quarantineError("delete "+id, err)
	}
	fmt.Fprintf(stdout, "deleted %s\n", id)
	return nil
}

// direct says on stderr that the daemon did not answer and the
// quarantine is worked on directly.
func (t *quarantineTarget) direct(stderr io.Writer, cause error) {
	fmt.Fprintf(stderr, "moat: %s: %v\nmoat: working on %s directly\n", t.addr, cause, t.dir)
}

// offlineError words a failure of an offline operation.
func offlineError(err error) error {
	if errors.Is(err, quarantine.ErrNoQuarantine) {
		return fmt.Errorf("the daemon does not answer and %w", err)
	}
	if err != nil {
		return lockedError(err)
	}
	return nil
}

// lockedError words a failure to open a spool read-write.
func lockedError(err error) error {
	if strings.Contains(err.Error(), "in use by another process") {
		return fmt.Errorf("moat serve seems to be running (it holds the spool lock) but its admin API does not answer; try again, or check admin.address: %w", err)
	}
	return err
}

// quarantineError words an API failure for the operator.
func quarantineError(what string, err error) error {
	var se *admin.StatusError
	switch {
	case errors.Is(err, spool.ErrNotFound), errors.As(err, &se) && se.Code == 404:
		return fmt.Errorf("quarantine %s: no such message", what)
	case errors.As(err, &se) && se.Code == 401:
		return fmt.Errorf("quarantine %s: the admin API refused the token (check admin.token_file)", what)
	case errors.As(err, &se):
		return fmt.Errorf("quarantine %s: %s", what, se.Text)
	}
	return fmt.Errorf("quarantine %s: %w", what, err)
}

// maxBytes bounds a released message read for learning: smtp.max_message_size.
func (t *quarantineTarget) maxBytes() int64 {
	if t.cfg == nil {
		return 0
	}
	return t.cfg.SMTP.MaxMessageSize
}
