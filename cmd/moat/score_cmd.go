package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/mail"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"moat/gateway"
	"moat/internal/dnsres"
	"moat/policy"
	"moat/policy/bayes"
	"moat/relay/route"
	"moat/rules"
)

// scoreInput is what `moat rules score` is told.
type scoreInput struct {
	cfgPath, dnsZone, ip, helo, to string
	messages                       string // --messages: one JSON line per message
	spam, ham, hardham             []string
	limit, workers                 int
	thresholds                     []float64
	asJSON, bySource               bool
}

// The corpus classes, in report order.
const (
	classSpam    = "spam"
	classHam     = "ham"
	classHardham = "hardham"
)

var scoreClasses = []string{classSpam, classHam, classHardham}

// maxScoreFiles bounds how many files one class may list.
const maxScoreFiles = 4 << 20

// defaultScoreRcpt is the recipient of a message whose header names none.
const defaultScoreRcpt = "user@example.com"

func rulesScoreCommand() *cobra.Command {
	in := scoreInput{ip: "192.0.2.1", helo: "mail.example.net"}
	cmd := &cobra.Command{
		Use:   "score --spam DIR --ham DIR [--hardham DIR] [--config FILE]",
		Short: "Run a labelled corpus through the checks and rules offline and measure each rule and threshold",
		Long: `Run every message of a labelled corpus through what moat serve would do
with it, offline (as moat rules test does, without DNS), and print:

  - how many messages of each class were read (and how many could not be);
  - the final verdicts per class: reject, quarantine, junk or tagged
    (X-Spam-Flag), discard, deferred (tempfail, greylist), accept. A
    message is "caught" when it was refused, quarantined, discarded,
    junked or tagged;
  - per score threshold: the share of spam caught and of ham flagged,
    counting a message when its final score reaches the threshold or a
    rule (not a score threshold) caught it;
  - per rule: its hits on spam, ham and hardham, most spam hits first
    (dry-run rules count: that is how a new rule is measured);
  - the classifier's spam probability per class, in buckets, when the
    pipeline has a "bayes" fact group.

DIR is a directory tree (a Maildir's tmp/ is skipped), or a file listing
one message path a line (relative paths are relative to the list). Flags
may repeat. A message file may start with an mbox "From " line. Hardham (legitimate bulk mail that looks like spam) is
reported apart from ham.

Each message is one session from --ip with --helo; the envelope sender is
the Return-Path (else the From) address, the recipient the first
Delivered-To, To or Cc address, or --to. Recipients are accepted whatever
their domain (the relay and mailbox checks are not what is measured), rate
limits never trigger, and without --dns there is no resolver: no SPF,
DKIM, DMARC, DNS lists or URI lists. Messages run in parallel; each is
bounded by smtp.max_message_size.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(in.spam)+len(in.ham)+len(in.hardham) == 0 {
				return errors.New("nothing to score: give --spam, --ham or --hardham")
			}
			rep, err := runRulesScore(cmd.Context(), in, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if in.asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			printScoreReport(cmd.OutOrStdout(), rep, in.bySource)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&in.cfgPath, "config", "", "configuration file (YAML): rules, smtp, auth, domains")
	f.StringArrayVar(&in.spam, "spam", nil, "spam: a directory tree, Maildir or file list (repeatable)")
	f.StringArrayVar(&in.ham, "ham", nil, "ham: a directory tree, Maildir or file list (repeatable)")
	f.StringArrayVar(&in.hardham, "hardham", nil, "hard ham (bulk, newsletters): reported apart (repeatable)")
	f.IntVar(&in.limit, "limit", 0, "at most N messages per class, taken evenly across the sorted list (0: all)")
	f.StringVar(&in.ip, "ip", in.ip, "the client's IP address")
	f.StringVar(&in.helo, "helo", in.helo, "the EHLO name")
	f.StringVar(&in.to, "to", "", "the envelope recipient of every message (default: from its header)")
	f.StringVar(&in.dnsZone, "dns", "", "answer DNS from this zone file (default: no DNS at all)")
	f.Float64SliceVar(&in.thresholds, "thresholds", []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
		"score thresholds to measure (rules.score.tag and .reject are added)")
	f.IntVar(&in.workers, "workers", runtime.GOMAXPROCS(0), "messages scored in parallel")
	f.BoolVar(&in.bySource, "by-source", false, "also break the figures down by source (file name prefix before \"__\", else sub-directory)")
	f.BoolVar(&in.asJSON, "json", false, "print the report as JSON")
	f.StringVar(&in.messages, "messages", "", "also write one JSON line per message (path, class, source, verdict, score, rules) to this file")
	return cmd
}

// scoreFile is one message to score.
type scoreFile struct {
	path, class, source string
}

// scoreOutcome is what became of one message.
type scoreOutcome struct {
	file    scoreFile
	err     error
	verdict string // see verdictOf
	score   float64
	byRule  bool // a rule (not a threshold) caught it
	hits    []string
	bayes   float64 // -1: no classifier figure
}

// scoreLine is one message in the --messages file.
type scoreLine struct {
	Path    string   `json:"path"`
	Class   string   `json:"class"`
	Source  string   `json:"source"`
	Error   string   `json:"error,omitempty"`
	Verdict string   `json:"verdict,omitempty"`
	Score   float64  `json:"score"`
	Rules   []string `json:"rules,omitempty"`
	Bayes   *float64 `json:"bayes,omitempty"`
}

func (o scoreOutcome) line() scoreLine {
	l := scoreLine{Path: o.file.path, Class: o.file.class, Source: o.file.source, Verdict: o.verdict, Score: o.score, Rules: o.hits}
	if o.err != nil {
		l.Error = o.err.Error()
	}
	if o.bayes >= 0 {
		b := o.bayes
		l.Bayes = &b
	}
	return l
}

// The verdicts, in report order.
var scoreVerdicts = []string{"reject", "quarantine", "junk", "tagged", "discard", "deferred", "accept", "refused before data"}

// caughtVerdict reports whether a verdict keeps the message from the inbox.
func caughtVerdict(v string) bool {
	switch v {
	case "reject", "quarantine", "junk", "tagged", "discard":
		return true
	}
	return false
}

// scorer runs messages through the offline pipeline. It is safe for
// concurrent use.
type scorer struct {
	cfg      *Config
	cc       *contentChecks
	opt      gateway.PipelineOptions
	engine   *rules.Engine
	state    *gateway.State
	conn     policy.Conn
	to       string
	bayes    bool
	maxBytes int64
}

func newScorer(in scoreInput) (*scorer, error) {
	cfg, err := loadConfig(in.cfgPath)
	if err != nil {
		return nil, fmt.Errorf("configuration: %s", strings.Join(errorLines(err), "; "))
	}
	ip, err := netip.ParseAddr(in.ip)
	if err != nil {
		return nil, fmt.Errorf("--ip: %q is not an IP address", in.ip)
	}
	if in.to != "" {
		if _, err := route.Domain(in.to); err != nil {
			return nil, fmt.Errorf("--to: %w", err)
		}
	}
	var res dnsres.Resolver // none: offline means no DNS
	if in.dnsZone != "" {
		if res, err = zoneFileResolver(in.dnsZone); err != nil {
			return nil, err
		}
	}
	cc, err := newContentChecks(cfg, res, true)
	if err != nil {
		return nil, err
	}
	set, err := rules.Load(cfg.Rules, cfg.ruleLoadOptions(cc))
	if err != nil {
		cc.Close()
		return nil, fmt.Errorf("rules: %s", strings.Join(errorLines(err), "; "))
	}
	trusted, err := gateway.ParsePrefixes("trusted_networks", cfg.TrustedNetworks)
	if err != nil {
		cc.Close()
		return nil, err
	}
	// A corpus comes from one address in one burst: rate limits would
	// measure that, not the messages.
	engine := rules.NewEngine(set, rules.EngineOptions{Limiter: unlimited{}})
	s := &scorer{
		cfg:    cfg,
		cc:     cc,
		bayes:  cc.opt.Bayes != nil,
		engine: engine,
		state: &gateway.State{
			Router:          acceptAllRouter{route.NewRouter(cfg.routeConfig())},
			Directory:       acceptAllDirectory{},
			TrustedNetworks: trusted,
		},
		conn:     policy.Conn{ID: "score", IP: ip.Unmap(), HELO: in.helo},
		to:       in.to,
		maxBytes: cfg.SMTP.MaxMessageSize,
	}
	s.opt = gateway.PipelineOptions{Hostname: cfg.Hostname, MaxMessageSize: cfg.SMTP.MaxMessageSize, Checks: offlineChecks(cfg, engine, res)}
	return s, nil
}

// run scores one message.
// offline runs the message in file path through the offline pipeline,
// its envelope taken from its header (or --to).
func (s *scorer) offline(ctx context.Context, path string) (*gateway.OfflineResult, error) {
	raw, err := readMessage(path, s.maxBytes)
	if err != nil {
		return nil, err
	}
	raw = stripFromLine(raw)
	from, to := envelopeOf(raw)
	if s.to != "" {
		to = s.to
	}
	return gateway.RunOffline(ctx, s.opt, gateway.OfflineSession{
		Conn: s.conn, Listener: gateway.Listener{Name: "score", Mode: "mx"}, State: s.state,
		From: from, To: []string{to}, Message: raw, DeclaredSize: int64(len(raw)),
	}), nil
}

func (s *scorer) run(ctx context.Context, f scoreFile) scoreOutcome {
	o := scoreOutcome{file: f, bayes: -1}
	out, err := s.offline(ctx, f.path)
	if err != nil {
		o.err = err
		return o
	}
	o.score = out.Txn.Score
	o.verdict = verdictOf(out)
	o.byRule = caughtVerdict(o.verdict) && o.verdict != "tagged" && !strings.HasPrefix(out.Rule, "score:")
	seen := map[string]bool{}
	for _, h := range out.Hits {
		if strings.HasPrefix(h.Rule, "score:") || seen[h.Rule] {
			continue
		}
		seen[h.Rule] = true
		o.hits = append(o.hits, h.Rule)
	}
	if s.bayes && out.Txn.Facts.Message != nil {
		if v, err := s.engine.Group(ctx, &out.Txn.Facts, gateway.GroupBayes); err == nil {
			if b, ok := v.(*bayes.Facts); ok && b.Ready {
				o.bayes = b.Probability
			}
		}
	}
	return o
}

// stripFromLine drops the "From sender date" line that starts a message
// kept in mbox form (RFC 4155): it is the mailbox's, not the message's.
func stripFromLine(raw []byte) []byte {
	if !bytes.HasPrefix(raw, []byte("From ")) {
		return raw
	}
	if i := bytes.Index(raw, []byte("\r\n")); i >= 0 {
		return raw[i+2:]
	}
	return raw
}

// verdictOf names what became of the message.
func verdictOf(out *gateway.OfflineResult) string {
	t := out.Txn
	switch out.Action {
	case string(rules.Reject):
		if !dataReached(out) && out.Txn.Refusal.Check != "rules" {
			return "refused before data"
		}
		return "reject"
	case string(rules.Quarantine), string(rules.Discard):
		return out.Action
	case string(rules.Tempfail), string(rules.Greylist):
		if !dataReached(out) && out.Txn.Refusal.Check != "rules" {
			return "refused before data"
		}
		return "deferred"
	case "junk":
		return "junk"
	}
	for _, h := range t.Headers {
		if strings.EqualFold(h.Name, "X-Spam-Flag") && strings.EqualFold(strings.TrimSpace(h.Value), "YES") {
			return "tagged"
		}
	}
	return "accept"
}

// dataReached reports whether the session got to the data stage.
func dataReached(out *gateway.OfflineResult) bool {
	for _, st := range out.Steps {
		if st.Stage == rules.StageData {
			return true
		}
	}
	return false
}

// envelopeOf takes the envelope from the header: the sender from
// Return-Path (RFC 5322 §3.6.7, as the final delivery wrote it) or From,
// the recipient from Delivered-To, To or Cc. Unusable addresses give the
// null sender and defaultScoreRcpt.
func envelopeOf(raw []byte) (from, to string) {
	to = defaultScoreRcpt
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return "", to
	}
	first := func(names ...string) string {
		for _, n := range names {
			for _, v := range m.Header[n] { // n is in canonical form
				list, err := mail.ParseAddressList(v)
				if err != nil || len(list) == 0 {
					continue
				}
				a := list[0].Address
				if _, err := route.Domain(a); err == nil && len(a) <= 254 {
					return a
				}
			}
		}
		return ""
	}
	if rp := m.Header.Get("Return-Path"); strings.TrimSpace(rp) != "<>" {
		from = first("Return-Path", "From")
	}
	if a := first("Delivered-To", "To", "Cc"); a != "" {
		to = a
	}
	return from, to
}

// unlimited is a rules.Limiter that always allows.
type unlimited struct{}

func (unlimited) Allow(context.Context, string, int, time.Duration) (bool, error) { return true, nil }

// acceptAllRouter routes as configured but takes every domain, so that
// each message of a corpus reaches the data stage.
type acceptAllRouter struct{ r *route.Router }

func (a acceptAllRouter) Route(rcpt string) route.Decision {
	d := a.r.Route(rcpt)
	d.Relay = false
	return d
}

// acceptAllDirectory knows every local address.
type acceptAllDirectory struct{}

func (acceptAllDirectory) Exists(string) bool                   { return true }
func (acceptAllDirectory) Expand(addr string) ([]string, error) { return []string{addr}, nil }

// listScoreFiles lists the messages of one class: directory trees (a
// Maildir's tmp/ skipped, dot files skipped, symbolic links followed to
// files) and list files.
func listScoreFiles(class string, roots []string, limit int) ([]scoreFile, error) {
	var out []scoreFile
	add := func(path, source string) error {
		if len(out) >= maxScoreFiles {
			return fmt.Errorf("--%s: more than %d files", class, maxScoreFiles)
		}
		out = append(out, scoreFile{path: path, class: class, source: sourceOf(path, source)})
		return nil
	}
	for _, root := range roots {
		st, err := os.Stat(root)
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", class, err)
		}
		if !st.IsDir() {
			if err := readFileList(root, add); err != nil {
				return nil, fmt.Errorf("--%s: %w", class, err)
			}
			continue
		}
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if p != root && strings.HasPrefix(name, ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() {
				if name == "tmp" && isDir(filepath.Join(filepath.Dir(p), "cur")) && isDir(filepath.Join(filepath.Dir(p), "new")) {
					return filepath.SkipDir // RFC-less but universal: Maildir tmp/ holds unfinished deliveries
				}
				return nil
			}
			if !isMessageFile(p, d) {
				return nil
			}
			rel, _ := filepath.Rel(root, p)
			src := filepath.Base(root)
			if i := strings.IndexByte(filepath.ToSlash(rel), '/'); i > 0 {
				src = rel[:i]
				if src == "cur" || src == "new" {
					src = filepath.Base(root)
				}
			}
			return add(p, src)
		})
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", class, err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return sample(out, limit), nil
}

// readFileList reads one path a line ('#' starts a comment).
func readFileList(list string, add func(path, source string) error) error {
	b, err := os.ReadFile(list)
	if err != nil {
		return err
	}
	dir := filepath.Dir(list)
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !filepath.IsAbs(line) {
			line = filepath.Join(dir, line)
		}
		if err := add(line, filepath.Base(filepath.Dir(line))); err != nil {
			return err
		}
	}
	return nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// sourceOf names where a message comes from: the file name's prefix
// before "__" (as a corpus split names its links), else dirSource, else "-".
func sourceOf(path, dirSource string) string {
	if i := strings.Index(filepath.Base(path), "__"); i > 0 {
		return filepath.Base(path)[:i]
	}
	if dirSource != "" {
		return dirSource
	}
	return "-"
}

// sample keeps at most limit files, evenly spread over the sorted list
// (so every source of a corpus stays represented).
func sample(files []scoreFile, limit int) []scoreFile {
	if limit <= 0 || len(files) <= limit {
		return files
	}
	out := make([]scoreFile, 0, limit)
	for i := 0; i < limit; i++ {
		out = append(out, files[i*len(files)/limit])
	}
	return out
}

// scoreReport is the measurement, printed as text or JSON.
type scoreReport struct {
	Config     string           `json:"config,omitempty"`
	Classes    []scoreClass     `json:"classes"`
	Thresholds []scoreThreshold `json:"thresholds"`
	Rules      []scoreRule      `json:"rules"`
	Bayes      []scoreBucket    `json:"bayes,omitempty"`
	Sources    []scoreClass     `json:"sources,omitempty"`
	Tag        float64          `json:"tag_threshold"`
	Reject     float64          `json:"reject_threshold"`
}

// scoreClass is the tally of one class (or of one source of a class).
type scoreClass struct {
	Class      string         `json:"class"`
	Source     string         `json:"source,omitempty"`
	Messages   int            `json:"messages"`
	Unreadable int            `json:"unreadable"`
	Verdicts   map[string]int `json:"verdicts"`
	Caught     int            `json:"caught"`
	CaughtPct  float64        `json:"caught_pct"`
}

type scoreThreshold struct {
	Score float64            `json:"score"`
	Label string             `json:"label,omitempty"` // "tag", "reject"
	Hit   map[string]int     `json:"caught"`          // per class
	Pct   map[string]float64 `json:"caught_pct"`
}

type scoreRule struct {
	Rule string             `json:"rule"`
	Hits map[string]int     `json:"hits"`
	Pct  map[string]float64 `json:"pct"`
}

type scoreBucket struct {
	From  float64        `json:"from"`
	To    float64        `json:"to"`
	Count map[string]int `json:"count"`
}

func runRulesScore(ctx context.Context, in scoreInput, errw io.Writer) (*scoreReport, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	s, err := newScorer(in)
	if err != nil {
		return nil, err
	}
	defer s.cc.Close()
	if s.cc.note != "" {
		fmt.Fprintln(errw, s.cc.note)
	}
	var files []scoreFile
	for i, roots := range [][]string{in.spam, in.ham, in.hardham} {
		fs, err := listScoreFiles(scoreClasses[i], roots, in.limit)
		if err != nil {
			return nil, err
		}
		files = append(files, fs...)
	}
	workers := in.workers
	if workers < 1 {
		workers = 1
	}
	if workers > 64 {
		workers = 64
	}
	jobs := make(chan scoreFile)
	results := make(chan scoreOutcome, workers)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range jobs {
				results <- s.run(ctx, f)
			}
		}()
	}
	go func() {
		defer close(jobs)
		for _, f := range files {
			select {
			case jobs <- f:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(results) }()

	var lines *json.Encoder
	if in.messages != "" {
		mf, err := os.Create(in.messages)
		if err != nil {
			return nil, fmt.Errorf("--messages: %w", err)
		}
		defer mf.Close()
		bw := bufio.NewWriter(mf)
		defer bw.Flush()
		lines = json.NewEncoder(bw)
	}
	tally := newScoreTally(s, in)
	shown := 0
	for o := range results {
		if o.err != nil && shown < 10 {
			fmt.Fprintf(errw, "unreadable: %s\n", o.err)
			shown++
		}
		tally.add(o)
		if lines != nil {
			_ = lines.Encode(o.line())
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return tally.report(in.bySource), nil
}

// scoreTally accumulates outcomes (one goroutine).
type scoreTally struct {
	thresholds []scoreThreshold
	classes    map[string]*scoreClass
	sources    map[[2]string]*scoreClass
	rules      map[string]map[string]int
	bayes      []scoreBucket
	tag, rej   float64
	config     string
}

func newScoreTally(s *scorer, in scoreInput) *scoreTally {
	t := &scoreTally{
		classes: map[string]*scoreClass{}, sources: map[[2]string]*scoreClass{}, rules: map[string]map[string]int{},
		tag: s.cfg.Rules.Score.Tag, rej: s.cfg.Rules.Score.Reject, config: in.cfgPath,
	}
	addT := func(v float64, label string) {
		if v <= 0 {
			return
		}
		for i := range t.thresholds {
			if t.thresholds[i].Score == v {
				if label != "" {
					t.thresholds[i].Label = label
				}
				return
			}
		}
		t.thresholds = append(t.thresholds, scoreThreshold{Score: v, Label: label, Hit: map[string]int{}, Pct: map[string]float64{}})
	}
	for _, v := range in.thresholds {
		addT(v, "")
	}
	addT(t.tag, "tag")
	addT(t.rej, "reject")
	sort.Slice(t.thresholds, func(i, j int) bool { return t.thresholds[i].Score < t.thresholds[j].Score })
	for _, c := range scoreClasses {
		t.classes[c] = &scoreClass{Class: c, Verdicts: map[string]int{}}
	}
	if s.bayes {
		for i := 0; i < 10; i++ {
			t.bayes = append(t.bayes, scoreBucket{From: float64(i) / 10, To: float64(i+1) / 10, Count: map[string]int{}})
		}
	}
	return t
}

func (t *scoreTally) add(o scoreOutcome) {
	c := o.file.class
	key := [2]string{c, o.file.source}
	src := t.sources[key]
	if src == nil {
		src = &scoreClass{Class: c, Source: o.file.source, Verdicts: map[string]int{}}
		t.sources[key] = src
	}
	for _, x := range []*scoreClass{t.classes[c], src} {
		if o.err != nil {
			x.Unreadable++
			continue
		}
		x.Messages++
		x.Verdicts[o.verdict]++
		if caughtVerdict(o.verdict) {
			x.Caught++
		}
	}
	if o.err != nil {
		return
	}
	for i := range t.thresholds {
		if o.byRule || o.score >= t.thresholds[i].Score {
			t.thresholds[i].Hit[c]++
		}
	}
	for _, r := range o.hits {
		m := t.rules[r]
		if m == nil {
			m = map[string]int{}
			t.rules[r] = m
		}
		m[c]++
	}
	if o.bayes >= 0 && len(t.bayes) > 0 {
		i := int(o.bayes * 10)
		if i > 9 {
			i = 9
		}
		t.bayes[i].Count[c]++
	}
}

func pct(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return float64(int(float64(n)*10000/float64(of)+0.5)) / 100
}

func (t *scoreTally) report(bySource bool) *scoreReport {
	rep := &scoreReport{Config: t.config, Tag: t.tag, Reject: t.rej, Bayes: t.bayes}
	for _, c := range scoreClasses {
		x := t.classes[c]
		x.CaughtPct = pct(x.Caught, x.Messages)
		rep.Classes = append(rep.Classes, *x)
	}
	for i := range t.thresholds {
		th := &t.thresholds[i]
		for _, c := range scoreClasses {
			th.Pct[c] = pct(th.Hit[c], t.classes[c].Messages)
		}
		rep.Thresholds = append(rep.Thresholds, *th)
	}
	for name, m := range t.rules {
		r := scoreRule{Rule: name, Hits: m, Pct: map[string]float64{}}
		for _, c := range scoreClasses {
			r.Pct[c] = pct(m[c], t.classes[c].Messages)
		}
		rep.Rules = append(rep.Rules, r)
	}
	sort.Slice(rep.Rules, func(i, j int) bool {
		a, b := rep.Rules[i], rep.Rules[j]
		if a.Hits[classSpam] != b.Hits[classSpam] {
			return a.Hits[classSpam] > b.Hits[classSpam]
		}
		if a.Hits[classHam] != b.Hits[classHam] {
			return a.Hits[classHam] < b.Hits[classHam]
		}
		return a.Rule < b.Rule
	})
	if bySource {
		for _, x := range t.sources {
			x.CaughtPct = pct(x.Caught, x.Messages)
			rep.Sources = append(rep.Sources, *x)
		}
		order := map[string]int{classSpam: 0, classHam: 1, classHardham: 2}
		sort.Slice(rep.Sources, func(i, j int) bool {
			a, b := rep.Sources[i], rep.Sources[j]
			if a.Class != b.Class {
				return order[a.Class] < order[b.Class]
			}
			return a.Source < b.Source
		})
	}
	return rep
}

func printScoreReport(w io.Writer, r *scoreReport, bySource bool) {
	cls := map[string]scoreClass{}
	var present []string
	for _, c := range r.Classes {
		cls[c.Class] = c
		if c.Messages+c.Unreadable > 0 {
			present = append(present, c.Class)
		}
	}
	width := 20 // the first column: the longest rule name
	for _, rl := range r.Rules {
		width = max(width, min(len(rl.Rule), 60))
	}
	cell := func(n, of int) string { return fmt.Sprintf("%6d %6.2f%%", n, pct(n, of)) }
	label := func(s string) { fmt.Fprintf(w, "  %-*s", width, s) }
	head := func(first string) {
		fmt.Fprintf(w, "%-*s", width+2, first)
		for _, c := range present {
			fmt.Fprintf(w, " %14s", c)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprint(w, "messages   ")
	for _, c := range present {
		x := cls[c]
		fmt.Fprintf(w, "  %s %d", c, x.Messages)
		if x.Unreadable > 0 {
			fmt.Fprintf(w, " (+%d unreadable)", x.Unreadable)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)
	head("final verdict")
	for _, v := range append(scoreVerdicts, "caught") {
		any := false
		for _, c := range present {
			if cls[c].Verdicts[v] > 0 || v == "caught" {
				any = true
			}
		}
		if !any {
			continue
		}
		label(v)
		for _, c := range present {
			n := cls[c].Verdicts[v]
			if v == "caught" {
				n = cls[c].Caught
			}
			fmt.Fprintf(w, " %s", cell(n, cls[c].Messages))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	head("score >= (or by rule)")
	for _, th := range r.Thresholds {
		l := fmt.Sprintf("%g", th.Score)
		if th.Label != "" {
			l += " (" + th.Label + ")"
		}
		label(l)
		for _, c := range present {
			fmt.Fprintf(w, " %s", cell(th.Hit[c], cls[c].Messages))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	head("rule hits")
	if len(r.Rules) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, rl := range r.Rules {
		label(clean(rl.Rule))
		for _, c := range present {
			fmt.Fprintf(w, " %s", cell(rl.Hits[c], cls[c].Messages))
		}
		fmt.Fprintln(w)
	}
	if len(r.Bayes) > 0 {
		fmt.Fprintln(w)
		head("bayes probability")
		for _, b := range r.Bayes {
			label(fmt.Sprintf("[%.1f, %.1f)", b.From, b.To))
			for _, c := range present {
				fmt.Fprintf(w, " %s", cell(b.Count[c], cls[c].Messages))
			}
			fmt.Fprintln(w)
		}
	}
	if bySource && len(r.Sources) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "%-30s %8s %16s\n", "by source", "messages", "caught")
		for _, x := range r.Sources {
			fmt.Fprintf(w, "  %-28s %8d %s\n", clean(x.Class+"/"+x.Source), x.Messages, cell(x.Caught, x.Messages))
		}
	}
}
