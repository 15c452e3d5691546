package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/smtptest"
)

// waitDir waits (bounded) until dir holds n files and returns their
// contents.
func waitDir(t *testing.T, dir string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ents, _ := os.ReadDir(dir)
		if len(ents) >= n {
			var out []string
			for _, e := range ents {
				b, err := os.ReadFile(filepath.Join(dir, e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, string(b))
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d files, want %d", dir, len(ents), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func headOf(msg string) string {
	h, _, _ := strings.Cut(msg, "\r\n\r\n")
	return h + "\r\n"
}

// End to end, a rule with action junk: a real SMTP client on loopback
// into the gateway; the local recipient's copy lands in the Maildir++
// junk folder, the relayed copy reaches the next hop (a real SMTP sink)
// tagged; a clean message goes to the inbox. Forged X-Spam-* fields of
// the sender never leave.
func TestEndToEndJunk(t *testing.T) {
	sink := smtptest.StartSink(t)
	rulesDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(rulesDir, "10-junk.yaml"), []byte(`rules:
  - name: JUNK_SUBJECT
    stage: data
    when: subject contains "cheap pills"
    action: junk
  - name: PILLS_SCORE
    stage: data
    when: subject contains "pills"
    action: score
    score: 2.5
`), 0o600); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	path := writeConfig(t, appConfig{
		dataDir: dataDir,
		relay:   "{relay.example: backend}",
		extra: `routes: {backend: {type: smtp, address: "` + sink.Addr + `", tls: none}}
rules: {paths: ["` + rulesDir + `/*.yaml"]}
queue: {retry_min: 200ms, retry_max: 1s}
`,
	})
	a, _ := runApp(t, path, testLog(t), nil)
	addr := a.gw.Addr("mx").String()
	const forged = "X-Spam-Flag: NO\r\nX-Spam-Status: No, score=-50.0 required=5.0\r\n\ttests=FORGED\r\nx-spam-score: -50\r\n"
	spam := "From: Seller <seller@far.example>\r\nTo: alice@example.org, user@relay.example\r\nSubject: cheap pills\r\n" +
		"Message-ID: <spam-1@far.example>\r\n" + forged + "\r\nBuy now.\r\n"
	if err := trySend(addr, "seller@far.example", []string{"alice@example.org", "user@relay.example"}, spam); err != nil {
		t.Fatal(err)
	}
	box := filepath.Join(dataDir, "mailboxes", "example.org", "alice")

	// Local: the Junk folder, as Dovecot expects it, not the inbox.
	got := waitDir(t, filepath.Join(box, ".Junk", "new"), 1)
	if len(got) != 1 {
		t.Fatalf("%d messages in .Junk/new", len(got))
	}
	if _, err := os.Stat(filepath.Join(box, ".Junk", "maildirfolder")); err != nil {
		t.Errorf("no maildirfolder: %v", err)
	}
	for _, sub := range []string{"tmp", "cur"} {
		if fi, err := os.Stat(filepath.Join(box, ".Junk", sub)); err != nil || !fi.IsDir() {
			t.Errorf(".Junk/%s: %v", sub, err)
		}
	}
	head := headOf(got[0])
	checkSpamHead(t, "local", head)
	if !strings.HasPrefix(head, "Return-Path: <seller@far.example>\r\n") {
		t.Errorf("local copy lacks Return-Path:\n%s", head)
	}

	// Relayed: tagged at the next hop.
	deadline := time.Now().Add(20 * time.Second)
	var relayed []byte
	for relayed == nil {
		if relayed = sink.Message("<spam-1@far.example>"); relayed == nil {
			if time.Now().After(deadline) {
				t.Fatal("the next hop got nothing")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	checkSpamHead(t, "relayed", headOf(string(relayed)))

	// A clean message: the inbox, X-Spam-Status No, no X-Spam-Flag.
	ham := "From: Friend <friend@far.example>\r\nTo: alice@example.org\r\nSubject: lunch\r\nMessage-ID: <ham-1@far.example>\r\n" + forged + "\r\nNoon?\r\n"
	if err := trySend(addr, "friend@far.example", []string{"alice@example.org"}, ham); err != nil {
		t.Fatal(err)
	}
	inbox := waitDir(t, filepath.Join(box, "new"), 1)
	head = headOf(inbox[0])
	if len(inbox) != 1 || !strings.Contains(head, "Subject: lunch") {
		t.Fatalf("inbox: %q", inbox)
	}
	if strings.Contains(head, "X-Spam-Flag") || strings.Contains(strings.ToLower(head), "-50") || strings.Contains(head, "FORGED") {
		t.Errorf("clean message keeps a flag or forged fields:\n%s", head)
	}
	if !strings.Contains(head, "\r\nX-Spam-Status: No, score=0.0 required=5.0 tests=none\r\n") {
		t.Errorf("clean message lacks X-Spam-Status: No:\n%s", head)
	}
	if n := len(waitDir(t, filepath.Join(box, ".Junk", "new"), 1)); n != 1 {
		t.Errorf("the clean message went to Junk (%d there)", n)
	}
	waitSpoolEmpty(t, a)
}

// checkSpamHead: moat's fields are there, the forged ones are gone.
func checkSpamHead(t *testing.T, which, head string) {
	t.Helper()
	for _, want := range []string{
		"\r\nX-Spam-Flag: YES\r\n",
		"\r\nX-Spam-Score: 2.5\r\n",
		"\r\nX-Spam-Level: **\r\n",
		"\r\nX-Spam-Status: Yes, score=2.5 required=5.0 tests=JUNK_SUBJECT,PILLS_SCORE\r\n",
	} {
		if !strings.Contains(head, want) {
			t.Errorf("%s copy lacks %q:\n%s", which, want, head)
		}
	}
	for _, bad := range []string{"X-Spam-Flag: NO", "FORGED", "-50"} {
		if strings.Contains(head, bad) {
			t.Errorf("%s copy keeps forged %q:\n%s", which, bad, head)
		}
	}
	if strings.Count(strings.ToLower(head), "\nx-spam-") != 4 {
		t.Errorf("%s copy: want exactly moat's 4 X-Spam fields:\n%s", which, head)
	}
}

// moat rules test names the junk verdict and shows the X-Spam-* fields
// the message would leave with.
func TestRulesTestJunk(t *testing.T) {
	dir := t.TempDir()
	rf := writeTestFile(t, dir, "10-rules.yaml", `rules:
  - name: gtube
    stage: data
    when: body contains "GTUBE-STANDARD"
    action: junk
  - {name: a_rather_long_rule_name_number_one, stage: data, action: score, score: 0.1}
  - {name: a_rather_long_rule_name_number_two, stage: data, action: score, score: 0.1}
`)
	zone := writeTestFile(t, dir, "zone.txt", testZone)
	cfg := writeTestFile(t, dir, "moat.yaml", rulesTestConfig(dir, rf, ""))
	eml := filepath.Join("testdata", "spamassassin", "gtube.eml")
	out, errOut, err := runRules("test", "--config", cfg, "--dns", zone, "--eml", eml, "--helo", "mail.example.com",
		"--to", "recipient@example.com", "--ip", "192.0.2.1", "--from", "sender@example.com")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	// The folded X-Spam-Status shows on one line.
	checkOutput(t, out, []string{"data     gtube: junk", "verdict     junk  rule gtube", "header      X-Spam-Flag: YES",
		"header      X-Spam-Status: Yes, score=0.2 required=5.0 tests=a_rather_long_rule_name_number_one, a_rather_long_rule_name_number_two,gtube\n"}, nil)
}

// rules.score.headers defaults to true when the file sets other score
// keys; mailboxes.junk_folder defaults to Junk.
func TestJunkConfigKeys(t *testing.T) {
	for _, tc := range []struct {
		extra   string
		headers bool
		folder  string
	}{
		{"rules: {score: {tag: 6}}\n", true, "Junk"},
		{"rules: {score: {headers: false}}\n", false, "Junk"},
	} {
		path, _ := testConfig(t, tc.extra)
		cfg, err := loadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Rules.Score.Headers != tc.headers || cfg.Mailboxes.JunkFolder != tc.folder {
			t.Errorf("%q: headers %v junk_folder %q", tc.extra, cfg.Rules.Score.Headers, cfg.Mailboxes.JunkFolder)
		}
	}
	path, _ := testConfig(t, "")
	b, _ := os.ReadFile(path)
	b = []byte(strings.Replace(string(b), "mailboxes:\n", "mailboxes:\n  junk_folder: Spam\n", 1))
	os.WriteFile(path, b, 0o600)
	cfg, err := loadConfig(path)
	if err != nil || cfg.Mailboxes.JunkFolder != "Spam" {
		t.Fatalf("junk_folder: %q, %v", cfg.Mailboxes.JunkFolder, err)
	}
	b = []byte(strings.Replace(string(b), "junk_folder: Spam", "junk_folder: ../x", 1))
	os.WriteFile(path, b, 0o600)
	if _, err := loadConfig(path); err == nil || !strings.Contains(err.Error(), "mailboxes.junk_folder") {
		t.Fatalf("bad junk_folder: %v", err)
	}
}
