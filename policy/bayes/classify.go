package bayes

import (
	"context"
	"errors"
	"math"
	"slices"
)

// Options shapes a Classifier. Zero fields take the documented defaults.
type Options struct {
	Tokens TokenOptions
	// MinSpam and MinHam are the learned messages of each class needed
	// before Facts.Ready is true. Default 200 each.
	MinSpam, MinHam int64
	// MaxSignificant bounds the tokens combined per message: the strongest
	// are taken. Default 30 (measured: fewer, stronger tokens resist the
	// hammy word salad of spam better than SpamAssassin's 150; +3 points
	// of spam caught at p > 0.9, no more ham flagged).
	MaxSignificant int
	// MinStrength is the least |f(w) − 0.5| of a token that is combined.
	// Default 0.1.
	MinStrength float64
	// S and X are Robinson's strength of the prior and assumed
	// probability of an unseen token. Default 0.5 and 0.5 (s = 0.5 beat
	// Robinson's s = 1 by one to two points of spam caught at p > 0.9 on
	// the development corpus, with no more ham flagged).
	S, X float64
	// NoBalance turns off the class balance: by default the evidence n of
	// each token counts as if both classes had been learned equally often
	// (the counts of the larger class are scaled down), so that a
	// ham-heavy store is not surer of ham tokens than of spam tokens
	// merely for having seen more ham. Measured: +2 to +3 points of spam
	// caught at p > 0.9 after 500 spam and 2,500 ham.
	NoBalance bool
	// Explain is the number of tokens Result.Top keeps. Default 0: none.
	Explain int
}

func (o Options) withDefaults() Options {
	if o.MinSpam <= 0 {
		o.MinSpam = 200
	}
	if o.MinHam <= 0 {
		o.MinHam = 200
	}
	if o.MaxSignificant <= 0 {
		o.MaxSignificant = 30
	}
	if o.MinStrength <= 0 {
		o.MinStrength = 0.1
	}
	if o.S <= 0 {
		o.S = 0.5
	}
	if o.X <= 0 || o.X >= 1 {
		o.X = 0.5
	}
	return o
}

// Facts are the classifier's facts for rules (`bayes.…`).
type Facts struct {
	// Probability that the message is spam, 0..1 (0.5 when unknown or not
	// ready).
	Probability float64 `expr:"probability"`
	// Ready is true once at least MinSpam spam and MinHam ham messages
	// have been learned; before that Probability is not to be trusted.
	Ready       bool  `expr:"ready"`
	SpamLearned int64 `expr:"spam_learned"`
	HamLearned  int64 `expr:"ham_learned"`
}

// TokenWeight is one token that counted, for explanations.
type TokenWeight struct {
	Token     string
	Prob      float64 // f(w): 0 hammy .. 1 spammy
	Spam, Ham uint32  // learned messages holding it
}

// Result is one classification.
type Result struct {
	Facts
	// Used is the number of tokens combined.
	Used int
	// Top are the Options.Explain tokens that weighed most, strongest
	// first.
	Top []TokenWeight
}

// Classifier classifies and learns messages against a Store. It is safe
// for concurrent use.
type Classifier struct {
	store Store
	opt   Options
}

// New returns a Classifier over store.
func New(store Store, opt Options) *Classifier {
	return &Classifier{store: store, opt: opt.withDefaults()}
}

// Store returns the classifier's store.
func (c *Classifier) Store() Store { return c.store }

// Tokens returns the tokens of in under the classifier's options.
func (c *Classifier) Tokens(in Input) []string { return Tokenize(in, c.opt.Tokens) }

func keysOf(toks []string) []uint64 {
	keys := make([]uint64, len(toks))
	for i, t := range toks {
		keys[i] = TokenKey(t)
	}
	return keys
}

// Learn learns in (with digest d) as class cl.
func (c *Classifier) Learn(ctx context.Context, in Input, d Digest, cl Class) (Outcome, error) {
	return c.store.Learn(ctx, d, cl, keysOf(c.Tokens(in)))
}

// Forget unlearns the message; it returns the class it had been learned
// as (ClassNone: it was not).
func (c *Classifier) Forget(ctx context.Context, in Input, d Digest) (Class, error) {
	return c.store.Forget(ctx, d, keysOf(c.Tokens(in)))
}

// scored is one token's belief during classification.
type scored struct {
	i        int
	f        float64
	strength float64
}

// Classify computes the spam probability of in.
func (c *Classifier) Classify(ctx context.Context, in Input) (Result, error) {
	toks := c.Tokens(in)
	counts, tot, err := c.store.Counts(ctx, keysOf(toks))
	if err != nil {
		return Result{Facts: Facts{Probability: 0.5}}, err
	}
	if len(counts) != len(toks) {
		return Result{Facts: Facts{Probability: 0.5}}, errors.New("bayes: store answered the wrong number of counts")
	}
	res := Result{Facts: Facts{
		Probability: 0.5,
		SpamLearned: tot.Spam,
		HamLearned:  tot.Ham,
		Ready:       tot.Spam >= c.opt.MinSpam && tot.Ham >= c.opt.MinHam,
	}}
	if tot.Spam == 0 || tot.Ham == 0 {
		return res, nil
	}
	sig := make([]scored, 0, 64)
	for i, n := range counts {
		if n.Spam == 0 && n.Ham == 0 {
			continue
		}
		f := c.belief(n, tot)
		if s := math.Abs(f - 0.5); s > c.opt.MinStrength {
			sig = append(sig, scored{i: i, f: f, strength: s})
		}
	}
	if len(sig) > c.opt.MaxSignificant || c.opt.Explain > 0 {
		slices.SortFunc(sig, func(a, b scored) int {
			if a.strength != b.strength {
				if a.strength > b.strength {
					return -1
				}
				return 1
			}
			return a.i - b.i // ties: earlier tokens first, deterministic
		})
		if len(sig) > c.opt.MaxSignificant {
			sig = sig[:c.opt.MaxSignificant]
		}
	}
	res.Used = len(sig)
	res.Probability = fisher(sig)
	for i := 0; i < len(sig) && i < c.opt.Explain; i++ {
		s := sig[i]
		res.Top = append(res.Top, TokenWeight{Token: toks[s.i], Prob: s.f, Spam: counts[s.i].Spam, Ham: counts[s.i].Ham})
	}
	return res, nil
}

// Explain classifies in and returns the n tokens that weighed most in
// Result.Top, whatever Options.Explain says (for `moat rules test`).
func (c *Classifier) Explain(ctx context.Context, in Input, n int) (Result, error) {
	e := *c
	e.opt.Explain = n
	return e.Classify(ctx, in)
}

// belief is Robinson's f(w) = (s·x + n·p(w)) / (s + n), where p(w) is the
// share of spam among the class-normalised frequencies of w.
func (c *Classifier) belief(n Count, tot Totals) float64 {
	sr := min(float64(n.Spam)/float64(tot.Spam), 1)
	hr := min(float64(n.Ham)/float64(tot.Ham), 1)
	p := sr / (sr + hr)
	ns, nh := float64(n.Spam), float64(n.Ham)
	if !c.opt.NoBalance {
		if tot.Ham > tot.Spam {
			nh *= float64(tot.Spam) / float64(tot.Ham)
		} else {
			ns *= float64(tot.Ham) / float64(tot.Spam)
		}
	}
	total := ns + nh
	f := (c.opt.S*c.opt.X + total*p) / (c.opt.S + total)
	// Keep away from 0 and 1 so that the logarithms stay finite.
	return min(max(f, 1e-6), 1-1e-6)
}

// fisher combines the beliefs with Fisher's method as Robinson proposed.
// With Q the chi-square upper tail, H = Q(−2 Σ ln f, 2n) falls towards 0
// when many tokens are hammy (small f) and S = Q(−2 Σ ln(1−f), 2n) when
// many are spammy; the indicator (1 + H − S) / 2 is near 1 for spam, near
// 0 for ham and near 0.5 when the evidence is weak or mixed.
func fisher(sig []scored) float64 {
	if len(sig) == 0 {
		return 0.5
	}
	var lnF, lnNotF float64
	for _, s := range sig {
		lnF += math.Log(s.f)
		lnNotF += math.Log1p(-s.f)
	}
	v := 2 * len(sig)
	h := chi2Q(-2*lnF, v)    // near 1 when the tokens are spammy, near 0 when hammy
	s := chi2Q(-2*lnNotF, v) // near 1 when the tokens are hammy, near 0 when spammy
	return (1 + h - s) / 2
}

// chi2Q is the upper tail of the chi-square distribution with v (even)
// degrees of freedom at x2: e^(−m) Σ_{i<v/2} m^i / i!, m = x2/2. The sum
// is done with logarithms so that no term underflows on its own.
func chi2Q(x2 float64, v int) float64 {
	m := x2 / 2
	if m <= 0 {
		return 1
	}
	lnM := math.Log(m)
	term := -m // ln of the i-th term
	best := term
	sum := 1.0 // Σ exp(term_i − best), rebased as best grows
	for i := 1; i < v/2; i++ {
		term += lnM - math.Log(float64(i))
		if term > best {
			sum = sum*math.Exp(best-term) + 1
			best = term
		} else {
			sum += math.Exp(term - best)
		}
	}
	return min(math.Exp(best)*sum, 1)
}
