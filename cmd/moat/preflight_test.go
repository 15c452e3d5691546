package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/policy/dkimsign"
)

// runCmd runs the moat command line with args and returns its standard
// error and exit error.
func runCmd(args ...string) (string, error) {
	root := rootCommand()
	var out, errOut strings.Builder
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	return errOut.String(), err
}

// Every configuration serve refuses before it binds, check-config
// refuses too, with the same key named: both run loadChecked.
func TestCheckConfigRefusesWhatServeRefuses(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	garbageKey := write("garbage.key", "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n", 0o600)
	notPEM := write("notpem.key", "hello\n", 0o600)
	unreadable := write("unreadable.key", "x", 0o000)
	aFile := write("a-file", "x", 0o600)
	garbageCert := write("garbage.crt", "not a certificate\n", 0o600)
	edPEM, _, err := dkimsign.GenerateKey("ed25519")
	if err != nil {
		t.Fatal(err)
	}
	edKey := write("ed.key", string(edPEM), 0o600)
	srsSecrets := write("srs.secrets", "s3cret\n", 0o600)
	dkim := func(keyFile string) string {
		return "dkim:\n  sign:\n    - {domain: example.org, selector: s1, key_file: " + keyFile + "}\n"
	}
	const adminLine = `admin: {address: "127.0.0.1:0"}`
	const mxLine = `{name: mx, address: "127.0.0.1:0"`
	tests := []struct {
		name     string
		old, new string // replaced in the base configuration
		extra    string // appended
		key      string // the key the error names
		root     bool   // meaningful only for a non-root user
	}{
		{name: "admin beyond loopback without a token", old: adminLine, new: `admin: {address: "0.0.0.0:8025"}`, key: "admin.address"},
		{name: "admin port out of range", old: adminLine, new: `admin: {address: "127.0.0.1:99999"}`, key: "admin.address"},
		{name: "listener port out of range", old: mxLine, new: `{name: mx, address: "127.0.0.1:70000"`, key: "listeners[0].address"},
		{name: "listener port unknown service", old: mxLine, new: `{name: mx, address: "127.0.0.1:nosuchservice"`, key: "listeners[0].address"},
		{name: "admin token file missing", old: adminLine, new: `admin: {address: "0.0.0.0:8025", token_file: "` + filepath.Join(dir, "nope") + `"}`, key: "admin.token_file"},
		{name: "DKIM key missing", extra: dkim(filepath.Join(dir, "missing.key")), key: "dkim.sign"},
		{name: "DKIM key garbage", extra: dkim(garbageKey), key: "dkim.sign"},
		{name: "DKIM key not PEM", extra: dkim(notPEM), key: "dkim.sign"},
		{name: "DKIM key unreadable", extra: dkim(unreadable), key: "dkim.sign", root: true},
		{name: "TLS certificate garbage", extra: "tls: {cert_file: " + garbageCert + ", key_file: " + garbageKey + "}\n", key: "tls"},
		{name: "data_dir is a file", old: "data_dir: " + "DATADIR", new: "data_dir: " + aFile, key: "data_dir"},
		{name: "mail log in a missing directory", old: "mail_log: ", new: "mail_log: " + aFile + "/", key: "log.mail_log"},
		{name: "SRS secret file missing", extra: "srs: {domain: srs.example.org, secret_file: " + filepath.Join(dir, "nope") + "}\n", key: "srs.secret_file"},
		{name: "SRS domain without secret file", extra: "srs: {domain: srs.example.org}\n", key: "srs.secret_file"},
		{name: "SRS domain not qualified", extra: "srs: {domain: srs, secret_file: " + srsSecrets + "}\n", key: "srs.domain"},
		{name: "ARC seal without a key", extra: "arc: {seal: true, domain: example.org}\n", key: "arc.seal"},
		{name: "ARC seal domain without a key", extra: dkim(edKey) + "arc: {seal: true, domain: other.example}\n", key: "arc.domain"},
		{name: "ARC seal with an Ed25519 key", extra: dkim(edKey) + "arc: {seal: true, domain: example.org}\n", key: "arc.seal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && os.Geteuid() == 0 {
				t.Skip("root reads every file")
			}
			path, data := testConfig(t, tc.extra)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			s := string(b)
			if tc.old != "" {
				old := strings.Replace(tc.old, "DATADIR", data, 1)
				if !strings.Contains(s, old) {
					t.Fatalf("base configuration lacks %q", old)
				}
				s = strings.Replace(s, old, tc.new, 1)
			}
			if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
				t.Fatal(err)
			}
			stderr, err := runCmd("check-config", path)
			if ee, ok := err.(exitError); !ok || ee.code != 1 {
				t.Fatalf("check-config: %v, want exit 1; stderr:\n%s", err, stderr)
			}
			if !strings.Contains(stderr, tc.key) {
				t.Errorf("check-config does not name %s:\n%s", tc.key, stderr)
			}
			// Serve refuses it with the same error lines before binding
			// (check-config refused it, so serve cannot get to serving).
			serveErr, err := runCmd("serve", "--config", path)
			if ee, ok := err.(exitError); !ok || ee.code != 1 {
				t.Fatalf("serve: %v, want exit 1; stderr:\n%s", err, serveErr)
			}
			if strings.TrimSpace(serveErr) != strings.TrimSpace(stderr) {
				t.Errorf("serve and check-config report differently:\nserve:\n%s\ncheck-config:\n%s", serveErr, stderr)
			}
		})
	}
}

// The base configuration of the table passes both checks.
func TestPreflightPassesGoodConfig(t *testing.T) {
	path, _ := testConfig(t, "")
	stderr, err := runCmd("check-config", path)
	if err != nil {
		t.Fatalf("check-config: %v\n%s", err, stderr)
	}
}
