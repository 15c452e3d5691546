package rules

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/policy"
	"moat/policy/content"
)

const deployDir = "../deploy/rules"

func deployConfig() Config {
	cfg := DefaultConfig()
	// The baseline files (10- to 40-): the content pack (50- and up)
	// reads the fact groups that gateway registers, so cmd/moat loads and
	// tests the whole pack (TestDeployRulePack).
	cfg.Paths = []string{filepath.Join(deployDir, "[1-4]?-*.yaml")}
	cfg.Lists = map[string]string{
		"allow_senders": filepath.Join(deployDir, "allow-senders.txt"),
		"deny_senders":  filepath.Join(deployDir, "deny-senders.txt"),
	}
	return cfg
}

func TestDeployExamplesParse(t *testing.T) {
	if errs := CheckConfig(deployConfig(), LoadOptions{}); len(errs) > 0 {
		t.Fatal(errs)
	}
	files, _ := filepath.Glob(filepath.Join(deployDir, "*.yaml"))
	if len(files) < 4 {
		t.Fatalf("only %d example files", len(files))
	}
}

func corpusFacts(t *testing.T, file string) Facts {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "corpus", file))
	if err != nil {
		t.Fatal(err)
	}
	m, err := content.Parse(raw, content.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return Facts{
		Conn:    policy.Conn{ID: "c", IP: netip.MustParseAddr("203.0.113.7"), PTR: "mail.sender.example", HELO: "mail.sender.example", Mode: "mx"},
		IPRev:   policy.IPRev{Result: policy.ResultPass},
		Env:     policy.Envelope{Sender: "someone@sender.example", Recipients: []string{"user@example.org"}, Size: int64(len(raw))},
		SPF:     policy.SPF{Result: policy.ResultNone},
		DKIM:    policy.DKIM{Result: policy.ResultNone},
		DMARC:   policy.DMARC{Result: policy.ResultNone},
		Message: m,
	}
}

func TestDeployCorpus(t *testing.T) {
	s, err := Load(deployConfig(), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file   string
		action Action
		rule   string
	}{
		{"spamassassin/spam/gtube.eml", Reject, "gtube"},
		{"spamassassin/spam/gtubedcc_crlf.eml", Reject, "gtube"},
		{"rspamd/gtube.eml", Reject, "gtube"},
		{"rspamd/exe_attm.eml", Reject, "executable-attachment"},
		{"rspamd/bad_ext.dotted_file_name.eml", Reject, "executable-attachment"},
		{"rspamd/ham.eml", Continue, ""},
		{"rspamd/newsletter.eml", Continue, ""},
		{"rspamd/transactional.eml", Continue, ""},
		{"spamassassin/nice/001", Continue, ""},
		{"spamassassin/nice/002", Continue, ""},
		{"spamassassin/nice/003", Continue, ""},
		{"spamassassin/nice/005", Continue, ""},
		{"spamassassin/nice/007", Continue, ""},
		{"spamassassin/nice/base64.txt", Continue, ""},
		{"spamassassin/nice/cjk/iso-2022-jp.2", Continue, ""},
		{"spamassassin/nice/cjk/gb2312.2", Continue, ""},
		{"enmime/mail/attachment.raw", Continue, ""},
		{"enmime/mail/qp-utf8-header.raw", Continue, ""},
		{"enmime/mail/html-mime-inline.raw", Continue, ""},
		{"enmime/low-quality/bad-final-boundary.raw", Continue, ""},
		{"enmime/mail/multipart-wo-boundary.raw", Continue, ""},
		{"enmime/mail/mime-bad-content-type.raw", Continue, ""},
		{"spamassassin/spam/badmime.txt", Continue, ""},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			res := Test(context.Background(), s, corpusFacts(t, tt.file), nil)
			v := res.Final
			if v.Action != tt.action || v.Rule != tt.rule {
				t.Fatalf("verdict %s by %q (score %.1f), want %s by %q; hits %v", v.Action, v.Rule, res.Score, tt.action, tt.rule, ExplainMap(v)["hits"])
			}
			if v.Action == Reject && (v.Reply == nil || v.Reply.Code/100 != 5 || !strings.Contains(v.Reply.Text, "[incident ")) {
				t.Errorf("reply %v", v.Reply)
			}
		})
	}
	// Spam scoring: a spammy subject on a bulk TLD without SPF is tagged.
	f := corpusFacts(t, "rspamd/transactional.eml")
	f.Env.Sender = "promo@deals.top"
	f.Conn.HELO = "[203.0.113.7]"
	res := Test(context.Background(), s, f, nil)
	if res.Score < 5 || !res.Final.Junk {
		t.Errorf("bulk: score %.1f junk %v", res.Score, res.Final.Junk)
	}
}

func TestDeployDomainLists(t *testing.T) {
	s, err := Load(deployConfig(), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		sender string
		ip     string
		spf    policy.Result
		action Action
		rule   string
	}{
		{"bad@example.net", "203.0.113.7", policy.ResultPass, Reject, "deny-listed-sender"},
		{"x@spammer.example", "203.0.113.7", policy.ResultNone, Reject, "deny-listed-sender"},
		{"x@ok.example", "198.51.100.9", policy.ResultNone, Reject, "deny-listed-network"},
		{"x@mail.partner.example", "203.0.113.7", policy.ResultPass, Accept, "allow-listed-sender"},
		{"x@partner.example", "203.0.113.7", policy.ResultFail, Continue, ""},
	}
	for _, tt := range tests {
		t.Run(tt.sender, func(t *testing.T) {
			f := corpusFacts(t, "spamassassin/spam/gtube.eml")
			f.Env.Sender, f.Conn.IP, f.SPF.Result = tt.sender, netip.MustParseAddr(tt.ip), tt.spf
			e := NewEngine(s, EngineOptions{})
			var v Verdict
			for _, st := range []Stage{StageConnect, StageHelo, StageMail} {
				if v = e.Evaluate(context.Background(), st, &f); v.Action != Continue {
					break
				}
			}
			if v.Action != tt.action || v.Rule != tt.rule {
				t.Fatalf("%s by %q, want %s by %q", v.Action, v.Rule, tt.action, tt.rule)
			}
		})
	}
	// An allow-listed sender skips the GTUBE rule: accept at mail is carried.
	f := corpusFacts(t, "spamassassin/spam/gtube.eml")
	f.Env.Sender, f.SPF.Result = "a@partner.example", policy.ResultPass
	if res := Test(context.Background(), s, f, nil); res.Final.Action != Accept {
		t.Errorf("allow-listed: %s by %s", res.Final.Action, res.Final.Rule)
	}
}

func TestDeployRateLimit(t *testing.T) {
	s, err := Load(deployConfig(), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(s, EngineOptions{})
	f := corpusFacts(t, "rspamd/transactional.eml")
	for i := 1; i <= 101; i++ {
		v := e.Evaluate(context.Background(), StageMail, &f)
		if want := i > 100; (v.Action == Tempfail) != want || (want && v.Reply.Code != 451) {
			t.Fatalf("message %d: %s", i, v.Action)
		}
	}
	f.Env.Sender = "x@other.example"
	if v := e.Evaluate(context.Background(), StageMail, &f); v.Action != Continue {
		t.Fatalf("other domain: %s", v.Action)
	}
}
