package rules

import (
	"context"
	"time"
)

// StageResult is the verdict of one stage in a Test run.
type StageResult struct {
	Stage   Stage
	Rcpt    string // at the rcpt stage
	Verdict Verdict
}

// TestResult is the trace of an offline run over every stage.
type TestResult struct {
	Stages []StageResult
	Final  Verdict // the terminal verdict, or the data-stage verdict
	Score  float64
	Hits   []Hit // every hit of every stage, in order
}

// Test runs f through the rules of every stage of set offline:
// connect, helo, mail, rcpt (once per recipient of f.Env.Recipients, or
// once with f.Rcpt) and data (when f.Message is set), carrying the score
// and the hits, and stopping at the first terminal verdict. It runs rules
// only; gateway.RunOffline runs the whole pipeline, checks included, as
// moat rules test does. Rate limits and greylisting use fresh in-memory
// stores with clock (nil: time.Now), so a greylist action always defers on
// the first try.
func Test(ctx context.Context, set *Set, f Facts, clock func() time.Time) TestResult {
	e := NewEngine(set, EngineOptions{Clock: clock})
	var res TestResult
	var headers []Header
	var route string
	var redirect []string
	junk := false
	step := func(st Stage, facts *Facts) bool {
		v := e.Evaluate(ctx, st, facts)
		res.Stages = append(res.Stages, StageResult{Stage: st, Rcpt: facts.Rcpt, Verdict: v})
		res.Hits = append(res.Hits, v.Explain...)
		facts.Hits = AppendHits(facts.Hits, v)
		f.Score, f.Hits = v.Score, facts.Hits
		headers = append(headers, v.Headers...)
		junk = junk || v.Junk
		if v.Route != "" {
			route = v.Route
		}
		if v.Redirect != nil {
			redirect = v.Redirect
		}
		res.Final = v
		if v.Action == Accept {
			f.Accepted = true
		}
		return v.Action.Terminal() && v.Action != Accept
	}
	stop := false
	for _, st := range []Stage{StageConnect, StageHelo, StageMail} {
		if stop = step(st, &f); stop {
			break
		}
	}
	if !stop {
		rcpts := f.Env.Recipients
		if len(rcpts) == 0 && f.Rcpt != "" {
			rcpts = []string{f.Rcpt}
		}
		all := f.Env.Recipients
		for i, r := range rcpts {
			rf := f
			rf.Rcpt = r
			rf.Env.Recipients = all[:min(i, len(all))]
			if stop = step(StageRcpt, &rf); stop {
				break
			}
		}
	}
	if !stop && f.Message != nil {
		f.Rcpt = ""
		step(StageData, &f)
	}
	res.Final.Headers = headers
	res.Final.Route = route
	res.Final.Redirect = redirect
	res.Final.Junk = junk
	res.Score = f.Score
	return res
}
