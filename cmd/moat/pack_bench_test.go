package main

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/rules"
)

// packScorer is the offline pipeline with the shipped rule files that
// glob picks from deploy/rules, and their lists.
func packScorer(tb testing.TB, glob string) *scorer {
	tb.Helper()
	pack, _ := filepath.Abs(filepath.Join("..", "..", "deploy", "rules"))
	dir := tb.TempDir()
	cfg := filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(cfg, []byte("data_dir: "+dir+"\nrules:\n  paths: [\""+pack+"/"+glob+"\"]\n"+
		"  lists:\n    allow_senders: "+pack+"/allow-senders.txt\n    deny_senders: "+pack+"/deny-senders.txt\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	s, err := newScorer(scoreInput{cfgPath: cfg, ip: "192.0.2.1", helo: "loadgen.client.test"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.cc.Close() })
	return s
}

// BenchmarkRulePack is what the shipped rules cost one make-bench-like
// message (2 KB of plain text, ten header fields) through the offline
// pipeline: the baseline files alone, then the whole pack, side by side,
// so their ratio is the pack's cost on ordinary mail.
func BenchmarkRulePack(b *testing.B) {
	var body strings.Builder
	line := strings.Repeat("abcdefghijklmnopqrstuvwxyz0123456789", 3)[:76] + "\r\n"
	for body.Len()+len(line) <= 2048 {
		body.WriteString(line)
	}
	msg := "Received: from loadgen.client.test (loadgen.client.test [127.0.0.1])\r\n\tby mx.example.org; Thu, 3 Dec 2026 20:00:00 +0000\r\n" +
		"From: <bench@sender.test>\r\nTo: <user@relay.test>\r\nSubject: loadgen 1\r\n" +
		"Message-ID: <1.1@loadgen.client.test>\r\nDate: Thu, 3 Dec 2026 20:00:00 +0000\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" + body.String()
	for _, c := range []struct{ name, glob string }{
		{"baseline", "[1-4]0-*.yaml"},
		{"pack", "*.yaml"},
	} {
		b.Run(c.name, func(b *testing.B) {
			s := packScorer(b, c.glob)
			f := filepath.Join(b.TempDir(), "bench.eml")
			if err := os.WriteFile(f, []byte(msg), 0o600); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			sf := scoreFile{path: f, class: classHam}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s.run(ctx, sf)
			}
		})
	}
}

// TestDeployPackCompiled: every rule of the shipped pack but the rate
// limit runs as compiled closures, and they answer as the expr VM does
// at every stage over each test message of the repository and of
// ../shared/testdata/corpus.
func TestDeployPackCompiled(t *testing.T) {
	s := packScorer(t, "*.yaml")
	var files []string
	for _, root := range []string{filepath.Join("..", "..", "rules", "testdata", "corpus"), filepath.Join("..", "..", "..", "shared", "testdata", "corpus")} {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() && !strings.HasSuffix(p, ".md") && !strings.HasSuffix(p, ".tsv") && !strings.HasPrefix(d.Name(), "LICENSE") {
				files = append(files, p)
			}
			return nil
		})
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	if len(files) < 20 {
		t.Fatalf("only %d test messages", len(files))
	}
	ctx := context.Background()
	compiled := map[string]bool{}
	for _, f := range files {
		out, err := s.offline(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for stage := rules.StageConnect; stage <= rules.StageData; stage++ {
			rep := s.engine.DiffCompiled(ctx, stage, &out.Txn.Facts)
			for _, d := range rep.Differ {
				t.Errorf("%s, stage %s: %s", f, stage, d)
			}
			for _, r := range rep.VMOnly {
				if r != "sender-domain-rate" {
					t.Errorf("rule %s is not compiled", r)
				}
			}
			for _, r := range rep.Compiled {
				compiled[r] = true
			}
		}
	}
	if n := s.engine.Set().Len(); len(compiled) != n-1 {
		t.Errorf("%d of %d rules compiled", len(compiled), n)
	}
	if !compiled["obfuscated-drug-names"] || !compiled["html-invisible-text"] {
		t.Error("the content rules were not compiled")
	}
	t.Logf("%d rules compiled, %d messages", len(compiled), len(files))
}
