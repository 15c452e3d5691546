package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/smtptest"
	"moat/rules"
)

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestScannerConfigRefused: bad `scanners:` entries are refused, naming
// the key, by both check-config and serve (one validation path).
func TestScannerConfigRefused(t *testing.T) {
	base := "hostname: mx.example.org\ndomains: {local: [example.org]}\n"
	for _, tt := range []struct{ name, yaml, key string }{
		{"bad type", "scanners:\n  - {name: av, type: amavis, address: 127.0.0.1:1}\n", "scanners[0].type"},
		{"bad name", "scanners:\n  - {name: A V, type: clamd, address: 127.0.0.1:3310}\n", "scanners[0].name"},
		{"duplicate", "scanners:\n  - {name: av, type: clamd, address: 127.0.0.1:3310}\n  - {name: av, type: clamd, address: 127.0.0.1:3311}\n", "scanners[1].name"},
		{"address", "scanners:\n  - {name: av, type: clamd, address: clamd.sock}\n", "scanners[0].address"},
		{"url for spamd", "scanners:\n  - {name: sa, type: spamd, address: \"http://127.0.0.1:783\"}\n", "scanners[0].address"},
		{"timeout", "scanners:\n  - {name: av, type: clamd, address: 127.0.0.1:3310, timeout: 1h}\n", "scanners[0].timeout"},
		{"max_size", "scanners:\n  - {name: av, type: clamd, address: 127.0.0.1:3310, max_size: -5}\n", "scanners[0].max_size"},
		{"on_error", "scanners:\n  - {name: av, type: clamd, address: 127.0.0.1:3310, on_error: ignore}\n", "scanners[0].on_error"},
		{"command", "scanners:\n  - {name: sa, type: spamd, address: 127.0.0.1:783, command: REPORT}\n", "scanners[0].command"},
		{"unknown key", "scanners:\n  - {name: av, type: clamd, address: 127.0.0.1:3310, retries: 3}\n", "retries"},
		{"virus_action", "virus_action: bounce\n", "virus_action"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, base+tt.yaml)
			for _, args := range [][]string{{"check-config", p}, {"serve", "--config", p}} {
				root := rootCommand()
				var out, errOut strings.Builder
				root.SetOut(&out)
				root.SetErr(&errOut)
				root.SetArgs(args)
				err := root.Execute()
				if ee, ok := err.(exitError); !ok || ee.code != 1 {
					t.Fatalf("%s: exit %v (stderr %s)", args[0], err, errOut.String())
				}
				if !strings.Contains(errOut.String(), tt.key) {
					t.Errorf("%s: stderr does not name %s:\n%s", args[0], tt.key, errOut.String())
				}
			}
		})
	}
}

// TestScannerConfigDefaults: a minimal entry gets its defaults, and
// virus_action comes from the environment as other scalars do.
func TestScannerConfigDefaults(t *testing.T) {
	p := writeFile(t, "hostname: mx.example.org\ndomains: {local: [example.org]}\nscanners:\n  - {name: sa, type: spamd, address: 127.0.0.1:783}\n")
	t.Setenv("MOAT_VIRUS_ACTION", "quarantine")
	cfg, err := loadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Scanners[0]
	if s.Timeout != 10*time.Second || s.OnError != "tempfail" || s.Command != "SYMBOLS" || s.Required || cfg.VirusAction != "quarantine" {
		t.Fatalf("%+v virus_action %s", s, cfg.VirusAction)
	}
}

// TestScannerDownServe: moat serve with a required scanner that is down
// (a closed loopback port): every message gets 451 4.7.0 and none is
// spooled, and /readyz fails naming the scanner.
func TestScannerDownServe(t *testing.T) {
	path, _ := testConfig(t, "scanners:\n  - {name: av, type: clamd, address: \""+closedPort(t)+"\", timeout: 2s, required: true}\n")
	a := startApp(t, path)
	addr := a.gw.Addr("mx").String()
	rc := smtptest.DialRaw(t, addr)
	rc.Expect("EHLO client.far.example", 250, "")
	for i := 0; i < 20; i++ {
		rc.Expect("MAIL FROM:<a@far.example>", 250, "")
		rc.Expect("RCPT TO:<alice@example.org>", 250, "")
		rc.Expect("DATA", 354, "")
		rc.Send("Subject: hi\r\n\r\nbody\r\n")
		if code, text := rc.Cmd("."); code != 451 || !strings.Contains(text, "4.7.0") {
			t.Fatalf("message %d: %d %s", i, code, text)
		}
	}
	if envs, err := a.spool.List(); err != nil || len(envs) != 0 {
		t.Errorf("spooled %d (%v), want none", len(envs), err)
	}
	// The ping loop ran once at start (bounded by the scanner's timeout).
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := readyz(t, a)
		if code != 200 && strings.Contains(body, "scanner av") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz %d %s, want a failure naming scanner av", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDeployVirusRule: the shipped virus rule file loads with the
// scanner facts, and its rules read virus.policy.
func TestDeployVirusRule(t *testing.T) {
	cfg := rules.DefaultConfig()
	cfg.Paths = []string{"../../deploy/rules/05-virus.yaml"}
	set, err := rules.Load(cfg, (&Config{}).ruleLoadOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() < 2 {
		t.Fatalf("%d rules", set.Len())
	}
}

// yamlBlocks returns the ```yaml blocks of the section of a Markdown file
// that starts with heading (up to the next heading of the same level).
func yamlBlocks(t *testing.T, path, heading string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("%s: no section %q", path, heading)
	}
	level := heading[:strings.IndexByte(heading, ' ')+1]
	if i := strings.Index(sec, "\n"+level); i >= 0 {
		sec = sec[:i]
	}
	var out []string
	for _, part := range strings.Split(sec, "```yaml\n")[1:] {
		body, _, _ := strings.Cut(part, "```")
		out = append(out, body)
	}
	return out
}

// TestScannerDocsExamples: the configuration and rule examples of the
// scanner sections in deploy/README.md and rules/README.md load as written.
func TestScannerDocsExamples(t *testing.T) {
	var ruleBlocks []string
	cfgs := 0
	for _, doc := range []struct{ path, heading string }{
		{"../../deploy/README.md", "## Running moat with rspamd and ClamAV"},
		{"../../rules/README.md", "## Scanner facts (data stage)"},
	} {
		for _, b := range yamlBlocks(t, doc.path, doc.heading) {
			switch {
			case strings.HasPrefix(b, "scanners:"):
				cfgs++
				cfg, err := loadConfig(writeFile(t, "hostname: mx.example.org\ndomains: {local: [example.org]}\n"+b))
				if err != nil {
					t.Fatalf("%s: %v", doc.path, err)
				}
				if len(cfg.Scanners) != 4 {
					t.Errorf("%s: %d scanners", doc.path, len(cfg.Scanners))
				}
			case strings.HasPrefix(b, "rules:"):
				ruleBlocks = append(ruleBlocks, b)
			}
		}
	}
	if cfgs != 1 || len(ruleBlocks) != 2 {
		t.Fatalf("%d config and %d rule examples found", cfgs, len(ruleBlocks))
	}
	for _, b := range ruleBlocks {
		cfg := rules.DefaultConfig()
		p := filepath.Join(t.TempDir(), "r.yaml")
		if err := os.WriteFile(p, []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.Paths = []string{p}
		if _, err := rules.Load(cfg, (&Config{}).ruleLoadOptions(nil)); err != nil {
			t.Errorf("example rules: %v\n%s", err, b)
		}
	}
}

// TestFullExampleScanners: the commented scanner entries of the full
// example are valid once uncommented (they are commented so that a copy of
// the file does not tempfail mail for scanners that are not there).
func TestFullExampleScanners(t *testing.T) {
	b, err := os.ReadFile("../../deploy/moat.full.yaml.example")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\nscanners: []\n")
	if !ok {
		t.Fatal("no scanners: [] in the full example")
	}
	var y strings.Builder
	y.WriteString("hostname: mx.example.org\ndomains: {local: [example.org]}\nscanners:\n")
	for _, l := range strings.Split(rest, "\n") {
		if !strings.HasPrefix(l, "#  ") {
			break
		}
		y.WriteString(strings.TrimPrefix(l, "#") + "\n")
	}
	cfg, err := loadConfig(writeFile(t, y.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, y.String())
	}
	if len(cfg.Scanners) != 4 || cfg.Scanners[0].Name != "rspamd" || !cfg.Scanners[2].Required {
		t.Fatalf("%+v", cfg.Scanners)
	}
}
