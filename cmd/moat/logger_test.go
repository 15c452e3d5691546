package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
)

// syncBuffer is a WriteSyncer that records what reached it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Sync() error { return nil }

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Info lines wait in the buffer (for at most logFlushInterval); a warning
// flushes them and itself at once; Sync flushes at exit.
func TestLoggerBuffering(t *testing.T) {
	out := &syncBuffer{}
	log, err := newLogger(LogConfig{Level: "info", Format: "json"}, out)
	if err != nil {
		t.Fatal(err)
	}
	log = log.With(zap.String("conn_id", "C1"))
	log.Info("accepted", zap.String("queue_id", "Q1"))
	log.Debug("not logged")
	if got := out.String(); got != "" {
		t.Fatalf("an info line was written at once: %q", got)
	}
	log.Warn("spool nearly full")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("after a warning: %d lines: %q", len(lines), out.String())
	}
	for i, want := range []string{"accepted", "spool nearly full"} {
		var m map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &m); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if m["msg"] != want || m["conn_id"] != "C1" {
			t.Errorf("line %d: %v", i, m)
		}
	}
	log.Info("last words")
	log.Sync()
	if !strings.Contains(out.String(), "last words") {
		t.Errorf("Sync did not flush: %q", out.String())
	}
	if _, err := newLogger(LogConfig{Level: "loud"}, out); err == nil {
		t.Error("level loud accepted")
	}
}
