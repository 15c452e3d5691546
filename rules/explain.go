package rules

import (
	"go.uber.org/zap"
)

// Explain returns the log fields of a verdict: the decision, the incident
// id, the score and each rule that matched with the facts it read.
func Explain(v Verdict) []zap.Field {
	action := string(v.Action)
	if action == "" {
		action = "continue"
	}
	fs := []zap.Field{zap.String("action", action), zap.Float64("score", v.Score)}
	if v.Rule != "" {
		fs = append(fs, zap.String("rule", v.Rule))
	}
	if v.IncidentID != "" {
		fs = append(fs, zap.String("incident", v.IncidentID))
	}
	if v.Reply != nil {
		fs = append(fs, zap.String("reply", v.Reply.Error()))
	}
	if v.Junk {
		fs = append(fs, zap.Bool("junk", true))
	}
	if v.Route != "" {
		fs = append(fs, zap.String("route", v.Route))
	}
	if len(v.Redirect) > 0 {
		fs = append(fs, zap.Strings("redirect", v.Redirect))
	}
	if len(v.DryRunHits) > 0 {
		fs = append(fs, zap.Strings("dry_run", v.DryRunHits))
	}
	if v.Err != nil {
		fs = append(fs, zap.NamedError("rule_error", v.Err))
	}
	if len(v.Explain) > 0 {
		fs = append(fs, zap.Any("hits", ExplainMap(v)["hits"]))
	}
	return fs
}

// ExplainMap is Explain as a plain map (for JSON output of `moat rules test`).
func ExplainMap(v Verdict) map[string]any {
	hits := make([]map[string]any, 0, len(v.Explain))
	for _, h := range v.Explain {
		m := map[string]any{"rule": h.Rule, "stage": h.Stage.String(), "action": string(h.Action)}
		if h.DryRun {
			m["dry_run"] = true
		}
		if h.Note != "" {
			m["note"] = h.Note
		}
		if len(h.Facts) > 0 {
			m["facts"] = h.Facts
		}
		hits = append(hits, m)
	}
	out := map[string]any{"action": string(v.Action), "score": v.Score, "hits": hits}
	if v.Rule != "" {
		out["rule"] = v.Rule
	}
	if v.IncidentID != "" {
		out["incident"] = v.IncidentID
	}
	if v.Junk {
		out["junk"] = true
	}
	if v.Reply != nil {
		out["reply"] = v.Reply.Error()
	}
	return out
}
