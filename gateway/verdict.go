package gateway

import (
	"context"
	"strings"

	"go.uber.org/zap"

	"moat/internal/deadline"
	"moat/policy"
	"moat/rules"
)

// evaluate runs the rules of one stage over the session's facts and
// applies the verdict: a reject, tempfail or greylist becomes the reply
// to the command; accept, discard, quarantine, scores, headers, routes and
// redirects are carried in the envelope. rc is the recipient being added
// at the rcpt stage (its route may be changed by a route action).
func (s *session) evaluate(stage rules.Stage, rc *acceptedRcpt) error {
	if s.checks == nil || s.checks.Rules == nil {
		if stage == rules.StageConnect {
			return nil
		}
		s.waitIPRev()
		return nil
	}
	s.waitIPRev() // iprev and ptr are connect-stage facts
	f := &s.facts
	connStage := stage == rules.StageConnect || stage == rules.StageHelo
	if connStage {
		f.Env = policy.Envelope{}
		f.Accepted = s.connAcc
	} else {
		f.Env = policy.Envelope{Sender: s.env.sender, Recipients: rcptAddrs(s.env.rcpts), Size: s.env.size}
		f.SPF = s.env.spf
		f.Score = s.env.score
		f.Accepted = s.env.accepted
	}
	f.Rcpt = ""
	if rc != nil {
		f.Rcpt = rc.addr
	}
	ctx, cancel := deadline.WithTimeout(context.Background(), s.checks.timeout())
	defer cancel()
	v := s.checks.Rules.Evaluate(ctx, stage, f)
	if s.checks.RuleHits != nil && len(v.Explain) > 0 {
		s.checks.RuleHits(v.Explain)
	}

	if len(v.DryRunHits) > 0 {
		s.log.Info("dry-run rules matched", zap.String("stage", stage.String()), zap.Strings("rules", v.DryRunHits))
	}
	if connStage {
		s.facts.Score = v.Score
		s.connHead = append(s.connHead, v.Headers...)
	} else {
		s.env.score = v.Score
		s.env.headers = append(s.env.headers, v.Headers...)
	}
	if rc != nil && v.Route != "" {
		rc.route = v.Route
	}
	if len(v.Redirect) > 0 {
		s.redirect(v.Redirect)
	}
	switch v.Action {
	case rules.Reject, rules.Tempfail, rules.Greylist:
		if s.checks.Verdict != nil {
			s.checks.Verdict(v.Action.Verdict(), v.Rule, s.facts.Conn.IP.String())
		}
		s.pendingRule, s.pendingIncident = v.Rule, v.IncidentID
		fields := append(rules.Explain(v), zap.String("sender", s.env.sender))
		if rc != nil {
			fields = append(fields, zap.String("rcpt", rc.addr))
		}
		if v.Err != nil {
			s.log.Error("rule failed at run time; tempfailing", zap.Error(v.Err), zap.String("rule", v.Rule))
		}
		return s.fail(stage.String(), v.Reply, fields...)
	case rules.Accept:
		if connStage {
			s.connAcc = true
		} else {
			s.env.accepted = true
		}
	case rules.Discard:
		s.env.discard = true
		s.log.Info("rule discards the message", rules.Explain(v)...)
	case rules.Quarantine:
		s.env.quarantine = v.Rule
		s.log.Info("rule quarantines the message", rules.Explain(v)...)
	}
	if stage == rules.StageData && s.checks.Verdict != nil {
		a := v.Action
		if s.env.discard {
			a = rules.Discard
		} else if s.env.quarantine != "" {
			a = rules.Quarantine
		}
		s.checks.Verdict(a.Verdict(), v.Rule, s.facts.Conn.IP.String())
	}
	return nil
}

// redirect replaces the recipients with the operator's list (a rule's
// redirect action). The targets are routed normally; relay rights are
// not needed, the operator chose them.
func (s *session) redirect(to []string) {
	var rs []acceptedRcpt
	for _, a := range to {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		rs = append(rs, acceptedRcpt{addr: a, route: s.state.Router.Route(a).Route})
	}
	if len(rs) > 0 {
		s.env.rcpts = rs
	}
}
