package gateway

import (
	"fmt"
	"sort"

	"moat/relay/spool"
	"moat/rules"
)

// What a quarantined message keeps of the decision (spool.Reason), for
// `moat quarantine show`: the deciding rule, the score, the incident id
// the logs carry, and the facts the matching rules read.

// maxReasonFact bounds one "rule: fact=value" line.
const maxReasonFact = 200

// quarantineReason is the short form of a quarantine verdict.
func quarantineReason(v rules.Verdict) *spool.Reason {
	r := &spool.Reason{Rule: v.Rule, Score: v.Score, Incident: v.IncidentID}
	for _, h := range v.Explain {
		if h.DryRun {
			continue
		}
		keys := make([]string, 0, len(h.Facts))
		for k := range h.Facts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if len(r.Facts) == spool.MaxReasonFacts {
				return r
			}
			f := fmt.Sprintf("%s: %s=%v", h.Rule, k, h.Facts[k])
			if len(f) > maxReasonFact {
				f = f[:maxReasonFact] + "…"
			}
			r.Facts = append(r.Facts, f)
		}
	}
	return r
}

// quarantineWhy is what the quarantined message of t keeps: the rule's
// reason, or for a scanner's quarantine (after the rules) its name and
// the score.
func (t *Txn) quarantineWhy() *spool.Reason {
	if w := t.QuarantineWhy; w != nil && w.Rule == t.Quarantine {
		w.Score = t.Score
		return w
	}
	return &spool.Reason{Rule: t.Quarantine, Score: t.Score}
}
