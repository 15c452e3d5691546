package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/smtptest"
	"moat/policy/cluster"
)

// variantConfig writes, next to the config at path, a copy with the
// replacements oldnew (old, new, old, new ...; each must occur) and
// returns its path.
func variantConfig(t *testing.T, path, name string, oldnew ...string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(oldnew); i += 2 {
		if !strings.Contains(string(b), oldnew[i]) {
			t.Fatalf("%s lacks %q", path, oldnew[i])
		}
	}
	p := filepath.Join(filepath.Dir(path), name)
	if err := os.WriteFile(p, []byte(strings.NewReplacer(oldnew...).Replace(string(b))), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInForceKeepsWhatNeedsARestart(t *testing.T) {
	boot := defaults()
	boot.Cluster = cluster.DefaultConfig()
	boot.Auth.AuthservID = boot.Hostname

	cur := defaults()
	cur.Auth.AuthservID = cur.Hostname
	cur.Cluster.Redis.Address = "127.0.0.1:6379"
	cur.Hostname = "other.example"
	cur.Auth.AuthservID = "other.example"
	cur.Rules.Score.Reject = 9
	cur.Rules.Greylist.MaxEntries = 7
	cur.Domains.Local = []string{"example.net"}
	cur.Auth.SPFFailScore = 3

	next, keys := inForce(&boot, &cur)
	want := "hostname,auth (enabled, authserv_id, timeout),cluster,rules.greylist.max_entries"
	if got := strings.Join(keys, ","); got != want {
		t.Errorf("keys = %s, want %s", got, want)
	}
	// Restart-only keys keep their boot values ...
	if next.Hostname != boot.Hostname || next.Cluster != boot.Cluster || next.Auth.AuthservID != boot.Auth.AuthservID ||
		next.Rules.Greylist.MaxEntries != boot.Rules.Greylist.MaxEntries {
		t.Errorf("a restart-only key was applied: %+v", next)
	}
	// ... the rest is applied, and cur itself is not changed.
	if next.Rules.Score.Reject != 9 || next.Domains.Local[0] != "example.net" || next.Auth.SPFFailScore != 3 {
		t.Errorf("a live key was not applied: %+v", next)
	}
	if cur.Hostname != "other.example" {
		t.Error("inForce changed its argument")
	}
	if _, keys := inForce(&boot, &boot); len(keys) != 0 {
		t.Errorf("no change, yet keys %v", keys)
	}
}

// TestReloadUnderLoad reloads the configuration over and over while SMTP
// sessions and /readyz run against the gateway on loopback. Under -race
// it shows that the configuration in force has one owner; without it,
// that no message and no probe fails across reloads.
func TestReloadUnderLoad(t *testing.T) {
	rulesDir := t.TempDir()
	extraA := "rules: {paths: [\"" + rulesDir + "/*.yaml\"]}\n"
	pathA, _ := testConfig(t, extraA)
	// B changes keys applied live (thresholds, trusted networks) and one
	// that needs a restart (hostname).
	pathB := variantConfig(t, pathA, "moat-b.yaml",
		"hostname: mx.example.org", "hostname: other.example.org",
		"trusted_networks: []", "trusted_networks: [192.0.2.0/24]")
	a := startApp(t, pathA)
	smtpAddr := a.gw.Addr("mx").String()
	readyz := "http://" + a.admin.Addr().String() + "/readyz"

	const senders, perSender, probes, reloads = 2, 10, 40, 20
	var wg sync.WaitGroup
	errs := make(chan error, senders*perSender+probes)
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perSender; i++ {
				id := fmt.Sprintf("reload-%d-%d@far.example", s, i)
				msg := smtptest.Message("sender@far.example", "alice@example.org", id, "during reloads\r\n")
				if err := smtptest.Send(smtpAddr, "sender@far.example", []string{"alice@example.org"}, msg); err != nil {
					errs <- fmt.Errorf("message %s: %w", id, err)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		client := &http.Client{Timeout: 10 * time.Second}
		for i := 0; i < probes; i++ {
			resp, err := client.Get(readyz)
			if err != nil {
				errs <- err
				continue
			}
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs <- fmt.Errorf("/readyz %d: %s", resp.StatusCode, b)
			}
		}
	}()
	for i := 0; i < reloads; i++ {
		if i%2 == 0 {
			a.reload(pathB)
		} else {
			a.reload(pathA)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// The last reload was to A; the hostname of B never took effect.
	if got := a.cfg.Load(); got.Hostname != "mx.example.org" || len(got.TrustedNetworks) != 0 {
		t.Errorf("in force after reloads: hostname %q, trusted_networks %v", got.Hostname, got.TrustedNetworks)
	}
	a.reload(pathB)
	if got := a.cfg.Load(); got.Hostname != "mx.example.org" || len(got.TrustedNetworks) != 1 {
		t.Errorf("in force after reload to B: hostname %q (restart-only), trusted_networks %v", got.Hostname, got.TrustedNetworks)
	}
}

// TestRuleEditAfterReloadUsesNewConfig: after a reload that moves the
// rule files and changes the thresholds, the watcher follows the new
// configuration: an edit in the new directory is loaded with the new
// thresholds, and the old directory is no longer watched.
func TestRuleEditAfterReloadUsesNewConfig(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	extraA := "rules: {paths: [\"" + dirA + "/*.yaml\"], score: {reject: 15}}\n"
	pathA, _ := testConfig(t, extraA)
	pathB := variantConfig(t, pathA, "moat-b.yaml", extraA, "rules: {paths: [\""+dirB+"/*.yaml\"], score: {reject: 9}}\n")
	a := startApp(t, pathA)
	a.reload(pathB)
	if got := a.rules.Set().Config().Score.Reject; got != 9 {
		t.Fatalf("after reload, rules.score.reject = %v, want 9", got)
	}
	rule := func(name string) string {
		return "rules:\n  - name: " + name + "\n    stage: mail\n    when: sender.domain == \"spam.example\"\n    action: reject\n"
	}
	// An edit in the old directory first: a watcher left on the boot
	// configuration would load it, with the old threshold.
	if err := os.WriteFile(filepath.Join(dirA, "old.yaml"), []byte(rule("old")), 0o600); err != nil {
		t.Fatal(err)
	}
	loaded := func() bool {
		set := a.rules.Set()
		f := set.Files()
		return len(f) == 1 && filepath.Dir(f[0]) == dirB && set.Len() == 1
	}
	// The file appears whole (rename), as editors save. The new watcher
	// starts in the background, so the edit is repeated, after more than
	// the watcher's debounce, until it has been seen (bounded).
	tmp := t.TempDir()
	for i := 0; i < 20 && !loaded(); i++ {
		src := filepath.Join(tmp, fmt.Sprintf("new-%d.yaml", i))
		if err := os.WriteFile(src, []byte(rule("new")), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(src, filepath.Join(dirB, "new.yaml")); err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 50 && !loaded(); j++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
	set := a.rules.Set()
	if !loaded() {
		t.Fatalf("the edit in the new rule directory was not loaded; files in force: %v", set.Files())
	}
	if got := set.Config().Score.Reject; got != 9 {
		t.Errorf("the watcher loaded with rules.score.reject = %v, want the reloaded 9", got)
	}
}
