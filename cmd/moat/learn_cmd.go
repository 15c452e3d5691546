package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"moat/policy/bayes"
)

const (
	// maxLearnFile bounds one message file (or mbox) read by moat learn.
	maxLearnFile = 64 << 20
	// maxLearnMessages bounds the messages of one run.
	maxLearnMessages = 10_000_000
	// maxMboxMessage bounds one message split from an mbox.
	maxMboxMessage = 32 << 20
)

// learnCommand is `moat learn`: it trains the classifier (policy/bayes)
// from message files.
//
// With the bbolt store, <data_dir>/bayes.db belongs to one process at a
// time (bbolt locks the file): a running `moat serve` holds it, so learn
// says so and stops rather than wait. Stop the daemon to learn in bulk, or
// set cluster.redis: the Redis store is shared by the daemon, the fleet and
// this command at the same time.
func learnCommand() *cobra.Command {
	var o learnOpts
	cmd := &cobra.Command{
		Use:   "learn spam|ham PATH... | learn --forget PATH... | learn stats|prune",
		Short: "Teach the classifier spam and ham, forget messages, or show what it learned",
		Long: `Teach the Bayesian classifier (bayes: in the configuration).

  moat learn --config moat.yaml spam PATH...   learn messages as spam
  moat learn --config moat.yaml ham PATH...    learn messages as ham
  moat learn --config moat.yaml --forget PATH...
  moat learn --config moat.yaml stats
  moat learn --config moat.yaml prune          drop tokens seen once (bbolt)

A PATH is a message file, an mbox file, a directory of message files (read
recursively), or a Maildir (its cur/ and new/). A message learned twice
counts once; learning it as the other class moves it.

The bbolt store (<data_dir>/bayes.db) is held by a running moat serve:
stop it to learn, or use Redis (cluster.redis), which both share.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(ctxOr(cmd.Context()), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return o.run(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), args)
		},
	}
	cmd.Flags().StringVar(&o.config, "config", "", "configuration file (its data_dir, bayes and cluster.redis are used)")
	cmd.Flags().BoolVar(&o.forget, "forget", false, "forget the messages at PATH... instead of learning them")
	cmd.Flags().BoolVar(&o.noProgress, "no-progress", false, "no progress bar, even on a terminal")
	return cmd
}

type learnOpts struct {
	config     string
	forget     bool
	noProgress bool
}

func (o *learnOpts) run(ctx context.Context, stdout, stderr io.Writer, args []string) error {
	cfg, err := loadConfig(o.config)
	if err != nil {
		return fmt.Errorf("learn: %w", err)
	}
	class := bayes.ClassNone
	paths := args
	switch {
	case o.forget:
	case args[0] == "stats" && len(args) == 1:
	case args[0] == "prune" && len(args) == 1:
		return o.prune(ctx, stdout, cfg)
	case args[0] == "spam" || args[0] == "ham":
		if len(args) < 2 {
			return errors.New("learn: give at least one PATH after " + args[0])
		}
		class, _ = bayes.ParseClass(args[0])
		paths = args[1:]
	default:
		return fmt.Errorf("learn: %q: want spam, ham, stats or prune (or --forget)", args[0])
	}
	readOnly := class == bayes.ClassNone && !o.forget
	var files []string
	if !readOnly {
		// Before the store is opened (and created): a wrong PATH changes nothing.
		if files, err = collectMessageFiles(paths, stderr); err != nil {
			return fmt.Errorf("learn: %w", err)
		}
	}
	store, where, err := openBayesStore(cfg, readOnly, learnRedisTimeout)
	if err != nil {
		return fmt.Errorf("learn: %w", err)
	}
	defer store.Close()
	c := bayes.New(store, cfg.Bayes.Options())
	if readOnly {
		return learnStats(ctx, stdout, c, cfg.Bayes, where)
	}
	return o.learn(ctx, stdout, stderr, c, class, files)
}

// Redis timeouts of the classifier's store: a command-line run may wait;
// the daemon asks while a client waits for its reply to DATA.
const (
	learnRedisTimeout = 10 * time.Second
	liveRedisTimeout  = 500 * time.Millisecond
)

// openBayesStore opens the store the configuration names; where describes
// it for the user. readOnly opens bbolt shared (offline runs); each Redis
// call is bounded by redisTimeout.
func openBayesStore(cfg *Config, readOnly bool, redisTimeout time.Duration) (bayes.Store, string, error) {
	kind, err := cfg.Bayes.StoreKind(cfg.Cluster.Enabled())
	if err != nil {
		return nil, "", err
	}
	opt := bayes.StoreOptions{DataDir: cfg.DataDir, KeyPrefix: cfg.Cluster.Redis.KeyPrefix, RedisTimeout: redisTimeout,
		Bolt: bayes.BoltOptions{LockTimeout: time.Second, NoSync: true, ReadOnly: readOnly}}
	if kind == bayes.StoreRedis {
		r := cfg.Cluster.Redis
		ro, err := r.ClientOptions(redisTimeout)
		if err != nil {
			return nil, "", err
		}
		rdb := redis.NewClient(ro)
		opt.Redis = rdb
		s, err := cfg.Bayes.OpenStore(opt)
		if err != nil {
			rdb.Close()
			return nil, "", err
		}
		return closeBoth{s, rdb}, "redis " + r.Address, nil
	}
	path := filepath.Join(cfg.DataDir, "bayes.db")
	if readOnly {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return bayes.NewMemStore(), path + " (not created yet)", nil
		}
	} else if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, "", fmt.Errorf("data_dir: %w", err)
	}
	s, err := cfg.Bayes.OpenStore(opt)
	if errors.Is(err, bayes.ErrLocked) {
		return nil, "", fmt.Errorf("%s is in use by another process, most likely a running `moat serve`: "+
			"stop it while learning, or share the classifier through Redis (cluster.redis)", path)
	}
	return s, path, err
}

// prune drops the tokens of the bbolt store seen in one message only.
func (o *learnOpts) prune(ctx context.Context, w io.Writer, cfg *Config) error {
	store, where, err := openBayesStore(cfg, false, learnRedisTimeout)
	if err != nil {
		return fmt.Errorf("learn prune: %w", err)
	}
	defer store.Close()
	b, ok := store.(*bayes.BoltStore)
	if !ok {
		return fmt.Errorf("learn prune: %s: the Redis store prunes itself through bayes.token_ttl", where)
	}
	n, err := b.Prune(ctx, 1)
	if err != nil {
		return fmt.Errorf("learn prune: %w", err)
	}
	fmt.Fprintf(w, "%s: removed %d tokens seen in one message only\n", where, n)
	return nil
}

// closeBoth closes a Redis store and its client.
type closeBoth struct {
	bayes.Store
	rdb *redis.Client
}

func (c closeBoth) Close() error { return errors.Join(c.Store.Close(), c.rdb.Close()) }

func learnStats(ctx context.Context, w io.Writer, c *bayes.Classifier, cfg bayes.Config, where string) error {
	tot, err := c.Store().Stats(ctx)
	if err != nil {
		return fmt.Errorf("learn stats: %w", err)
	}
	fmt.Fprintf(w, "store:        %s\n", where)
	fmt.Fprintf(w, "spam learned: %d\n", tot.Spam)
	fmt.Fprintf(w, "ham learned:  %d\n", tot.Ham)
	if tot.Tokens >= 0 {
		fmt.Fprintf(w, "tokens:       %d\n", tot.Tokens)
	}
	ready := "yes"
	if tot.Spam < cfg.MinSpam || tot.Ham < cfg.MinHam {
		ready = fmt.Sprintf("no (needs %d spam and %d ham)", cfg.MinSpam, cfg.MinHam)
	}
	fmt.Fprintf(w, "ready:        %s\n", ready)
	return nil
}

// learnSummary counts what a run did.
type learnSummary struct {
	done                              int
	learned, known, moved, unreadable int
	forgotSpam, forgotHam, notLearned int
}

func (o *learnOpts) learn(ctx context.Context, stdout, stderr io.Writer, c *bayes.Classifier, class bayes.Class, files []string) error {
	var bar *progress
	if b := newProgressBar(stderr, len(files), o.noProgress); b != nil {
		bar = &progress{b}
	}
	var sum learnSummary
	var runErr error
	one := func(raw []byte) error {
		in, d, err := bayes.Parse(raw)
		if err != nil {
			sum.unreadable++
			return nil
		}
		if o.forget {
			cl, err := c.Forget(ctx, in, d)
			switch {
			case err != nil:
				return err
			case cl == bayes.ClassSpam:
				sum.forgotSpam++
			case cl == bayes.ClassHam:
				sum.forgotHam++
			default:
				sum.notLearned++
			}
			return nil
		}
		out, err := c.Learn(ctx, in, d, class)
		if err != nil {
			return err
		}
		switch out {
		case bayes.Learned:
			sum.learned++
		case bayes.AlreadyKnown:
			sum.known++
		case bayes.Moved:
			sum.moved++
		}
		return nil
	}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			runErr = fmt.Errorf("learn: interrupted after %d of %d files", sum.done, len(files))
			break
		}
		if err := eachMessage(f, one); err != nil {
			var re readError
			if !errors.As(err, &re) {
				runErr = fmt.Errorf("learn: %s: %w", f, err)
				break
			}
			fmt.Fprintf(stderr, "moat: %v\n", err)
			sum.unreadable++
		}
		sum.done++
		bar.update(sum)
	}
	bar.finish()
	if o.forget {
		fmt.Fprintf(stdout, "forgot %d (%d spam, %d ham), not learned %d, unreadable %d\n",
			sum.forgotSpam+sum.forgotHam, sum.forgotSpam, sum.forgotHam, sum.notLearned, sum.unreadable)
	} else {
		fmt.Fprintf(stdout, "%s: learned %d, already known %d, moved %d, unreadable %d\n",
			class, sum.learned, sum.known, sum.moved, sum.unreadable)
	}
	if tot, err := c.Store().Stats(ctx); err == nil {
		fmt.Fprintf(stdout, "store now holds %d spam and %d ham\n", tot.Spam, tot.Ham)
	}
	return runErr
}

// readError is a file that could not be read; the run goes on.
type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }

// collectMessageFiles expands the PATHs: a file is itself; a Maildir (a
// directory with cur/ or new/) gives the files of cur/ and new/ (tmp/
// holds deliveries in progress); any other directory gives every regular
// file under it, dot-files excepted.
func collectMessageFiles(paths []string, stderr io.Writer) ([]string, error) {
	var out []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			out = append(out, p)
			continue
		}
		roots := []string{p}
		if isMaildir(p) {
			roots = []string{filepath.Join(p, "cur"), filepath.Join(p, "new")}
			// Maildir++ folders (.Junk, .Archive …) live beside cur/ and new/.
			if ents, err := os.ReadDir(p); err == nil {
				for _, e := range ents {
					if q := filepath.Join(p, e.Name()); e.IsDir() && strings.HasPrefix(e.Name(), ".") && isMaildir(q) {
						out = appendFiles(appendFiles(out, filepath.Join(q, "cur")), filepath.Join(q, "new"))
					}
				}
			}
		}
		for _, root := range roots {
			err := filepath.WalkDir(root, func(q string, d fs.DirEntry, err error) error {
				if err != nil {
					if errors.Is(err, fs.ErrNotExist) && q == root {
						return nil
					}
					fmt.Fprintf(stderr, "moat: %v\n", err)
					return nil
				}
				name := d.Name()
				if strings.HasPrefix(name, ".") && q != root {
					if d.IsDir() {
						return filepath.SkipDir
					}
					return nil
				}
				if d.IsDir() {
					if q != root && isMaildir(q) {
						// A Maildir++ folder: only its cur/ and new/.
						for _, sub := range []string{"cur", "new"} {
							out = appendFiles(out, filepath.Join(q, sub))
						}
						return filepath.SkipDir
					}
					return nil
				}
				if isMessageFile(q, d) {
					out = append(out, q)
				}
				if len(out) > maxLearnMessages {
					return fmt.Errorf("more than %d files", maxLearnMessages)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// isMessageFile reports whether a directory entry may hold a message: a
// regular file, or a link to one (corpora are often trees of links).
func isMessageFile(path string, d fs.DirEntry) bool {
	if d.Type()&fs.ModeSymlink != 0 {
		fi, err := os.Stat(path)
		return err == nil && fi.Mode().IsRegular()
	}
	return d.Type().IsRegular()
}

func appendFiles(out []string, dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return out
	}
	for _, e := range ents {
		if p := filepath.Join(dir, e.Name()); isMessageFile(p, e) && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, p)
		}
	}
	return out
}

func isMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err == nil && fi.IsDir() {
			return true
		}
	}
	return false
}

// eachMessage calls fn with each message of file: the file itself, or
// each message of an mbox (a file whose first line starts "From ").
func eachMessage(file string, fn func([]byte) error) error {
	f, err := os.Open(file)
	if err != nil {
		return readError{err}
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxLearnFile+1))
	if err != nil {
		return readError{fmt.Errorf("%s: %w", file, err)}
	}
	if len(raw) > maxLearnFile {
		return readError{fmt.Errorf("%s: larger than %d MiB, skipped", file, maxLearnFile>>20)}
	}
	if !bytes.HasPrefix(raw, []byte("From ")) {
		return fn(raw)
	}
	return eachMboxMessage(raw, fn)
}

// eachMboxMessage splits an mbox (RFC 4155): a message starts at a line
// beginning "From " after an empty line (or at the start); ">From " lines
// are unquoted (mboxrd). Messages over maxMboxMessage are skipped.
func eachMboxMessage(raw []byte, fn func([]byte) error) error {
	var msg bytes.Buffer
	flush := func() error {
		if msg.Len() == 0 || msg.Len() > maxMboxMessage {
			msg.Reset()
			return nil
		}
		b := bytes.Clone(msg.Bytes())
		msg.Reset()
		return fn(b)
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 64<<10), maxMboxMessage)
	prevEmpty := true
	for sc.Scan() {
		line := sc.Bytes()
		if prevEmpty && bytes.HasPrefix(line, []byte("From ")) {
			if err := flush(); err != nil {
				return err
			}
			prevEmpty = false
			continue
		}
		if bytes.HasPrefix(line, []byte(">")) && bytes.HasPrefix(bytes.TrimLeft(line, ">"), []byte("From ")) {
			line = line[1:]
		}
		prevEmpty = len(bytes.TrimRight(line, "\r")) == 0
		if msg.Len() <= maxMboxMessage {
			msg.Write(line)
			msg.WriteByte('\n')
		}
	}
	if err := sc.Err(); err != nil {
		return readError{err}
	}
	return flush()
}

// progress is the learn run's bar (progress.go).
type progress struct{ *progressBar }

func (p *progress) update(s learnSummary) {
	if p == nil {
		return
	}
	p.draw(s.done, fmt.Sprintf("learned %d  known %d  moved %d  forgot %d  unreadable %d",
		s.learned, s.known, s.moved, s.forgotSpam+s.forgotHam, s.unreadable))
}

func (p *progress) finish() {
	if p != nil {
		p.progressBar.finish()
	}
}
