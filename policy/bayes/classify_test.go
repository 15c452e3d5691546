package bayes

import (
	"context"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestChi2Q(t *testing.T) {
	tests := []struct {
		x2   float64
		v    int
		want float64
	}{
		{0, 2, 1},
		{2, 2, math.Exp(-1)},
		{4, 4, 3 * math.Exp(-2)}, // e^-2 (1 + 2)
		{3000, 300, 0},           // far in the tail, no NaN
		{300, 300, 0.4853},       // the median region of chi2(300)
	}
	for _, tt := range tests {
		got := chi2Q(tt.x2, tt.v)
		if math.IsNaN(got) || math.Abs(got-tt.want) > 0.01 {
			t.Errorf("chi2Q(%v, %d) = %v, want %v", tt.x2, tt.v, got, tt.want)
		}
	}
}

func TestFisher(t *testing.T) {
	mk := func(fs ...float64) []scored {
		var out []scored
		for _, f := range fs {
			out = append(out, scored{f: f})
		}
		return out
	}
	if p := fisher(nil); p != 0.5 {
		t.Errorf("no tokens: %v", p)
	}
	if p := fisher(mk(0.99, 0.98, 0.95, 0.9)); p < 0.9 {
		t.Errorf("spammy: %v", p)
	}
	if p := fisher(mk(0.01, 0.02, 0.05, 0.1)); p > 0.1 {
		t.Errorf("hammy: %v", p)
	}
	if p := fisher(mk(0.99, 0.01)); math.Abs(p-0.5) > 0.01 {
		t.Errorf("mixed: %v", p)
	}
}

type labelled struct {
	path string
	spam bool
}

// corpus lists the SpamAssassin test messages in testdata, sorted.
func corpus(t testing.TB) []labelled {
	var out []labelled
	for _, class := range []string{"spam", "nice"} {
		root := filepath.Join("testdata", "spamassassin", class)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			out = append(out, labelled{p, class == "spam"})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.SortFunc(out, func(a, b labelled) int { return strings.Compare(a.path, b.path) })
	return out
}

func parseFile(t testing.TB, path string) (Input, Digest) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	in, d, err := Parse(raw)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return in, d
}

// TestLearnAndClassify learns two thirds of the small SpamAssassin test
// corpus and classifies the rest. The corpus is tiny (and its spam half
// is made of rule test cases), so the bar is modest: the point is that
// learning moves held-out messages the right way.
func TestLearnAndClassify(t *testing.T) {
	ctx := context.Background()
	c := New(NewMemStore(), Options{MinSpam: 10, MinHam: 10, Explain: 5})
	var test []labelled
	for i, m := range corpus(t) {
		if i%3 == 2 {
			test = append(test, m)
			continue
		}
		in, d := parseFile(t, m.path)
		cl := ClassHam
		if m.spam {
			cl = ClassSpam
		}
		if _, err := c.Learn(ctx, in, d, cl); err != nil {
			t.Fatal(err)
		}
	}
	right := 0
	for _, m := range test {
		in, _ := parseFile(t, m.path)
		r, err := c.Classify(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Ready || r.Probability < 0 || r.Probability > 1 {
			t.Fatalf("%s: %+v", m.path, r)
		}
		if (r.Probability > 0.5) == m.spam {
			right++
		} else {
			t.Logf("wrong: %s spam=%v p=%.3f top=%v", m.path, m.spam, r.Probability, r.Top)
		}
	}
	t.Logf("%d of %d held-out messages on the right side of 0.5", right, len(test))
	if right*100 < len(test)*75 {
		t.Errorf("only %d of %d right", right, len(test))
	}
}

func TestLearnedMessageScoresItsClass(t *testing.T) {
	ctx := context.Background()
	c := New(NewMemStore(), Options{Explain: 3})
	spam, _, _ := Parse([]byte("Subject: cheap pills\r\n\r\nbuy cheap pills online now at http://pills.example/\r\n"))
	ham, _, _ := Parse([]byte("Subject: meeting notes\r\n\r\nhere are the notes from the meeting on tuesday\r\n"))
	r, _ := c.Classify(ctx, spam)
	if r.Probability != 0.5 || r.Ready {
		t.Errorf("empty store: %+v", r)
	}
	c.Learn(ctx, spam, Digest{1}, ClassSpam)
	c.Learn(ctx, ham, Digest{2}, ClassHam)
	rs, _ := c.Classify(ctx, spam)
	rh, _ := c.Classify(ctx, ham)
	if rs.Probability < 0.9 || rh.Probability > 0.1 {
		t.Errorf("spam %v ham %v", rs.Probability, rh.Probability)
	}
	if len(rs.Top) != 3 || rs.Top[0].Prob < 0.5 {
		t.Errorf("explanation %+v", rs.Top)
	}
	if ex, _ := New(c.Store(), Options{}).Explain(ctx, ham, 2); len(ex.Top) != 2 || ex.Top[0].Prob > 0.5 {
		t.Errorf("Explain: %+v", ex.Top)
	}
	if rs.SpamLearned != 1 || rs.HamLearned != 1 {
		t.Errorf("facts %+v", rs.Facts)
	}
	a := AutolearnConfig{Enabled: true, SpamAbove: 0.9, HamBelow: 0.1}
	rs.Ready = true
	if a.Autolearn(rs) != ClassSpam {
		t.Error("autolearn: clear spam not learned")
	}
	rs.Ready = false
	if a.Autolearn(rs) != ClassNone {
		t.Error("autolearn before ready")
	}
}

func TestConfig(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if k, _ := c.StoreKind(false); k != StoreBolt {
		t.Errorf("default store %q", k)
	}
	if k, _ := c.StoreKind(true); k != StoreRedis {
		t.Errorf("store with redis %q", k)
	}
	c.Store = StoreRedis
	if _, err := c.StoreKind(false); err == nil {
		t.Error("redis without a server accepted")
	}
	bad := DefaultConfig()
	bad.Store, bad.MaxTokens, bad.Autolearn.SpamAbove, bad.MinHam = "sql", 0, 0.2, 0
	err := bad.Validate()
	for _, key := range []string{"bayes.store", "bayes.max_tokens", "bayes.autolearn.spam_above", "bayes.min_ham"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error %v does not name %s", err, key)
		}
	}
}

// message20K builds a ~20 KB message of ordinary prose with about 1,000
// distinct tokens (the default bound).
func message20K() []byte {
	words := strings.Fields(`the quarterly report shows revenue growth across all regions while
		costs remained stable please review the attached figures before our meeting on
		thursday and send comments to the finance team we will discuss the budget for
		next year including hiring plans infrastructure upgrades and the customer support
		backlog thanks everyone for the hard work this quarter`)
	var b strings.Builder
	b.WriteString("From: Alice <alice@corp.example>\r\nTo: team@corp.example\r\nSubject: Q3 report\r\n")
	b.WriteString("Message-ID: <q3@corp.example>\r\nReceived: from mail.corp.example by mx.example.org with ESMTPS\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n")
	for i := 0; b.Len() < 20<<10; i++ {
		b.WriteString(words[i%len(words)])
		if i%3 == 0 { // a varied vocabulary: ~1,000 distinct tokens
			b.WriteString(" item")
			b.WriteString(string(rune('a' + i%26)))
			b.WriteString(string(rune('a' + i/26%26)))
			b.WriteString(string(rune('a' + i/676%26)))
		}
		b.WriteByte(' ')
		if i%12 == 11 {
			b.WriteString("\r\n")
		}
	}
	return []byte(b.String())
}

func benchClassifier(b *testing.B, s Store) (*Classifier, Input) {
	ctx := context.Background()
	c := New(s, Options{})
	for _, m := range corpus(b) {
		in, d := parseFile(b, m.path)
		cl := ClassHam
		if m.spam {
			cl = ClassSpam
		}
		c.Learn(ctx, in, d, cl)
	}
	in, d, _ := Parse(message20K())
	c.Learn(ctx, in, d, ClassHam)
	return c, in
}

// BenchmarkClassify20K classifies a 20 KB message, warm: the message is
// parsed once (the gateway parses it anyway) and tokenized on each run.
func BenchmarkClassify20K(b *testing.B) {
	run := func(b *testing.B, s Store) {
		c, in := benchClassifier(b, s)
		ctx := context.Background()
		b.ResetTimer()
		for b.Loop() {
			if _, err := c.Classify(ctx, in); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("mem", func(b *testing.B) { run(b, NewMemStore()) })
	b.Run("bbolt", func(b *testing.B) {
		s, err := OpenBolt(filepath.Join(b.TempDir(), "bayes.db"), BoltOptions{NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		run(b, s)
	})
	b.Run("redis-server", func(b *testing.B) {
		addr := realRedis(b)
		if addr == "" {
			b.Skip("no redis-server")
		}
		rc := redis.NewClient(&redis.Options{Addr: addr})
		defer rc.Close()
		run(b, NewRedisStore(rc, RedisOptions{KeyPrefix: "b:"}))
	})
}

// BenchmarkParseAndClassify20K adds the parse (content.Parse and the body
// walk) to the classification.
func BenchmarkParseAndClassify20K(b *testing.B) {
	c, _ := benchClassifier(b, NewMemStore())
	raw := message20K()
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		in, _, _ := Parse(raw)
		if _, err := c.Classify(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}
