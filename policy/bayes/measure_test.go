package bayes

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestMeasureCorpus measures the classifier on a development corpus
// outside the repository: MOAT_CORPUS names a directory with spam/ and
// ham/ trees of one-message files, or with split/{train,test}/{spam,ham,
// hardham}. It trains on MOAT_TRAIN_SPAM (500) spam and MOAT_TRAIN_HAM
// (2500) ham picked at random (fixed seed) and classifies up to MOAT_TEST
// (3000) held-out messages of each class (and all hard ham), for each
// variant. MOAT_AUTOLEARN=N adds a run that autolearns N more of each
// class before the test. Nothing it learns is kept.
//
//	MOAT_CORPUS=/work/corpus go test -run TestMeasureCorpus -v ./policy/bayes/
func TestMeasureCorpus(t *testing.T) {
	root := os.Getenv("MOAT_CORPUS")
	if root == "" {
		t.Skip("MOAT_CORPUS not set")
	}
	nSpam, nHam, nTest := envInt("MOAT_TRAIN_SPAM", 500), envInt("MOAT_TRAIN_HAM", 2500), envInt("MOAT_TEST", 3000)
	rng := rand.New(rand.NewPCG(21, 4))
	shuffle := func(x []string) []string {
		rng.Shuffle(len(x), func(i, j int) { x[i], x[j] = x[j], x[i] })
		return x
	}
	var spam, ham, trainSpam, trainHam, testSpam, testHam, hardHam []string
	if _, err := os.Stat(filepath.Join(root, "split", "train")); err == nil {
		// The corpus's own split (copies never straddle train and test).
		tr, te := filepath.Join(root, "split", "train"), filepath.Join(root, "split", "test")
		spam, ham = shuffle(corpusFiles(t, filepath.Join(tr, "spam"))), shuffle(corpusFiles(t, filepath.Join(tr, "ham")))
		trainSpam, trainHam = spam[:min(nSpam, len(spam))], ham[:min(nHam, len(ham))]
		ts, th := shuffle(corpusFiles(t, filepath.Join(te, "spam"))), shuffle(corpusFiles(t, filepath.Join(te, "ham")))
		testSpam, testHam = ts[:min(nTest, len(ts))], th[:min(nTest, len(th))]
		hardHam = corpusFiles(t, filepath.Join(te, "hardham"))
		spam, ham = spam[len(trainSpam):], ham[len(trainHam):] // the autolearn stream
		nSpam, nHam, nTest = 0, 0, 0
	} else {
		spam, ham = shuffle(corpusFiles(t, filepath.Join(root, "spam"))), shuffle(corpusFiles(t, filepath.Join(root, "ham")))
		if len(spam) < nSpam+10 || len(ham) < nHam+10 {
			t.Fatalf("corpus too small: %d spam, %d ham", len(spam), len(ham))
		}
		trainSpam, trainHam = spam[:nSpam], ham[:nHam]
		testSpam, testHam = spam[nSpam:min(len(spam), nSpam+nTest)], ham[nHam:min(len(ham), nHam+nTest)]
	}
	// The autolearn stream: messages after the test sets.
	nAuto := envInt("MOAT_AUTOLEARN", 2000)
	autoSpam, autoHam := spam[min(len(spam), nSpam+nTest):min(len(spam), nSpam+nTest+nAuto)], ham[min(len(ham), nHam+nTest):min(len(ham), nHam+nTest+nAuto)]

	source := map[*Input]string{}
	load := func(paths []string) []*Input {
		out := make([]*Input, 0, len(paths))
		for _, p := range paths {
			raw, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			in, _, err := Parse(raw)
			if err != nil {
				continue
			}
			rel, _ := filepath.Rel(root, p)
			source[&in] = rel
			out = append(out, &in)
		}
		return out
	}
	trS, trH, teS, teH, teHard := load(trainSpam), load(trainHam), load(testSpam), load(testHam), load(hardHam)
	t.Logf("train %d spam %d ham; test %d spam %d ham %d hard ham", len(trS), len(trH), len(teS), len(teH), len(teHard))

	variants := []struct {
		name string
		opt  Options
	}{
		{"default: balanced, s=0.5, 30 tokens", Options{}},
		{"textbook: s=1, not balanced, 150 tokens", Options{S: 1, NoBalance: true, MaxSignificant: 150}},
		{"s=1, not balanced, 30 tokens", Options{S: 1, NoBalance: true}},
		{"s=1, balanced, 30 tokens", Options{S: 1}},
		{"s=0.5, balanced, 150 tokens", Options{MaxSignificant: 150}},
		{"s=0.5, balanced, 15 tokens", Options{MaxSignificant: 15}},
		{"s=0.5, balanced, 30 tokens, str=.346", Options{MinStrength: 0.346}},
		{"default + word pairs", Options{Tokens: TokenOptions{Pairs: true, MaxTokens: 2000}}},
		{"textbook + word pairs", Options{S: 1, NoBalance: true, MaxSignificant: 150, Tokens: TokenOptions{Pairs: true, MaxTokens: 2000}}},
		{"SpamAssassin s=.16 x=.538 str=.346 150, balanced", Options{S: 0.16, X: 0.538, MinStrength: 0.346, MaxSignificant: 150}},
	}
	if v := os.Getenv("MOAT_VARIANTS"); v != "" {
		keep := strings.Split(v, ";")
		variants = slices.DeleteFunc(variants, func(x struct {
			name string
			opt  Options
		}) bool {
			return !slices.ContainsFunc(keep, func(k string) bool { return strings.HasPrefix(x.name, k) })
		})
	}
	var auS, auH []*Input
	if os.Getenv("MOAT_AUTOLEARN") != "" {
		auS, auH = load(autoSpam), load(autoHam)
		variants = append(variants, struct {
			name string
			opt  Options
		}{"default + autolearn .99/.01", Options{}})
	}
	ctx := context.Background()
	for _, v := range variants {
		c := New(NewMemStore(), v.opt)
		for i, in := range trS {
			c.Learn(ctx, *in, Digest{0, byte(i), byte(i >> 8), byte(i >> 16)}, ClassSpam)
		}
		for i, in := range trH {
			c.Learn(ctx, *in, Digest{1, byte(i), byte(i >> 8), byte(i >> 16)}, ClassHam)
		}
		if strings.HasSuffix(v.name, "autolearn .99/.01") {
			a := AutolearnConfig{Enabled: true, SpamAbove: 0.99, HamBelow: 0.01}
			var learned [3][3]int // [true class][learned class]
			for i := range max(len(auS), len(auH)) {
				for j, set := range [][]*Input{auS, auH} {
					if i >= len(set) {
						continue
					}
					r, _ := c.Classify(ctx, *set[i])
					if cl := a.Autolearn(r); cl != ClassNone {
						c.Learn(ctx, *set[i], Digest{2, byte(j), byte(i), byte(i >> 8), byte(i >> 16)}, cl)
						learned[j+1][cl]++
					}
				}
			}
			t.Logf("autolearn over %d spam %d ham: spam learned as spam %d, as ham %d; ham learned as ham %d, as spam %d",
				len(auS), len(auH), learned[1][ClassSpam], learned[1][ClassHam], learned[2][ClassHam], learned[2][ClassSpam])
		}
		bySource := map[string][]float64{}
		probs := func(ins []*Input) []float64 {
			out := make([]float64, len(ins))
			for i, in := range ins {
				r, err := c.Classify(ctx, *in)
				if err != nil {
					t.Fatal(err)
				}
				out[i] = r.Probability
				src := filepath.Dir(source[in])
				if base := filepath.Base(source[in]); strings.Contains(base, "__") {
					src = src + "/" + base[:strings.Index(base, "__")]
				}
				bySource[src] = append(bySource[src], r.Probability)
				if os.Getenv("MOAT_DEBUG") != "" && strings.HasPrefix(src, "spam") == (r.Probability < 0.5) {
					c2 := New(c.Store(), Options{Explain: 8, MaxSignificant: v.opt.MaxSignificant, MinStrength: v.opt.MinStrength, Tokens: v.opt.Tokens})
					r2, _ := c2.Classify(ctx, *in)
					t.Logf("miss %s p=%.3f used=%d top=%v", source[in], r.Probability, r2.Used, r2.Top)
				}
			}
			return out
		}
		ps, ph := probs(teS), probs(teH)
		if len(teHard) > 0 {
			phh := probs(teHard)
			t.Logf("  hard ham: p>0.5 %5.2f%%, p>0.9 %5.2f%%, p>0.99 %5.2f%% flagged", pct(phh, 0.5), pct(phh, 0.9), pct(phh, 0.99))
		}
		for src, p := range bySource {
			t.Logf("  %s: %d messages, p>0.5 %5.1f%%, p>0.9 %5.1f%%, p>0.99 %5.1f%%", src, len(p), pct(p, 0.5), pct(p, 0.9), pct(p, 0.99))
		}
		line := fmt.Sprintf("%-34s", v.name)
		for _, th := range []float64{0.5, 0.9, 0.95, 0.99} {
			line += fmt.Sprintf(" | p>%.2f caught %5.1f%% flagged %5.2f%%", th, pct(ps, th), pct(ph, th))
		}
		// The operating point where 0.5% of ham is flagged.
		sorted := slices.Clone(ph)
		slices.Sort(sorted)
		th := sorted[min(len(sorted)-1, len(sorted)*995/1000)]
		tot, _ := c.Store().Stats(ctx)
		t.Logf("%s | at 0.5%% ham flagged (p>%.3f) caught %5.1f%% | %d tokens", line, th, pct(ps, th), tot.Tokens)
	}
}

func pct(ps []float64, th float64) float64 {
	n := 0
	for _, p := range ps {
		if p > th {
			n++
		}
	}
	return 100 * float64(n) / float64(max(len(ps), 1))
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// corpusFiles lists the regular files under dir (sorted), skipping
// dot-files and text notes.
func corpusFiles(t *testing.T, dir string) []string {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".md") || strings.HasSuffix(name, ".csv") {
			return nil
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}
