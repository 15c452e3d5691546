package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"moat/rules"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "moat.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBuiltinDefault(t *testing.T) {
	cfg, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listeners[0].Address != "127.0.0.1:2525" || cfg.Domains.Local[0] != "localhost" || cfg.DataDir != "./moat-data" {
		t.Fatalf("default %+v", cfg)
	}
	if cfg.SMTP.MaxMessageSize != 25<<20 {
		t.Errorf("max size %d", cfg.SMTP.MaxMessageSize)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	p := writeFile(t, `
hostname: mx.example.org
listeners:
  - {name: mx, address: "nonsense", mode: relay, tls: starttls}
trusted_networks: [10.0.0.0/8, "not-a-net"]
smtp: {max_recipients: 0, bare_line_endings: maybe}
log: {level: loud}
domains:
  local: [example.org]
  relay: {corp.example: nowhere}
`)
	_, err := loadConfig(p)
	if err == nil {
		t.Fatal("config with errors accepted")
	}
	msg := strings.Join(errorLines(err), "\n")
	for _, key := range []string{
		"listeners[0].address", "listeners[0].mode", "listeners[0].tls",
		"trusted_networks[1]", "smtp.max_recipients", "smtp.bare_line_endings", "log.level",
		"corp.example",
	} {
		if !strings.Contains(msg, key) {
			t.Errorf("no error names %s; got:\n%s", key, msg)
		}
	}
}

func TestUnknownKeyRefused(t *testing.T) {
	p := writeFile(t, "hostname: mx.example.org\nlistners: []\n")
	_, err := loadConfig(p)
	if err == nil || !strings.Contains(err.Error(), "listners") {
		t.Fatalf("typo not reported: %v", err)
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	p := writeFile(t, "hostname: mx.example.org\ndomains: {local: [example.org]}\n")
	t.Setenv("MOAT_HOSTNAME", "other.example.org")
	t.Setenv("MOAT_DATA_DIR", "/tmp/moat-env")
	t.Setenv("MOAT_DNS_TIMEOUT", "3s")
	t.Setenv("MOAT_SMTP_MAX_RECIPIENTS", "7")
	cfg, err := loadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hostname != "other.example.org" || cfg.DataDir != "/tmp/moat-env" || cfg.DNS.Timeout != 3*time.Second || cfg.SMTP.MaxRecipients != 7 {
		t.Fatalf("env not applied: %+v", cfg)
	}
}

func TestCheckConfigCommand(t *testing.T) {
	bad := writeFile(t, "hostname: mx.example.org\nsmtp: {max_line_length: 10}\n")
	root := rootCommand()
	var out, errOut strings.Builder
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"check-config", bad})
	err := root.Execute()
	if ee, ok := err.(exitError); !ok || ee.code != 1 {
		t.Fatalf("exit: %v", err)
	}
	if !strings.Contains(errOut.String(), "smtp.max_line_length") {
		t.Fatalf("stderr: %s", errOut.String())
	}
}

// Every example configuration shipped in deploy/ parses and validates.
func TestDeployExamplesValidate(t *testing.T) {
	files, _ := filepath.Glob("../../deploy/*.yaml")
	for _, f := range files {
		if _, err := loadConfig(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// The full example names every key; it refers to files that exist only on
// a real host, so it is decoded exactly rather than validated.
func TestFullExampleKeysAreKnown(t *testing.T) {
	cfg, err := decodeConfig("../../deploy/moat.full.yaml.example")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.DKIM.Sign) != 1 || cfg.Verify.HarvestLimit != 20 || cfg.Cluster.Redis.KeyPrefix != "moat:" || cfg.Log.MailLog == "" ||
		cfg.SMTPClient.DataFinal != 10*time.Minute || cfg.Queue.DeliveryTimeout != 10*time.Minute || cfg.VirusAction != "reject" {
		t.Fatalf("example not decoded as written: %+v", cfg)
	}
}

// Every example that configures rules loads the whole shipped pack
// (deploy/rules) with the list names it defines: an example whose list
// is called allow-senders while the rules ask for allow_senders fails
// here, not on an operator's first start.
func TestExamplesLoadTheRulePack(t *testing.T) {
	pack, err := filepath.Abs("../../deploy/rules")
	if err != nil {
		t.Fatal(err)
	}
	examples := map[string]string{}
	b, err := os.ReadFile("../../deploy/moat.full.yaml.example")
	if err != nil {
		t.Fatal(err)
	}
	examples["deploy/moat.full.yaml.example"] = string(b)
	for _, cm := range []string{"kubernetes/configmap.yaml", "kubernetes/fleet/configmap.yaml"} {
		b, err := os.ReadFile("../../deploy/" + cm)
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			Data map[string]string `yaml:"data"`
		}
		if err := yaml.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		examples["deploy/"+cm] = m.Data["moat.yaml"]
	}
	for name, body := range examples {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "moat.yaml")
			if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := decodeConfig(p)
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Rules.Paths) == 0 || len(cfg.Rules.Lists) == 0 {
				t.Fatalf("no rules.paths or rules.lists: %+v", cfg.Rules)
			}
			cfg.Rules.Paths = []string{filepath.Join(pack, "*.yaml")}
			for list, path := range cfg.Rules.Lists {
				cfg.Rules.Lists[list] = filepath.Join(pack, filepath.Base(path))
			}
			if _, err := rules.Load(cfg.Rules, cfg.ruleLoadOptions(nil)); err != nil {
				t.Errorf("the shipped rules do not load with this example's lists: %v", err)
			}
		})
	}
}

func TestTLSPolicyConfig(t *testing.T) {
	p := writeFile(t, `
hostname: mx.example.org
domains: {local: [example.org]}
tls_policy:
  example.com: verify
  .example.net: dane
  bank.example: mta-sts
mta_sts: {fetch_timeout: 10s}
routes:
  out: {type: mx, tls: mta-sts}
`)
	cfg, err := loadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLSPolicy.For("example.com") != "verify" || cfg.TLSPolicy.For("a.example.net") != "dane" || cfg.TLSPolicy.For("bank.example") != "mta-sts" {
		t.Errorf("%v", cfg.TLSPolicy)
	}
	if !cfg.MTASTS.Outbound.Enabled || cfg.MTASTS.Outbound.FetchTimeout != 10*time.Second || cfg.MTASTS.Outbound.CacheSize != 10000 || !cfg.DANE.Enabled {
		t.Errorf("%+v %+v", cfg.MTASTS, cfg.DANE)
	}
	bad := writeFile(t, `
hostname: mx.example.org
domains: {local: [example.org]}
tls_policy: {example.com: strict}
mta_sts: {fetch_timeout: -1s}
dane: {timeout: 0s}
`)
	_, err = loadConfig(bad)
	msg := ""
	if err != nil {
		msg = strings.Join(errorLines(err), "\n")
	}
	for _, key := range []string{"tls_policy.example.com", "mta_sts.fetch_timeout", "dane.timeout"} {
		if !strings.Contains(msg, key) {
			t.Errorf("no error names %s; got:\n%s", key, msg)
		}
	}
}
