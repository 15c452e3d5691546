package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkRulePack is what the shipped rules cost one make-bench-like
// message (2 KB of plain text, ten header fields) through the offline
// pipeline: the baseline files alone, then the whole pack, side by side,
// so their ratio is the pack's cost on ordinary mail.
func BenchmarkRulePack(b *testing.B) {
	pack, _ := filepath.Abs(filepath.Join("..", "..", "deploy", "rules"))
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
			dir := b.TempDir()
			cfg := filepath.Join(dir, "moat.yaml")
			if err := os.WriteFile(cfg, []byte("data_dir: "+dir+"\nrules:\n  paths: [\""+pack+"/"+c.glob+"\"]\n"+
				"  lists:\n    allow_senders: "+pack+"/allow-senders.txt\n    deny_senders: "+pack+"/deny-senders.txt\n"), 0o600); err != nil {
				b.Fatal(err)
			}
			f := filepath.Join(dir, "bench.eml")
			if err := os.WriteFile(f, []byte(msg), 0o600); err != nil {
				b.Fatal(err)
			}
			s, err := newScorer(scoreInput{cfgPath: cfg, ip: "192.0.2.1", helo: "loadgen.client.test"})
			if err != nil {
				b.Fatal(err)
			}
			defer s.cc.Close()
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
