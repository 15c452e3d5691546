package junkwatch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"moat/policy/bayes"
	"moat/policy/content"
)

type learned struct {
	id    string
	class bayes.Class
}

// fixture is a mailbox root with alice@example.org and a recording learner.
type fixture struct {
	t          *testing.T
	root, mb   string
	state      string
	calls      []learned
	classifier *bayes.Classifier
	store      *bayes.MemStore
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, root: t.TempDir(), state: filepath.Join(t.TempDir(), "junkwatch.json"), store: bayes.NewMemStore()}
	f.mb = filepath.Join(f.root, "example.org", "alice")
	for _, d := range []string{"cur", "new", "tmp", ".Junk/cur", ".Junk/new", ".Junk/tmp"} {
		if err := os.MkdirAll(filepath.Join(f.mb, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	f.classifier = bayes.New(f.store, bayes.Options{})
	return f
}

func (f *fixture) watcher(opt Options) *Watcher {
	opt.Root, opt.State = f.root, f.state
	opt.Learn = func(ctx context.Context, m *content.Message, c bayes.Class) (bayes.Outcome, error) {
		f.calls = append(f.calls, learned{m.Header("Message-ID"), c})
		return f.classifier.Learn(ctx, bayes.FromContent(m, nil), bayes.DigestOf(m.Header("Message-ID"), m.Raw()), c)
	}
	w, err := New(opt)
	if err != nil {
		f.t.Fatal(err)
	}
	return w
}

// put writes a message into a folder of alice's Maildir.
func (f *fixture) put(dir, name, id string, extra string) string {
	p := filepath.Join(f.mb, dir, name)
	msg := fmt.Sprintf("Message-ID: <%s>\r\n%sSubject: hello %s\r\n\r\nbody of %s\r\n", id, extra, id, id)
	if err := os.WriteFile(p, []byte(msg), 0o640); err != nil {
		f.t.Fatal(err)
	}
	return p
}

func (f *fixture) move(from, to string) {
	if err := os.Rename(filepath.Join(f.mb, from), filepath.Join(f.mb, to)); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) scan(w *Watcher) Stats {
	st, err := w.Scan(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

func (f *fixture) expect(step string, want ...learned) {
	f.t.Helper()
	if fmt.Sprint(f.calls) != fmt.Sprint(want) {
		f.t.Fatalf("%s: learned %v, want %v", step, f.calls, want)
	}
	f.calls = nil
}

func TestMoveIntoJunkAndBack(t *testing.T) {
	f := newFixture(t)
	w := f.watcher(Options{})
	f.put("cur", "1.a:2,S", "a@x", "")
	f.put(".Junk/new", "2.b", "b@x", "X-Spam-Flag: YES\r\n")
	f.scan(w)
	f.expect("inbox mail and moat's own junk")

	f.move("cur/1.a:2,S", ".Junk/cur/1.a:2,S")
	f.scan(w)
	f.expect("moved into Junk", learned{"<a@x>", bayes.ClassSpam})
	f.scan(w)
	f.expect("rescan")

	f.move(".Junk/cur/1.a:2,S", "cur/1.a:2,S")
	f.move(".Junk/new/2.b", "new/2.b")
	f.scan(w)
	if len(f.calls) != 2 || f.calls[0].class != bayes.ClassHam || f.calls[1].class != bayes.ClassHam {
		t.Fatalf("moved back: learned %v, want both as ham", f.calls)
	}
	f.calls = nil
	tot, _ := f.store.Stats(context.Background())
	if tot.Spam != 0 || tot.Ham != 2 {
		t.Fatalf("store: %+v, want 0 spam 2 ham (a moved)", tot)
	}

	// A restart reads the state: nothing is learned again.
	w2 := f.watcher(Options{})
	f.scan(w2)
	f.expect("after restart")
	// Into Junk again: spam again (the store moves it).
	f.move("cur/1.a:2,S", ".Junk/cur/1.a:2,S")
	f.scan(w2)
	f.expect("into Junk again", learned{"<a@x>", bayes.ClassSpam})
}

func TestScanIsBounded(t *testing.T) {
	f := newFixture(t)
	for i := range 5 {
		f.put(".Junk/cur", fmt.Sprintf("%d.m", i), fmt.Sprintf("m%d@x", i), "")
	}
	w := f.watcher(Options{MaxFiles: 2})
	total := 0
	for range 4 {
		st := f.scan(w)
		if st.Files > 2 {
			t.Fatalf("scan read %d files, bound 2", st.Files)
		}
		total += st.Spam
	}
	if total != 5 {
		t.Fatalf("learned %d over four scans, want 5", total)
	}
	// Oversized files are skipped and counted.
	f.put(".Junk/cur", "big", "big@x", "X-Pad: "+string(make([]byte, 100))+"\r\n")
	w3 := f.watcher(Options{MaxBytes: 50})
	st := f.scan(w3)
	if st.Errors == 0 {
		t.Fatalf("oversized file: %+v", st)
	}
}

func TestBrokenStateRescans(t *testing.T) {
	f := newFixture(t)
	if err := os.WriteFile(f.state, []byte("{not json"), 0o640); err != nil {
		t.Fatal(err)
	}
	f.put(".Junk/new", "1.a", "a@x", "")
	w := f.watcher(Options{})
	f.scan(w)
	f.expect("after a broken state", learned{"<a@x>", bayes.ClassSpam})
}

// FuzzState: whatever the state file holds, New and a scan neither fail
// nor panic (a broken state is a full rescan).
func FuzzState(f *testing.F) {
	f.Add([]byte(`{"version":1,"last_scan_unix_nano":1,"mailboxes":{"example.org/alice":[{"d":"00","k":"spam"}]}}`))
	f.Add([]byte(`{"version":1,"resume":true,"last_scan_unix_nano":-5}`))
	f.Add([]byte("{not json"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fx := newFixture(t)
		if err := os.WriteFile(fx.state, b, 0o640); err != nil {
			t.Fatal(err)
		}
		fx.put(".Junk/new", "1.a", "a@x", "")
		w := fx.watcher(Options{})
		if _, err := w.Scan(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}
