package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const scoreRules = `rules:
  - name: gtube
    stage: data
    when: body contains "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
    action: reject
    reply: "554 5.7.1 Message content rejected (GTUBE)"
  - name: money-subject
    stage: data
    when: lower(subject) matches "(lottery|winner|million)"
    action: score
    score: 4
  - name: click-here
    stage: data
    when: lower(body) contains "click here"
    action: score
    score: 2
  - name: quarantine-wire
    stage: data
    when: lower(body) contains "wire transfer"
    action: quarantine
  - name: patch-subject
    stage: data
    when: subject startsWith "[PATCH"
    action: score
    score: -1
  - name: sender-seen
    stage: mail
    when: sender.domain == "lists.example.org"
    action: log
  - name: dry-free
    stage: data
    when: lower(body) contains "free"
    action: score
    score: 9
    dry_run: true
`

func scoreMsg(from, to, subject, body string) string {
	return "Return-Path: <" + from + ">\nFrom: " + from + "\nTo: " + to + "\nSubject: " + subject +
		"\nMessage-ID: <x@example.org>\n\n" + body + "\n"
}

// scoreCorpus writes a tiny labelled corpus: spam as a directory tree
// with sources, ham as a Maildir, hardham as a file list.
func scoreCorpus(t *testing.T, dir string) (spam, ham, hardham string) {
	spam = filepath.Join(dir, "spam")
	for _, d := range []string{"spam/src1", "spam/src2", "ham/cur", "ham/new", "ham/tmp", "hard"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// spam: 1 GTUBE (reject), 1 winner+click (score 6: junk), 1 wire
	// transfer (quarantine), 1 lottery only (score 4: accepted), 1 plain.
	writeTestFile(t, dir, "spam/src1/1.eml", scoreMsg("a@spam.example", "victim@example.org", "hello", "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"))
	writeTestFile(t, dir, "spam/src1/2.eml", scoreMsg("b@spam.example", "victim@example.org", "You are a WINNER", "Click here for your prize"))
	writeTestFile(t, dir, "spam/src2/3.eml", scoreMsg("c@spam.example", "victim@example.org", "urgent", "please make the wire transfer today"))
	writeTestFile(t, dir, "spam/src2/4.eml", scoreMsg("d@spam.example", "victim@example.org", "lottery results", "you won something, it is free"))
	writeTestFile(t, dir, "spam/src2/src3__5.eml", scoreMsg("e@spam.example", "victim@example.org", "hi", "just text"))
	writeTestFile(t, dir, "spam/.hidden", "not a message")
	// ham: 3 messages in a Maildir (one in tmp/ is skipped), one with a
	// click here (score 2: accepted).
	ham = filepath.Join(dir, "ham")
	writeTestFile(t, dir, "ham/cur/1", scoreMsg("dev@lists.example.org", "list@lists.example.org", "[PATCH] fix it", "diff"))
	writeTestFile(t, dir, "ham/new/2", scoreMsg("bob@example.net", "alice@example.org", "lunch", "click here to see the menu"))
	writeTestFile(t, dir, "ham/new/3", "From: nobody\nSubject: no addresses\n\nbody\n")
	writeTestFile(t, dir, "ham/tmp/4", scoreMsg("x@example.net", "y@example.org", "winner", "click here"))
	// hardham: a list of two files, one missing (unreadable).
	writeTestFile(t, dir, "hard/1.eml", scoreMsg("news@shop.example", "alice@example.org", "Weekly winners", "click here to unsubscribe"))
	hardham = writeTestFile(t, dir, "hard/list", "# hard ham\n1.eml\nmissing.eml\n")
	return spam, ham, hardham
}

func TestRulesScore(t *testing.T) {
	dir := t.TempDir()
	rf := writeTestFile(t, dir, "10-rules.yaml", scoreRules)
	cfg := writeTestFile(t, dir, "moat.yaml", "data_dir: "+dir+"\nrules:\n  paths: ["+rf+"]\n  score: {tag: 5, reject: 15}\n")
	spam, ham, hardham := scoreCorpus(t, dir)
	args := []string{"score", "--config", cfg, "--spam", spam, "--ham", ham, "--hardham", hardham, "--workers", "3"}

	out, errOut, err := runRules(append(args, "--json")...)
	if err != nil {
		t.Fatalf("score: %v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, "missing.eml") {
		t.Errorf("stderr does not name the unreadable file: %q", errOut)
	}
	var rep scoreReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	cls := map[string]scoreClass{}
	for _, c := range rep.Classes {
		cls[c.Class] = c
	}
	check := func(what string, got, want any) {
		t.Helper()
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(want)
		if string(gb) != string(wb) {
			t.Errorf("%s = %s, want %s", what, gb, wb)
		}
	}
	check("spam", cls["spam"], scoreClass{Class: "spam", Messages: 5, Verdicts: map[string]int{"reject": 1, "junk": 1, "quarantine": 1, "accept": 2}, Caught: 3, CaughtPct: 60})
	check("ham", cls["ham"], scoreClass{Class: "ham", Messages: 3, Verdicts: map[string]int{"accept": 3}})
	check("hardham", cls["hardham"], scoreClass{Class: "hardham", Messages: 1, Unreadable: 1, Verdicts: map[string]int{"junk": 1}, Caught: 1, CaughtPct: 100})

	rules := map[string]map[string]int{}
	var order []string
	for _, r := range rep.Rules {
		rules[r.Rule] = r.Hits
		order = append(order, r.Rule)
	}
	check("rule order", order, []string{"money-subject", "dry-free", "gtube", "quarantine-wire", "click-here", "patch-subject", "sender-seen"})
	check("click-here", rules["click-here"], map[string]int{"spam": 1, "ham": 1, "hardham": 1})
	check("money-subject", rules["money-subject"], map[string]int{"spam": 2, "hardham": 1})
	check("dry-free", rules["dry-free"], map[string]int{"spam": 1})
	check("patch-subject", rules["patch-subject"], map[string]int{"ham": 1})
	check("sender-seen", rules["sender-seen"], map[string]int{"ham": 1})

	th := map[float64]scoreThreshold{}
	for _, x := range rep.Thresholds {
		th[x.Score] = x
	}
	// scores: spam 0 (gtube, by rule), 6, 0 (quarantine, by rule), 4, 0;
	// ham -1, 2, 0; hardham 6.
	check("threshold 2", th[2].Hit, map[string]int{"spam": 4, "ham": 1, "hardham": 1})
	check("threshold 4", th[4].Hit, map[string]int{"spam": 4, "hardham": 1})
	check("threshold 5", th[5], scoreThreshold{Score: 5, Label: "tag", Hit: map[string]int{"spam": 3, "hardham": 1},
		Pct: map[string]float64{"spam": 60, "ham": 0, "hardham": 100}})
	check("threshold 7", th[7].Hit, map[string]int{"spam": 2})
	check("reject label", th[15].Label, "reject")
	if len(rep.Bayes) != 0 {
		t.Errorf("bayes buckets without a classifier: %v", rep.Bayes)
	}

	// The text report, by source, with a limit of 2 per class.
	out, errOut, err = runRules(append(args, "--by-source", "--limit", "2")...)
	if err != nil {
		t.Fatalf("score: %v\n%s", err, errOut)
	}
	for _, want := range []string{
		"messages     spam 2  ham 2  hardham 1 (+1 unreadable)",
		"  caught                    2 100.00%      0   0.00%      1 100.00%",
		"  5 (tag)                   2 100.00%      0   0.00%      1 100.00%",
		"  click-here                0   0.00%      1  50.00%      1 100.00%",
		"  spam/src1                           1      1 100.00%",
		"  ham/ham                             2      0   0.00%",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
}

func TestRulesScoreErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := writeTestFile(t, dir, "moat.yaml", "data_dir: "+dir+"\n")
	for _, args := range [][]string{
		{"score", "--config", cfg},
		{"score", "--config", cfg, "--spam", filepath.Join(dir, "nope")},
		{"score", "--config", cfg, "--spam", dir, "--ip", "not-an-ip"},
		{"score", "--config", cfg, "--spam", dir, "--to", "no-domain"},
	} {
		if _, _, err := runRules(args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestEnvelopeOf(t *testing.T) {
	for _, tc := range []struct{ msg, from, to string }{
		{"Return-Path: <a@x.example>\r\nFrom: b@y.example\r\nTo: c@z.example\r\n\r\n", "a@x.example", "c@z.example"},
		{"Return-Path: <>\r\nFrom: b@y.example\r\nDelivered-To: d@z.example\r\nTo: c@z.example\r\n\r\n", "", "d@z.example"},
		{"From: \"B\" <b@y.example>\r\nTo: undisclosed-recipients:;\r\nCc: e@z.example\r\n\r\n", "b@y.example", "e@z.example"},
		{"From: nobody\r\nTo: phishing@pot\r\n\r\n", "", "phishing@pot"},
		{"From: <@route:a@x.example>\r\nTo: a@[192.0.2.1]\r\n\r\n", "", defaultScoreRcpt},
		{"not a header at all", "", defaultScoreRcpt},
	} {
		from, to := envelopeOf([]byte(tc.msg))
		if from != tc.from || to != tc.to {
			t.Errorf("%q: got %q %q, want %q %q", tc.msg, from, to, tc.from, tc.to)
		}
	}
}

func FuzzEnvelopeOf(f *testing.F) {
	f.Add([]byte("Return-Path: <a@x.example>\r\nFrom: b@y.example\r\nTo: c@z.example\r\n\r\nbody"))
	f.Add([]byte("From: =?utf-8?q?B?= <b@y.example>\r\nTo: a@b.example, c@d.example\r\nDelivered-To: x\r\n\r\n"))
	f.Add([]byte("Return-Path: <>\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		from, to := envelopeOf(b)
		if to == "" || len(to) > 254 || len(from) > 254 {
			t.Fatalf("envelope %q %q", from, to)
		}
	})
}

// TestDeployRulePack loads the whole shipped rule pack (deploy/rules) with
// the fact groups of the pipeline, checks that GTUBE is still refused and
// that the repository's ham test messages are not flagged.
func TestDeployRulePack(t *testing.T) {
	dir := t.TempDir()
	pack, err := filepath.Abs(filepath.Join("..", "..", "deploy", "rules"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeTestFile(t, dir, "moat.yaml", "data_dir: "+dir+"\nrules:\n  paths: [\""+pack+"/*.yaml\"]\n"+
		"  lists:\n    allow_senders: "+pack+"/allow-senders.txt\n    deny_senders: "+pack+"/deny-senders.txt\n")
	out, errOut, err := runRules("check", "--config", cfg)
	if err != nil {
		t.Fatalf("rules check: %v\n%s", err, errOut)
	}
	files, _ := filepath.Glob(filepath.Join(pack, "*.yaml"))
	if !strings.Contains(out, fmt.Sprintf("in %d files: ok", len(files))) {
		t.Errorf("rules check: %s", out)
	}
	corpus := filepath.Join("..", "..", "rules", "testdata", "corpus")
	// List files take paths relative to themselves: absolute ones here.
	abs := func(files ...string) []string {
		var out []string
		for _, f := range files {
			p, err := filepath.Abs(filepath.Join(corpus, f))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		}
		return out
	}
	spam := writeTestFile(t, dir, "spam.list", strings.Join(abs("spamassassin/spam/gtube.eml",
		"spamassassin/spam/gtubedcc_crlf.eml", "rspamd/gtube.eml"), "\n"))
	// Personal and list mail (not the newsletter: bulk may be tagged; not
	// spamassassin/nice/005, whose header ends early, a parser test).
	ham := abs("rspamd/ham.eml", "rspamd/transactional.eml",
		"spamassassin/nice/001", "spamassassin/nice/002", "spamassassin/nice/003",
		"spamassassin/nice/007", "spamassassin/nice/base64.txt", "spamassassin/nice/cjk/iso-2022-jp.2",
		"spamassassin/nice/cjk/gb2312.2", "enmime/mail/attachment.raw", "enmime/mail/qp-utf8-header.raw",
		"enmime/mail/html-mime-inline.raw")
	hamList := writeTestFile(t, dir, "ham.list", strings.Join(ham, "\n"))
	lines := filepath.Join(dir, "messages.jsonl")
	out, errOut, err = runRules("score", "--config", cfg, "--spam", spam, "--ham", hamList, "--json", "--messages", lines)
	if err != nil {
		t.Fatalf("score: %v\n%s", err, errOut)
	}
	var rep scoreReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Classes {
		switch c.Class {
		case classSpam:
			if c.Messages != 3 || c.Verdicts["reject"] != 3 {
				t.Errorf("GTUBE: %+v", c)
			}
		case classHam:
			if c.Messages != len(ham) || c.Verdicts["accept"] != len(ham) {
				t.Errorf("ham: %+v", c)
			}
		}
	}
	b, err := os.ReadFile(lines)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var sl scoreLine
		if err := json.Unmarshal([]byte(l), &sl); err != nil {
			t.Fatalf("--messages line %q: %v", l, err)
		}
		if sl.Class == classSpam && !slices.Contains(sl.Rules, "gtube") {
			t.Errorf("%s: rules %v, want gtube", sl.Path, sl.Rules)
		}
		if sl.Class == classHam && sl.Score >= 5 {
			t.Errorf("%s: score %g, rules %v", sl.Path, sl.Score, sl.Rules)
		}
		n++
	}
	if n != 3+len(ham) {
		t.Errorf("--messages has %d lines, want %d", n, 3+len(ham))
	}
}

// BenchmarkScoreDeployPack is the cost of one message through the offline
// pipeline with the shipped rule pack (the repository's test messages in
// turn): what the pack adds to a message at DATA, parsing included.
func BenchmarkScoreDeployPack(b *testing.B) {
	dir := b.TempDir()
	pack, _ := filepath.Abs(filepath.Join("..", "..", "deploy", "rules"))
	cfg := filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(cfg, []byte("data_dir: "+dir+"\nrules:\n  paths: [\""+pack+"/*.yaml\"]\n"+
		"  lists:\n    allow_senders: "+pack+"/allow-senders.txt\n    deny_senders: "+pack+"/deny-senders.txt\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	s, err := newScorer(scoreInput{cfgPath: cfg, ip: "192.0.2.1", helo: "mail.example.net"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.cc.Close()
	files, err := listScoreFiles(classHam, []string{filepath.Join("..", "..", "rules", "testdata", "corpus")}, 0)
	if err != nil || len(files) == 0 {
		b.Fatal(files, err)
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.run(ctx, files[i%len(files)])
	}
}
