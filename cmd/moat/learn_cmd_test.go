package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"moat/policy/bayes"
)

// learnEnv is a config with its own data_dir and a few message files.
type learnEnv struct {
	dir, config, dataDir string
}

func newLearnEnv(t *testing.T) learnEnv {
	t.Helper()
	e := learnEnv{dir: t.TempDir()}
	e.dataDir = filepath.Join(e.dir, "data")
	e.config = filepath.Join(e.dir, "moat.yaml")
	body := "hostname: mx.example.org\ndata_dir: " + e.dataDir + "\nbayes: {enabled: true, min_spam: 2, min_ham: 1}\n"
	if err := os.WriteFile(e.config, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

func testMessage(i int, spam bool) string {
	text := "the meeting notes for tuesday are attached"
	if spam {
		text = "buy cheap pills now http://pills.example/"
	}
	return fmt.Sprintf("From: a%d@example.com\r\nMessage-ID: <%d@example.com>\r\nSubject: message %d\r\n\r\n%s %d\r\n", i, i, i, text, i)
}

func (e learnEnv) write(t *testing.T, rel, content string) string {
	t.Helper()
	p := filepath.Join(e.dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runLearn(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runCombined(learnCommand(), "", args...)
}

func TestLearnCommand(t *testing.T) {
	e := newLearnEnv(t)
	// A Maildir with cur/, new/ and a tmp/ that is not read.
	e.write(t, "Maildir/cur/1:2,S", testMessage(1, true))
	e.write(t, "Maildir/new/2", testMessage(2, true))
	e.write(t, "Maildir/tmp/3", testMessage(3, true))
	// A Maildir++ subfolder is read too.
	e.write(t, "Maildir/.Junk/cur/4", testMessage(4, true))
	// A directory tree of files, one of them not a message at all.
	e.write(t, "ham/a/5.eml", testMessage(5, false))
	e.write(t, "ham/6.eml", testMessage(6, false))
	e.write(t, "ham/huge-header", strings.Repeat("X-Long: "+strings.Repeat("a", 1000)+"\r\n", 400))
	// An mbox with two messages, one From_ line quoted in a body.
	mbox := e.write(t, "old.mbox", "From a@example.com Mon Jan  1 00:00:00 2024\n"+
		strings.ReplaceAll(testMessage(7, false), "\r\n", "\n")+">From the archive\n\n"+
		"From b@example.com Mon Jan  1 00:00:00 2024\n"+strings.ReplaceAll(testMessage(8, false), "\r\n", "\n"))

	out, err := runLearn(t, "--config", e.config, "spam", filepath.Join(e.dir, "Maildir"))
	if err != nil || !strings.Contains(out, "spam: learned 3, already known 0, moved 0, unreadable 0") {
		t.Fatalf("learn spam: %v\n%s", err, out)
	}
	out, err = runLearn(t, "--config", e.config, "ham", filepath.Join(e.dir, "ham"), mbox)
	if err != nil || !strings.Contains(out, "ham: learned 4, already known 0, moved 0, unreadable 1") {
		t.Fatalf("learn ham: %v\n%s", err, out)
	}
	// Twice counts once.
	out, err = runLearn(t, "--config", e.config, "spam", filepath.Join(e.dir, "Maildir"))
	if err != nil || !strings.Contains(out, "learned 0, already known 3") {
		t.Fatalf("learn spam again: %v\n%s", err, out)
	}
	// The other class moves it.
	out, err = runLearn(t, "--config", e.config, "ham", filepath.Join(e.dir, "Maildir", "new", "2"))
	if err != nil || !strings.Contains(out, "moved 1") || !strings.Contains(out, "holds 2 spam and 5 ham") {
		t.Fatalf("move: %v\n%s", err, out)
	}
	out, err = runLearn(t, "--config", e.config, "--forget", filepath.Join(e.dir, "Maildir", "new", "2"), filepath.Join(e.dir, "Maildir", "tmp", "3"))
	if err != nil || !strings.Contains(out, "forgot 1 (0 spam, 1 ham), not learned 1") {
		t.Fatalf("forget: %v\n%s", err, out)
	}
	out, err = runLearn(t, "--config", e.config, "prune")
	if err != nil || !strings.Contains(out, "removed ") {
		t.Fatalf("prune: %v\n%s", err, out)
	}
	out, err = runLearn(t, "--config", e.config, "stats")
	if err != nil || !strings.Contains(out, "spam learned: 2\nham learned:  4\n") || !strings.Contains(out, "ready:        yes") {
		t.Fatalf("stats: %v\n%s", err, out)
	}
}

func TestLearnCommandErrors(t *testing.T) {
	e := newLearnEnv(t)
	msg := e.write(t, "m.eml", testMessage(1, true))
	for _, args := range [][]string{
		{"--config", e.config, "eggs", msg},
		{"--config", e.config, "spam"},
		{"--config", e.config, "spam", filepath.Join(e.dir, "missing")},
	} {
		if out, err := runLearn(t, args...); err == nil {
			t.Errorf("%q: no error\n%s", args, out)
		}
	}
	// Stats before anything was learned does not create the file.
	out, err := runLearn(t, "--config", e.config, "stats")
	if err != nil || !strings.Contains(out, "not created yet") || !strings.Contains(out, "ready:        no") {
		t.Fatalf("stats on nothing: %v\n%s", err, out)
	}
	// A daemon holding bayes.db: learn says so instead of waiting.
	if err := os.MkdirAll(e.dataDir, 0o750); err != nil {
		t.Fatal(err)
	}
	held, err := bayes.OpenBolt(filepath.Join(e.dataDir, "bayes.db"), bayes.BoltOptions{LockTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	_, err = runLearn(t, "--config", e.config, "spam", msg)
	if err == nil || !strings.Contains(err.Error(), "moat serve") || !strings.Contains(err.Error(), "cluster.redis") {
		t.Fatalf("locked store: %v", err)
	}
}

func TestLearnCommandRedis(t *testing.T) {
	mr := miniredis.RunT(t)
	e := newLearnEnv(t)
	body := "hostname: mx.example.org\ndata_dir: " + e.dataDir + "\ncluster: {redis: {address: \"" + mr.Addr() + "\", key_prefix: \"x:\"}}\n"
	if err := os.WriteFile(e.config, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	msg := e.write(t, "m.eml", testMessage(1, true))
	out, err := runLearn(t, "--config", e.config, "spam", msg)
	if err != nil || !strings.Contains(out, "learned 1") {
		t.Fatalf("learn: %v\n%s", err, out)
	}
	out, err = runLearn(t, "--config", e.config, "stats")
	if err != nil || !strings.Contains(out, "redis "+mr.Addr()) || !strings.Contains(out, "spam learned: 1") {
		t.Fatalf("stats: %v\n%s", err, out)
	}
	if _, err := runLearn(t, "--config", e.config, "prune"); err == nil || !strings.Contains(err.Error(), "token_ttl") {
		t.Errorf("prune on Redis: %v", err)
	}
	if !mr.Exists("x:bayes:n") {
		t.Errorf("no totals under the key prefix: %v", mr.Keys())
	}
	if _, err := os.Stat(filepath.Join(e.dataDir, "bayes.db")); err == nil {
		t.Error("bayes.db created although the store is Redis")
	}
}

func FuzzMboxSplit(f *testing.F) {
	f.Add([]byte("From a Mon Jan  1 00:00:00 2024\nSubject: x\n\nbody\n>From quoted\n\nFrom b Mon\nSubject: y\n\nz\n"))
	f.Add([]byte("From \n\nFrom \n"))
	f.Add([]byte("From x\r\n\r\n>>From y\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		total := 0
		err := eachMboxMessage(raw, func(m []byte) error {
			if len(m) == 0 {
				t.Fatal("empty message passed on")
			}
			total += len(m)
			return nil
		})
		if err == nil && total > len(raw)+bytes.Count(raw, []byte("\n"))+1 {
			t.Fatalf("split into %d bytes from %d", total, len(raw))
		}
	})
}
