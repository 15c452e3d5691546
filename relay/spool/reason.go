package spool

import "fmt"

// Reason says why the rules set a message aside into the quarantine: the
// deciding rule, the score of the transaction, the incident id of the
// decision (the same as in the logs, `moat rules explain`) and the facts
// the matching rules read. It is stored in the quarantined message's
// envelope (Envelope.Quarantine) for `moat quarantine show`; a message
// quarantined before the field existed has none.
type Reason struct {
	Rule     string   `json:"rule"`
	Score    float64  `json:"score"`
	Incident string   `json:"incident,omitempty"`
	Facts    []string `json:"facts,omitempty"` // "rule: fact=value", at most MaxReasonFacts
}

// MaxReasonFacts bounds Reason.Facts; the writer keeps the first ones.
const MaxReasonFacts = 32

// trimReason cuts what a record keeps of r to the limits checkReason
// enforces.
func trimReason(r *Reason) *Reason {
	if r == nil {
		return nil
	}
	c := *r
	c.Rule, c.Incident = truncate(c.Rule, maxField), truncate(c.Incident, maxField)
	c.Facts = nil
	for i, f := range r.Facts {
		if i == MaxReasonFacts {
			break
		}
		c.Facts = append(c.Facts, truncate(f, maxField))
	}
	return &c
}

func checkReason(id string, r *Reason) error {
	if r == nil {
		return nil
	}
	if len(r.Facts) > MaxReasonFacts {
		return fmt.Errorf("spool: %s: %d quarantine facts, limit %d", id, len(r.Facts), MaxReasonFacts)
	}
	for _, s := range append([]string{r.Rule, r.Incident}, r.Facts...) {
		if len(s) > maxField {
			return fmt.Errorf("spool: %s: quarantine field of %d bytes exceeds %d", id, len(s), maxField)
		}
	}
	return nil
}
