//go:build chaos

package chaos

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"moat/internal/smtptest"
	"moat/test/testenv"
)

func envInt(t *testing.T, key string, def int) int {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q is not a count", key, v)
	}
	return n
}

// TestKillNineLosesNothing sends CHAOS_MESSAGES messages (default 1000),
// half to a relay domain routed to a recording sink and half to a local
// Maildir, from concurrent clients, while moat is killed with SIGKILL
// CHAOS_CYCLES times (default 20) at random moments and restarted on the
// same data_dir. After the queue drains, every message that got a 250
// must have arrived at least once (ARCHITECTURE.md: no mail acknowledged with
// 250 is lost; RFC 5321 §6.1: once 250 is sent the server owns the
// message), and no file in a Maildir new/ may be truncated: each must be
// the whole message that was sent (Maildir delivery writes tmp/, fsyncs,
// then renames into new/).
func TestKillNineLosesNothing(t *testing.T) {
	n := envInt(t, "CHAOS_MESSAGES", 1000)
	cycles := envInt(t, "CHAOS_CYCLES", 20)
	const senders = 8

	sink := smtptest.StartSink(t)
	m := testenv.NewMoat(t, testenv.MoatBinary(t), testenv.MoatOptions{
		LocalDomain: "moat.test",
		Users:       []string{"alice@moat.test"},
		Relay:       map[string]string{"relay.test": "sink"},
		Routes:      map[string]string{"sink": "smtp " + sink.Addr},
	})
	m.Start()

	run := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(run), 7))
	type message struct {
		id, to string
		raw    []byte
	}
	msgs := make([]message, n)
	for i := range msgs {
		to := "rcpt@relay.test"
		if i%2 == 1 {
			to = "alice@moat.test"
		}
		id := fmt.Sprintf("chaos-%d-%d@client.test", run, i)
		// 1 KiB to 256 KiB: big enough that kills land inside writes.
		size := 1024 << rng.IntN(9)
		msgs[i] = message{id: id, to: to, raw: smtptest.Message("sender@client.test", to, id, body(i, size))}
	}

	var (
		next      atomic.Int64
		mu        sync.Mutex
		acked     = map[string]bool{}
		attempts  atomic.Int64
		gaveUp    atomic.Int64
		sendersWG sync.WaitGroup
	)
	deadline := time.Now().Add(5 * time.Minute)
	for s := 0; s < senders; s++ {
		sendersWG.Add(1)
		go func() {
			defer sendersWG.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				msg := msgs[i]
				// Retry the same message (same Message-ID) until it gets
				// a 250: an attempt cut by a kill may or may not have
				// been spooled, so duplicates are allowed, loss is not.
				for {
					attempts.Add(1)
					err := smtptest.Send(m.Addr, "sender@client.test", []string{msg.to}, msg.raw)
					if err == nil {
						mu.Lock()
						acked[msg.id] = true
						mu.Unlock()
						break
					}
					if time.Now().After(deadline) {
						gaveUp.Add(1)
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}

	// The killer: SIGKILL at random moments, during sending and then
	// during delivery, each time restarting on the same data_dir.
	killerDone := make(chan error, 1)
	go func() {
		krng := rand.New(rand.NewPCG(uint64(run), 11))
		for c := 0; c < cycles; c++ {
			time.Sleep(time.Duration(30+krng.IntN(400)) * time.Millisecond)
			m.Kill()
			time.Sleep(time.Duration(krng.IntN(100)) * time.Millisecond)
			if err := m.TryStart(); err != nil {
				killerDone <- fmt.Errorf("restart %d: %w", c+1, err)
				return
			}
		}
		killerDone <- nil
	}()
	sendersWG.Wait()
	if err := <-killerDone; err != nil {
		t.Fatal(err)
	}
	if g := gaveUp.Load(); g > 0 {
		t.Fatalf("%d messages never got a 250 within 5 minutes\nmoat log:\n%s", g, m.LogTail(30))
	}
	t.Logf("%d messages acknowledged after %d attempts, %d kills", len(acked), attempts.Load(), cycles)

	// Wait for the queue to drain: every acknowledged relay message at the
	// sink, every local one in alice's Maildir.
	wantRelay, wantLocal := 0, 0
	for _, msg := range msgs {
		if acked[msg.id] {
			if strings.HasSuffix(msg.to, "@relay.test") {
				wantRelay++
			} else {
				wantLocal++
			}
		}
	}
	newDir := func() []string { return m.MaildirNew("alice@moat.test") }
	// Drained means every acknowledged local message is in new/, counted
	// by Message-ID: duplicates (at-least-once) make the number of files
	// reach wantLocal while a message is still waiting for its retry.
	// A file's id is read once, from its head.
	idOf := map[string]string{}
	localDistinct := func() int {
		ids := map[string]bool{}
		for _, f := range newDir() {
			id, ok := idOf[f]
			if !ok {
				id = smtptest.MessageID(readHead(f, 16<<10))
				idOf[f] = id
			}
			ids[id] = true
		}
		return len(ids)
	}
	drained := testenv.WaitFor(3*time.Minute, func() bool {
		return sink.Count() >= wantRelay && localDistinct() >= wantLocal
	})

	// Relay: at least once.
	var missing, dups []string
	// tally notes each acknowledged message to a relayed (or a local)
	// recipient that counts (by Message-ID) holds no time or more than once.
	tally := func(counts map[string]int, relayed bool) {
		for _, msg := range msgs {
			if !acked[msg.id] || strings.HasSuffix(msg.to, "@relay.test") != relayed {
				continue
			}
			switch k := counts["<"+msg.id+">"]; {
			case k == 0:
				missing = append(missing, msg.id)
			case k > 1:
				dups = append(dups, fmt.Sprintf("%s×%d", msg.id, k))
			}
		}
	}
	tally(sink.Seen(), true)

	// Local: every file whole, every acknowledged message present.
	byID := map[string]message{}
	for _, msg := range msgs {
		byID["<"+msg.id+">"] = msg
	}
	local := map[string]int{}
	var truncated []string
	for _, f := range newDir() {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		id := smtptest.MessageID(b)
		msg, ok := byID[id]
		if !ok || !bytes.HasSuffix(b, smtptest.Body(msg.raw)) || !bytes.Contains(b, msg.raw[:bytes.Index(msg.raw, []byte("\r\n\r\n"))]) {
			truncated = append(truncated, fmt.Sprintf("%s (%d bytes, Message-ID %q)", filepath.Base(f), len(b), id))
			continue
		}
		local[id]++
	}
	tally(local, false)
	tmpLeft, _ := filepath.Glob(filepath.Join(m.DataDir, "mailboxes", "moat.test", "alice", "tmp", "*"))

	sort.Strings(dups)
	t.Logf("relay: %d acknowledged, %d distinct at the sink; local: %d acknowledged, %d files in new/, %d left in tmp/",
		wantRelay, sink.Count(), wantLocal, len(newDir()), len(tmpLeft))
	t.Logf("duplicates (allowed, at-least-once): %d %v", len(dups), head(dups, 10))
	if len(truncated) > 0 {
		t.Errorf("%d Maildir files in new/ are truncated or not what was sent: %v", len(truncated), head(truncated, 10))
	}
	if len(missing) > 0 {
		t.Errorf("LOST: %d acknowledged messages never arrived (drained=%v): %v\nmoat log:\n%s",
			len(missing), drained, head(missing, 10), m.LogTail(30))
	}
}

// readHead returns at most n bytes from the start of file f.
func readHead(f string, n int) []byte {
	fh, err := os.Open(f)
	if err != nil {
		return nil
	}
	defer fh.Close()
	b := make([]byte, n)
	k, _ := io.ReadFull(fh, b)
	return b[:k]
}

func head(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], "…")
	}
	return s
}

// body is size bytes of CRLF lines ending with a marker line, so a
// truncated copy cannot match.
func body(i, size int) string {
	var b strings.Builder
	line := fmt.Sprintf("message %d: the quick brown fox jumps over the lazy dog 0123456789\r\n", i)
	for b.Len()+len(line) < size {
		b.WriteString(line)
	}
	fmt.Fprintf(&b, "END OF MESSAGE %d\r\n", i)
	return b.String()
}
