package analysis

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/policy/content"
)

const corpusDir = "../content/testdata/corpus"

func analyze(t testing.TB, raw []byte, in Input) *Result {
	t.Helper()
	m, err := content.Parse(raw, content.Options{})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if in.Now.IsZero() {
		in.Now = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	}
	return Analyze(context.Background(), m, in)
}

// TestCorpusNoPanic runs every group over every corpus message.
func TestCorpusNoPanic(t *testing.T) {
	n := 0
	err := filepath.WalkDir(corpusDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, ".md") || strings.Contains(path, "LICENSE") || strings.Contains(path, "NOTICE") {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		m, err := content.Parse(raw, content.Options{})
		if err != nil {
			return nil // header too big: not ours to judge
		}
		r := Analyze(context.Background(), m, Input{Now: time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)})
		r.All()
		if r.MIME().Parts < 1 {
			t.Errorf("%s: no parts", path)
		}
		if os.Getenv("ANALYSIS_DUMP") != "" {
			t.Logf("%s\n hdr=%+v\n mime=%+v\n html=%+v\n urls=%+v\n text=%+v", path, *r.Headers(), *r.MIME(), *r.HTML(), summary(r.URLs()), *r.Text())
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("only %d corpus files", n)
	}
}

func summary(u *URLFacts) URLFacts {
	c := *u
	c.List = nil
	return c
}

func readFile(p string) ([]byte, error) { return os.ReadFile(p) }
