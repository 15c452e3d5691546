package gateway

import (
	"context"
	"strings"
	"time"

	"moat/policy/analysis"
	"moat/policy/bayes"
	"moat/policy/content"
	"moat/policy/uribl"
	"moat/relay/route"
	"moat/rules"
)

// ContentOptions are what the content fact groups need: the bounds of the
// message analysis and the optional URI blocklist checker.
type ContentOptions struct {
	Analysis analysis.Options
	// URIBL asks the URI blocklists; nil: the uribl facts stay zero.
	URIBL *uribl.Checker
	// Bayes is the learning classifier; nil: bayes.ready stays false.
	Bayes *bayes.Classifier
	// Now is the time a message is judged at (Date in the future or far
	// in the past); nil: the time of the check. An offline run over
	// stored mail judges each message at the time it was received
	// (ReceivedTime).
	Now func(*content.Message) time.Time
}

// The names of the content fact groups, as rules read them.
const (
	GroupHeaders = "hdr"
	GroupMIME    = "mime"
	GroupHTML    = "html"
	GroupURLs    = "urls"
	GroupText    = "text"
	GroupURIBL   = "uribl"
	GroupBayes   = "bayes"
)

// ContentFactGroups are the data-stage fact groups of the message content:
// the message analysis (hdr, mime, html, urls, text: package
// policy/analysis), the URI blocklists (uribl) and the classifier (bayes). Each is computed when a
// rule reads it, at most once per message; the analysis behind them is
// made once per message whichever group asks first.
func ContentFactGroups(o ContentOptions) []rules.FactGroup {
	group := func(name string, zero any, get func(*analysis.Result) any) rules.FactGroup {
		return rules.FactGroup{Name: name, Stage: rules.StageData, Zero: zero, Compute: func(_ context.Context, f *rules.Facts) any {
			if r := o.analysisOf(f); r != nil {
				return get(r)
			}
			return nil
		}}
	}
	return []rules.FactGroup{
		group(GroupHeaders, &analysis.HeaderFacts{}, func(r *analysis.Result) any { return r.Headers() }),
		group(GroupMIME, &analysis.MIMEFacts{}, func(r *analysis.Result) any { return r.MIME() }),
		group(GroupHTML, &analysis.HTMLFacts{}, func(r *analysis.Result) any { return r.HTML() }),
		group(GroupURLs, &analysis.URLFacts{}, func(r *analysis.Result) any { return r.URLs() }),
		group(GroupText, &analysis.TextFacts{}, func(r *analysis.Result) any { return r.Text() }),
		{Name: GroupURIBL, Stage: rules.StageData, Zero: &uribl.Facts{}, Compute: o.uriblFacts},
		{Name: GroupBayes, Stage: rules.StageData, Zero: &bayes.Facts{Probability: 0.5}, Compute: o.bayesFacts},
	}
}

// analysisKey is the content.Message.Derived key of the analysis.
type analysisKey struct{}

// analysisOf returns the analysis of the message of f, made on first use;
// nil without a message.
func (o ContentOptions) analysisOf(f *rules.Facts) *analysis.Result {
	m := f.Message
	if m == nil {
		return nil
	}
	sender := f.Env.Sender
	return m.Derived(analysisKey{}, func() any {
		now := time.Now()
		if o.Now != nil {
			now = o.Now(m)
		}
		// The groups run lazily, in later rule evaluations than the
		// first: the analysis is bounded by its Options, not by the
		// deadline of whichever evaluation asked first.
		return analysis.Analyze(context.Background(), m, analysis.Input{Sender: sender, Now: now, Options: o.Analysis})
	}).(*analysis.Result)
}

// uriblFacts asks the URI blocklists about the message's link hosts and
// its From and envelope sender domains (RFC 5782 §2), under the deadline
// of the rule evaluation that asked.
func (o ContentOptions) uriblFacts(ctx context.Context, f *rules.Facts) any {
	if !o.URIBL.Enabled() {
		return nil
	}
	r := o.analysisOf(f)
	if r == nil {
		return nil
	}
	in := uribl.Input{Domains: r.URLs().Hosts}
	if d := r.Headers().FromDomain; d != "" {
		in.FromDomains = append(in.FromDomains, d)
	}
	if d, err := route.Domain(f.Env.Sender); err == nil && f.Env.Sender != "" {
		in.FromDomains = append(in.FromDomains, strings.ToLower(d))
	}
	res := o.URIBL.Check(ctx, in)
	return &res.Facts
}

// ClassifierInput is what the classifier reads of a message: the same for
// classifying (the bayes facts) and for learning (moat learn, quarantine
// release, Junk folders), so that both see the same tokens.
func ClassifierInput(m *content.Message) bayes.Input {
	return bayes.FromContent(m, bayes.FieldNames(m.Raw(), 100))
}

// bayesFacts classifies the message. A store that fails is no opinion:
// bayes.ready is false, so no rule that asks for a ready classifier fires.
func (o ContentOptions) bayesFacts(ctx context.Context, f *rules.Facts) any {
	if o.Bayes == nil || f.Message == nil {
		return nil
	}
	r, err := o.Bayes.Classify(ctx, ClassifierInput(f.Message))
	if err != nil {
		return &bayes.Facts{Probability: 0.5}
	}
	return &r.Facts
}

// ReceivedTime is the time a stored message was received: the date of its
// topmost Received field (RFC 5321 §4.4: after the last ";"), else its
// Date, else now. Offline runs judge a message's dates against it.
func ReceivedTime(m *content.Message) time.Time {
	if rc := m.Header("Received"); rc != "" {
		if i := strings.LastIndexByte(rc, ';'); i >= 0 {
			if t, ok := analysis.ParseDate(strings.TrimSpace(rc[i+1:])); ok {
				return t
			}
		}
	}
	if t, ok := analysis.ParseDate(m.Header("Date")); ok {
		return t
	}
	return time.Now()
}
