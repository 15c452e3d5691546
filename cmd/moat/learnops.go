package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"moat/gateway"
	"moat/mailbox"
	"moat/policy/bayes"
	"moat/policy/bayes/junkwatch"
	"moat/policy/bayes/learner"
	"moat/policy/content"
	"moat/relay/quarantine"
	"moat/relay/route"
	"moat/relay/spool"
	"moat/rules"
)

// learnOps is the daemon's learning from operations (policy/bayes
// README, "Learning from operations"): quarantine releases as ham, spam
// traps and autolearn through the learner's bounded queue, and the
// Junk folder watcher. Nil (the classifier off) does nothing.
type learnOps struct {
	cfg     bayes.Config
	learner *learner.Learner
	watcher *junkwatch.Watcher
	traps   map[string]bool
	log     *zap.Logger

	learned, failed, dropped *prometheus.CounterVec

	cancel context.CancelFunc
	done   chan struct{}
}

var learnSources = []string{learner.SourceRelease, learner.SourceTrap, learner.SourceJunkFolder, learner.SourceAutolearn}

// newLearnOps builds the learning of cfg on the daemon's classifier c
// (nil: nothing to learn with; returns nil). reg gets the metrics (nil:
// none).
func newLearnOps(cfg *Config, c *bayes.Classifier, reg prometheus.Registerer, log *zap.Logger) (*learnOps, error) {
	if c == nil {
		return nil, nil
	}
	lo := &learnOps{cfg: cfg.Bayes, log: log, traps: map[string]bool{}}
	for _, t := range cfg.Bayes.Learn.Traps() {
		lo.traps[t] = true
	}
	lo.learned = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "moat_bayes_learned_total", Help: "Messages the classifier learned from operations (new, or moved to the other class), by source and class.",
	}, []string{"source", "class"})
	lo.failed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "moat_bayes_learn_errors_total", Help: "Learning jobs from operations that failed (store errors), by source.",
	}, []string{"source"})
	lo.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "moat_bayes_learn_dropped_total", Help: "Learning jobs dropped because the learning queue was full, by source.",
	}, []string{"source"})
	for _, s := range learnSources {
		lo.learned.WithLabelValues(s, "spam")
		lo.learned.WithLabelValues(s, "ham")
		lo.failed.WithLabelValues(s)
		lo.dropped.WithLabelValues(s)
	}
	if reg != nil {
		if err := reg.Register(lo.learned); err != nil {
			return nil, err
		}
		if err := reg.Register(lo.failed); err != nil {
			return nil, err
		}
		if err := reg.Register(lo.dropped); err != nil {
			return nil, err
		}
	}
	lo.learner = learner.New(learner.Options{
		Classifier: c,
		Input:      gateway.ClassifierInput,
		QueueSize:  cfg.Bayes.Learn.QueueSize,
		Observe:    lo.observe,
	})
	if folder := junkFolderOf(cfg); cfg.Bayes.Learn.JunkScanInterval > 0 && folder != "" {
		w, err := junkwatch.New(junkwatch.Options{
			Root:     cfg.Mailboxes.Root,
			State:    filepath.Join(cfg.DataDir, "junkwatch.json"),
			Folder:   folder,
			MaxBytes: cfg.SMTP.MaxMessageSize,
			Learn: func(ctx context.Context, m *content.Message, cl bayes.Class) (bayes.Outcome, error) {
				return lo.learner.Learn(ctx, learner.SourceJunkFolder, cl, m)
			},
		})
		if err != nil {
			return nil, err
		}
		lo.watcher = w
	}
	return lo, nil
}

// observe counts and logs a learning job's end.
func (lo *learnOps) observe(e learner.Event) {
	switch {
	case e.Dropped:
		lo.dropped.WithLabelValues(e.Source).Inc()
	case e.Err != nil:
		lo.failed.WithLabelValues(e.Source).Inc()
		lo.log.Warn("learning failed", zap.String("source", e.Source), zap.String("class", e.Class.String()), zap.Error(e.Err))
	case e.Outcome == bayes.Learned || e.Outcome == bayes.Moved:
		lo.learned.WithLabelValues(e.Source, e.Class.String()).Inc()
		lo.log.Debug("learned", zap.String("source", e.Source), zap.String("class", e.Class.String()), zap.String("outcome", e.Outcome.String()))
	}
}

// start starts the learning worker and the Junk folder watcher.
func (lo *learnOps) start() {
	if lo == nil {
		return
	}
	lo.learner.Start()
	ctx, cancel := context.WithCancel(context.Background())
	lo.cancel, lo.done = cancel, make(chan struct{})
	go func() {
		defer close(lo.done)
		if lo.watcher == nil {
			return
		}
		lo.watcher.Run(ctx, lo.cfg.Learn.JunkScanInterval, func(st junkwatch.Stats, err error) {
			if err != nil {
				lo.log.Warn("junk folder scan", zap.Error(err))
			}
			if st.Spam+st.Ham > 0 || st.Truncated {
				lo.log.Info("junk folder scan", zap.Int("files", st.Files), zap.Int("spam", st.Spam),
					zap.Int("ham", st.Ham), zap.Int("errors", st.Errors), zap.Bool("truncated", st.Truncated))
			}
		})
	}()
}

// close stops the watcher, then the worker (after its queued jobs);
// call it before the classifier's store is closed.
func (lo *learnOps) close() {
	if lo == nil {
		return
	}
	if lo.cancel != nil {
		lo.cancel()
		<-lo.done
	}
	lo.learner.Close()
}

// queue is the learner of the spam trap check (nil: traps do not learn).
func (lo *learnOps) queue() *learner.Learner {
	if lo == nil {
		return nil
	}
	return lo.learner
}

// released is the quarantine's release hook: bayes.learn.released_as_ham
// learns the released message as ham. A failure is logged (and counted);
// it never fails the release.
func (lo *learnOps) released() quarantine.Released {
	if lo == nil || !lo.cfg.Learn.ReleasedAsHam {
		return nil
	}
	return func(ctx context.Context, env *spool.Envelope, raw []byte) {
		m, err := content.Parse(raw, content.Options{})
		if err != nil {
			lo.log.Warn("released message not learned: it does not parse", zap.String("queue_id", env.ID), zap.Error(err))
			return
		}
		// The release's own context may be short (an HTTP request):
		// the learner bounds the write with its timeout.
		if _, err := lo.learner.Learn(context.WithoutCancel(ctx), learner.SourceRelease, bayes.ClassHam, m); err == nil {
			lo.log.Info("released message learned as ham", zap.String("queue_id", env.ID))
		}
	}
}

// afterData is the gateway's Checks.AfterData: autolearn (nil when off).
func (lo *learnOps) afterData() func(*gateway.Txn, error) {
	if lo == nil || !lo.cfg.Autolearn.Enabled {
		return nil
	}
	return func(t *gateway.Txn, refusal error) {
		if cl := autolearnClass(lo.cfg.Autolearn, lo.traps, t, refusal); cl != bayes.ClassNone {
			lo.learner.Enqueue(learner.SourceAutolearn, cl, t.Facts.Message)
		}
	}
}

// autolearnClass is what autolearn learns of a message after the data
// stage's verdict (see the policy/bayes README): only inbound mail (not
// from our users or trusted networks), not mail to a spam trap (learned
// as spam already), not a temporary refusal (it comes again). The score
// is the rules' final score without the score rules that read bayes
// facts (SpamAssassin leaves its Bayes score out the same way, so that
// the classifier does not vote for its own lessons): at least spam_score
// is spam (rejected mail too), at most ham_score is ham when the message
// was accepted for delivery (not discarded or quarantined).
func autolearnClass(a bayes.AutolearnConfig, traps map[string]bool, t *gateway.Txn, refusal error) bayes.Class {
	if !a.Enabled || t.Facts.Message == nil || t.May() {
		return bayes.ClassNone
	}
	for _, r := range t.Rcpts {
		if traps[strings.ToLower(r.Addr)] {
			return bayes.ClassNone
		}
	}
	if refusal != nil && t.Verdict.Action != rules.Reject {
		return bayes.ClassNone
	}
	score := t.Score - bayesScore(t.Verdict.Explain)
	switch {
	case score >= a.SpamScore:
		return bayes.ClassSpam
	case score <= a.HamScore && refusal == nil && !t.Discard && t.Quarantine == "":
		return bayes.ClassHam
	}
	return bayes.ClassNone
}

// bayesScore is the score the matched score rules that read a bayes
// fact added.
func bayesScore(hits []rules.Hit) float64 {
	var s float64
	for _, h := range hits {
		if h.Action != rules.Score || h.DryRun {
			continue
		}
		for k := range h.Facts {
			if k == gateway.GroupBayes || strings.HasPrefix(k, gateway.GroupBayes+".") {
				if v, err := strconv.ParseFloat(h.Note, 64); err == nil {
					s += v
				}
				break
			}
		}
	}
	return s
}

// junkFolderOf is the Maildir++ folder the Junk watcher reads: the one
// junk mail is delivered into; "" when junk goes to the inbox (then no
// move into a Junk folder can be told from the rest).
func junkFolderOf(cfg *Config) string {
	switch f := cfg.Mailboxes.JunkFolder; f {
	case "":
		return mailbox.DefaultJunkFolder
	case "INBOX":
		return ""
	default:
		return f
	}
}

// validateSpamTraps refuses a spam trap that moat would not accept at
// RCPT: one in no local or relay domain (it would be refused as
// relaying, so it would never be learned from). serve and check-config
// share it through Config.Validate.
func (c *Config) validateSpamTraps() error {
	traps := c.Bayes.Learn.Traps()
	if len(traps) == 0 {
		return nil
	}
	router := route.NewRouter(c.routeConfig())
	var bad []string
	for i, t := range traps {
		if !strings.Contains(t, "@") {
			continue // Bayes.Validate names it
		}
		if router.Route(t).Relay {
			bad = append(bad, fmt.Sprintf("bayes.learn.spam_traps[%d]: %q is in no local or relay domain: moat would refuse it at RCPT", i, c.Bayes.Learn.SpamTraps[i]))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s", strings.Join(bad, "\n"))
	}
	return nil
}

// offlineReleased is the release hook of `moat quarantine release` when
// the daemon is down: it opens the classifier's store (when bayes is on
// and released_as_ham) and learns the message as ham. Every failure is a
// note on stderr; the release stands. The returned close releases the
// store.
func offlineReleased(cfg *Config, stderr io.Writer) (quarantine.Released, func()) {
	if cfg == nil || !cfg.Bayes.Enabled || !cfg.Bayes.Learn.ReleasedAsHam {
		return nil, func() {}
	}
	var store bayes.Store
	fn := func(ctx context.Context, env *spool.Envelope, raw []byte) {
		s, _, err := openBayesStore(cfg, false, learnRedisTimeout)
		if err != nil {
			fmt.Fprintf(stderr, "moat: released message not learned as ham: %v\n", err)
			return
		}
		store = s
		m, err := content.Parse(raw, content.Options{})
		if err != nil {
			fmt.Fprintf(stderr, "moat: released message not learned as ham: %v\n", err)
			return
		}
		l := learner.New(learner.Options{Classifier: bayes.New(s, cfg.Bayes.Options()), Input: gateway.ClassifierInput, Timeout: 30 * time.Second})
		if _, err := l.Learn(ctx, learner.SourceRelease, bayes.ClassHam, m); err != nil {
			fmt.Fprintf(stderr, "moat: released message not learned as ham: %v\n", err)
			return
		}
		fmt.Fprintf(stderr, "moat: released message learned as ham\n")
	}
	return fn, func() {
		if store != nil {
			store.Close()
		}
	}
}
