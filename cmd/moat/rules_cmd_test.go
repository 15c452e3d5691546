package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"moat/internal/maillog"
)

func runRules(args ...string) (stdout, stderr string, err error) {
	return runCommand(rulesCommand(), args...)
}

// runCommand runs a moat subcommand with args and returns what it wrote.
func runCommand(cmd *cobra.Command, args ...string) (stdout, stderr string, err error) {
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	var o, e bytes.Buffer
	cmd.SetOut(&o)
	cmd.SetErr(&e)
	cmd.SetArgs(args)
	err = cmd.Execute()
	return o.String(), e.String(), err
}

// runCombined runs a command with stdin and returns what it wrote to
// stdout and stderr together.
func runCombined(cmd *cobra.Command, stdin string, args ...string) (string, error) {
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	var out bytes.Buffer
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func writeTestFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodRules = `rules:
  - name: bulk-tld
    stage: mail
    when: sender.domain matches "\\.(top|xyz)$" && spf.result != "pass"
    action: score
    score: 4.0
  - name: gtube
    stage: data
    when: body contains "GTUBE-STANDARD"
    action: score
    score: 1.5
  - name: gtube-dry
    stage: data
    when: subject == "GTUBE"
    action: discard
    dry_run: true
`

const badRules = `rules:
  - name: ok-one
    stage: mail
    when: spf.result == "fail"
    action: score
    score: 1
  - name: typo
    stage: mail
    when: spf.reslt == "fail"
    action: reject
  - name: early
    stage: connect
    when: dkim.result == "pass"
    action: accept
`

func TestRulesCheck(t *testing.T) {
	dir := t.TempDir()
	good := writeTestFile(t, dir, "10-good.yaml", goodRules)
	bad := writeTestFile(t, dir, "20-bad.yaml", badRules)
	cfg := writeTestFile(t, dir, "moat.yaml", "data_dir: "+dir+"\nrules:\n  paths: ["+good+"]\n")
	badCfg := writeTestFile(t, dir, "bad.yaml", "data_dir: "+dir+"\nrules:\n  paths: ["+dir+"/*.yaml]\n")
	// Facts of the content, ARC and scanner checks, known without --config.
	facts := writeTestFile(t, t.TempDir(), "30-facts.yaml", "rules:\n"+
		"  - {name: arc-fail, stage: data, action: score, score: 1, when: 'arc.result == \"fail\"'}\n"+
		"  - {name: virus, stage: data, action: reject, when: virus.found}\n"+
		"  - {name: many-urls, stage: data, action: score, score: 1, when: 'urls.count > 50'}\n")

	tests := []struct {
		name    string
		args    []string
		wantErr bool
		out     []string // in stdout
		errOut  []*regexp.Regexp
	}{
		{name: "good file", args: []string{"check", good}, out: []string{"3 rules in 1 files: ok"}},
		{name: "good config", args: []string{"check", "--config", cfg}, out: []string{"3 rules in 1 files: ok"}},
		{name: "bad file", args: []string{"check", good, bad}, wantErr: true, errOut: []*regexp.Regexp{
			regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(bad) + `:9:\d+: rule "typo": .*reslt`),
			regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(bad) + `:13:\d+: rule "early": .*dkim`),
			regexp.MustCompile(`(?m)^2 error\(s\)$`),
		}},
		{name: "bad config", args: []string{"check", "--config", badCfg}, wantErr: true, errOut: []*regexp.Regexp{
			regexp.MustCompile(`20-bad\.yaml:9:\d+: rule "typo"`),
		}},
		{name: "facts of every check without a config", args: []string{"check", facts}, out: []string{"3 rules in 1 files: ok"}},
		{name: "missing file", args: []string{"check", filepath.Join(dir, "nope.yaml")}, wantErr: true, errOut: []*regexp.Regexp{
			regexp.MustCompile(`nope\.yaml: no such file`),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := runRules(tc.args...)
			var ee exitError
			if tc.wantErr != (err != nil) || (err != nil && (!errors.As(err, &ee) || ee.code != 1)) {
				t.Fatalf("err = %v\nstdout %s\nstderr %s", err, out, errOut)
			}
			for _, w := range tc.out {
				if !strings.Contains(out, w) {
					t.Errorf("stdout %q lacks %q", out, w)
				}
			}
			for _, re := range tc.errOut {
				if !re.MatchString(errOut) {
					t.Errorf("stderr does not match %s:\n%s", re, errOut)
				}
			}
		})
	}
}

// zone: example.com allows 192.0.2.0/24 and publishes DMARC p=reject;
// 192.0.2.1 has forward-confirmed reverse DNS.
const testZone = `$TTL 300
example.com.              IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.example.com.       IN TXT "v=DMARC1; p=reject"
1.2.0.192.in-addr.arpa.   IN PTR mail.example.com.
mail.example.com.         IN A   192.0.2.1
7.100.51.198.in-addr.arpa. IN PTR dyn.example.net.
`

// rulesTestConfig is the configuration the rules test command runs with:
// example.com local with one mailbox, loopback trusted, the rule file rf,
// and extra top-level keys.
func rulesTestConfig(dir, rf, extra string) string {
	return `data_dir: ` + dir + `
domains:
  local: [example.com]
mailboxes:
  users:
    recipient@example.com: {}
trusted_networks: [127.0.0.0/8]
` + extra + `rules:
  paths: [` + rf + `]
`
}

func rulesTestSetup(t *testing.T) (cfg, zone string) {
	t.Helper()
	dir := t.TempDir()
	rf := writeTestFile(t, dir, "10-rules.yaml", goodRules)
	zone = writeTestFile(t, dir, "zone.txt", testZone)
	cfg = writeTestFile(t, dir, "moat.yaml", rulesTestConfig(dir, rf, ""))
	return cfg, zone
}

func TestRulesTest(t *testing.T) {
	cfg, zone := rulesTestSetup(t)
	eml := filepath.Join("testdata", "spamassassin", "gtube.eml")
	base := []string{"test", "--config", cfg, "--dns", zone, "--eml", eml, "--helo", "mail.example.com", "--to", "recipient@example.com"}
	tests := []struct {
		name string
		args []string
		want []string
		not  []string
	}{
		{name: "spf pass, dmarc pass", args: []string{"--ip", "192.0.2.1", "--from", "sender@example.com"}, want: []string{
			"iprev     pass names=mail.example.com", "spf       pass mailfrom=example.com", "dmarc     pass policy=reject",
			"spf_aligned=true", "data     gtube: score", `body = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n`, "data     gtube-dry: discard (dry run: not applied)",
			"score       1.5", "verdict     accept", "recipient@example.com  route local",
		}, not: []string{"auth:dmarc"}},
		{name: "spf fail, dmarc reject", args: []string{"--ip", "198.51.100.7", "--from", "sender@example.com"}, want: []string{
			"iprev     fail", "spf       fail mailfrom=example.com", "dmarc     fail policy=reject",
			"verdict     reject  rule auth:dmarc  reply \"550 5.7.1", "[incident ",
		}},
		{name: "null sender checks helo", args: []string{"--ip", "198.51.100.7", "--from", ""}, want: []string{
			"spf       none helo=mail.example.com",
		}},
		{name: "trusted skips checks", args: []string{"--ip", "127.0.0.1", "--from", "sender@example.com"}, want: []string{
			"in trusted_networks", "checks      skipped", "verdict     accept",
		}, not: []string{"dmarc "}},
		// As moat serve does (RFC 6409 §8.1), the sender must be the user's.
		{name: "authenticated skips checks", args: []string{"--ip", "198.51.100.7", "--from", "sender@example.com", "--auth-user", "alice", "--tls"}, want: []string{
			"authenticated as alice", "checks      skipped", `verdict     reject  rule check:mail_policy  reply "550 5.7.1 Sender address not owned by user"`,
		}},
		{name: "relay refused", args: []string{"--ip", "198.51.100.7", "--from", "sender@example.com", "--to", "x@elsewhere.example"}, want: []string{
			"x@elsewhere.example  refused before the rules: 554 5.7.1 Relay access denied", "rcpt     continue",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := runRules(append(append([]string(nil), base...), tc.args...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, errOut)
			}
			checkOutput(t, out, tc.want, tc.not)
		})
	}
	// JSON output carries the same verdict.
	out, _, err := runRules(append(base, "--ip", "198.51.100.7", "--from", "sender@example.com", "--json")...)
	if err != nil || !strings.Contains(out, `"action": "reject"`) || !strings.Contains(out, `"Result": "fail"`) {
		t.Errorf("json: %v\n%s", err, out)
	}
	// Bad input is refused clearly.
	if _, _, err := runRules(append(base, "--ip", "not-an-ip")...); err == nil || !strings.Contains(err.Error(), "--ip") {
		t.Errorf("bad ip: %v", err)
	}
}

// TestRulesTestGuard: the guard's lists run first, as at connect. A
// denied client and one the DNS lists score at the threshold are refused
// before any check; below it the score is the rules' dnsbl fact; a
// trusted client is not looked up.
func TestRulesTestGuard(t *testing.T) {
	dir := t.TempDir()
	zone := writeTestFile(t, dir, "zone.txt", testZone+"7.100.51.198.bl.test. IN A 127.0.0.2\n")
	rf := writeTestFile(t, dir, "10-rules.yaml", `rules:
  - name: listed
    stage: connect
    when: dnsbl.score > 0
    action: score
    score: 2.5
`)
	config := func(threshold int) string {
		return writeTestFile(t, dir, fmt.Sprintf("moat-%d.yaml", threshold), rulesTestConfig(dir, rf, `guard:
  deny: [203.0.113.9]
  dnsbl: {zones: [{zone: bl.test, weight: 1}], threshold: `+strconv.Itoa(threshold)+`}
`))
	}
	eml := filepath.Join("testdata", "spamassassin", "gtube.eml")
	tests := []struct {
		name      string
		threshold int
		ip        string
		want      []string
		not       []string
	}{
		{"listed at the threshold", 1, "198.51.100.7", []string{"dnsbl       score 1 bl.test=127.0.0.2(+1)", "checks      not run", "verdict     reject  rule guard:dnsbl  reply \"550 5.7.1 ", "blocked using bl.test"}, []string{"stages:", "iprev"}},
		{"listed below it: a fact", 5, "198.51.100.7", []string{"dnsbl       score 1 bl.test", "connect  listed: score — +2.5", "score       2.5"}, nil},
		{"not listed", 1, "192.0.2.1", []string{"dnsbl       score 0", "verdict     accept"}, []string{"listed: score"}},
		{"denied", 1, "203.0.113.9", []string{"checks      not run", "verdict     reject  rule guard:deny_list  reply \"554 5.7.1"}, []string{"dnsbl "}},
		{"trusted: no lookup", 1, "127.0.0.1", []string{"verdict     accept"}, []string{"dnsbl "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := runRules("test", "--config", config(tc.threshold), "--dns", zone, "--eml", eml, "--helo", "mail.example.com",
				"--to", "recipient@example.com", "--from", "sender@example.com", "--ip", tc.ip)
			if err != nil {
				t.Fatalf("%v\n%s", err, errOut)
			}
			checkOutput(t, out, tc.want, tc.not)
		})
	}
}

// checkOutput fails t for each of want that out lacks and each of not
// that it has.
func checkOutput(t *testing.T, out string, want, not []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	for _, w := range not {
		if strings.Contains(out, w) {
			t.Errorf("output has %q:\n%s", w, out)
		}
	}
}

func TestRulesExplain(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	ml := maillog.New(&buf)
	when := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ml.Log(maillog.Event{Time: when, Kind: maillog.Accepted, Client: "192.0.2.1", QueueID: "Q1", Sender: "a@example.com", Recipients: []string{"b@example.org"}})
	ml.Log(maillog.Event{Time: when, Kind: maillog.Rejected, Client: "198.51.100.7", ConnID: "c42", HELO: "evil.example",
		Sender: "spoof@example.com", Recipients: []string{"b@example.org", "c@example.org"}, Rule: "auth:dmarc",
		Incident: "ABCDE23456", Reply: "550 5.7.1 DMARC policy says reject [incident ABCDE23456]"})
	ml.Log(maillog.Event{Time: when, Kind: maillog.Rejected, Client: "198.51.100.8", Rule: "other", Incident: "ZZZZZ23456"})
	mailLog := writeTestFile(t, dir, "mail.log", buf.String()+strings.Repeat("x", maxLogLine+10)+" ABCDE23456\n")
	zapJSON := writeTestFile(t, dir, "moat.json", `{"level":"info","ts":1777636800.5,"logger":"smtp","msg":"refused","conn_id":"c42","action":"reject","rule":"auth:dmarc","incident":"ABCDE23456","sender":"spoof@example.com","stage":"data","client":"198.51.100.7","reply":"DMARC policy says reject [incident ABCDE23456]"}
{"level":"info","ts":1777636801,"msg":"refused","incident":"ABCDE23456X"}
`)
	zapConsole := writeTestFile(t, dir, "moat.log", "2026-05-01T12:00:00.000Z\tINFO\tsmtp\trefused\t{\"conn_id\": \"c42\", \"rule\": \"auth:dmarc\", \"incident\": \"ABCDE23456\", \"client\": \"198.51.100.7\", \"rcpt\": \"b@example.org\"}\n")
	cfg := writeTestFile(t, dir, "moat.yaml", "data_dir: "+dir+"\nlog:\n  mail_log: "+mailLog+"\n")

	out, errOut, err := runRules("explain", "--config", cfg, "ABCDE23456")
	if err != nil {
		t.Fatalf("%v %s", err, errOut)
	}
	for _, w := range []string{mailLog + ":2", "2026-05-01T12:00:00Z", "event       rejected", "client      198.51.100.7 helo evil.example",
		"sender      spoof@example.com", "recipients  b@example.org, c@example.org", "rule        auth:dmarc", "reply       550 5.7.1 DMARC policy says reject [incident ABCDE23456]"} {
		if !strings.Contains(out, w) {
			t.Errorf("explain output lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "ZZZZZ") || strings.Contains(out, ":1\n") || strings.Count(out, "event ") != 1 {
		t.Errorf("explain printed other lines:\n%s", out)
	}

	out, _, err = runRules("explain", "--log", mailLog, "--log", zapJSON, "--log", zapConsole, "ABCDE23456")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{zapJSON + ":1", "2026-05-01T12:00:00.5Z", "stage       data", `action="reject"`, zapConsole + ":1", "recipients  b@example.org"} {
		if !strings.Contains(out, w) {
			t.Errorf("explain with daemon logs lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, zapJSON+":2") {
		t.Errorf("a longer id matched:\n%s", out)
	}

	_, errOut, err = runRules("explain", "--log", mailLog, "QQQQQ23456")
	var ee exitError
	if !errors.As(err, &ee) || !strings.Contains(errOut, "not found") {
		t.Errorf("unknown incident: %v %q", err, errOut)
	}
	if _, _, err := runRules("explain", "--log", mailLog, "../x y"); err == nil {
		t.Error("bad id accepted")
	}
	noLog := writeTestFile(t, dir, "nolog.yaml", "data_dir: "+dir+"\n")
	if _, _, err := runRules("explain", "--config", noLog, "ABCDE23456"); err == nil || !strings.Contains(err.Error(), "--log") {
		t.Errorf("no mail log configured: %v", err)
	}
}

func FuzzMatchLine(f *testing.F) {
	f.Add(`2026-05-01T12:00:00.000Z moat: event=rejected client=1.2.3.4 incident=ABCDE23456`)
	f.Add(`{"ts":1.5,"msg":"refused","incident":"ABCDE23456","rcpt":"a@b"}`)
	f.Add("2026\tINFO\trefused\t{\"incident\":\"ABCDE23456\",\"recipients\":[\"a\",1]}")
	f.Fuzz(func(t *testing.T, line string) {
		m, ok := matchLine(line, "ABCDE23456")
		if ok {
			printMatch(&bytes.Buffer{}, "f:1", m)
		}
	})
}
