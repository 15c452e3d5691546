package gateway

import (
	"context"
	"strings"

	"go.uber.org/zap"

	"moat/policy/bayes"
	"moat/policy/bayes/learner"
	"moat/rules"
)

// GroupSpamTrap is the fact group of the spam trap check.
const GroupSpamTrap = "spamtrap"

// SpamTrapFacts are what the spam trap check found: rules read
// spamtrap.hit (a trap is among the recipients) and spamtrap.count.
type SpamTrapFacts struct {
	Hit   bool `expr:"hit"`
	Count int  `expr:"count"` // recipients that are traps
}

// SpamTrap is the data-stage check of bayes.learn.spam_traps: addresses
// no person uses. Mail to a trap is learned as spam (through the
// learner's bounded queue: the 250 never waits for the store); mail to
// traps only is discarded (accepted with 250 and not delivered).
//
// Trap addresses must be accepted at RCPT like any recipient (a local
// user or alias, or a relay domain): a trap in no domain of ours is
// refused as relaying before this check sees it.
type SpamTrap struct {
	traps map[string]bool
	learn *learner.Learner
}

// NewSpamTrap returns the check for the lower-cased addresses traps; l
// learns (nil: facts and discard only).
func NewSpamTrap(traps []string, l *learner.Learner) *SpamTrap {
	s := &SpamTrap{traps: make(map[string]bool, len(traps)), learn: l}
	for _, a := range traps {
		s.traps[strings.ToLower(a)] = true
	}
	return s
}

// SpamTrapFactGroup is the rules' view of the check's facts.
func SpamTrapFactGroup() rules.FactGroup {
	return rules.FactGroup{Name: GroupSpamTrap, Stage: rules.StageData, Zero: &SpamTrapFacts{}}
}

// Name implements Check.
func (s *SpamTrap) Name() string { return "spamtrap" }

// CheckData counts the trap recipients, learns the message as spam and
// discards it when every recipient is a trap.
func (s *SpamTrap) CheckData(_ context.Context, t *Txn) error {
	f := &SpamTrapFacts{}
	for _, r := range t.Rcpts {
		// RFC 5321 §2.4 lets a local part be case-sensitive; traps, like
		// moat's mailboxes, are matched without case.
		if s.traps[strings.ToLower(r.Addr)] {
			f.Count++
		}
	}
	f.Hit = f.Count > 0
	t.Facts.SetGroup(GroupSpamTrap, f)
	if !f.Hit {
		return nil
	}
	// Our own users and networks are not taught to the classifier as
	// spam: a trap they write to is a typo or a test.
	if m := t.Facts.Message; m != nil && !t.May() {
		if !s.learn.Enqueue(learner.SourceTrap, bayes.ClassSpam, m) {
			t.log.Debug("spam trap: learning job dropped")
		}
	}
	if f.Count == len(t.Rcpts) {
		// RFC 5321 §6.2: mail judged unwanted may be dropped after
		// acceptance; nobody reads a trap, so nobody misses it.
		t.Discard = true
		t.log.Info("spam trap: every recipient is a trap; discarding", zap.Int("traps", f.Count))
	}
	return nil
}

var _ DataChecker = (*SpamTrap)(nil)
