package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"moat/policy/dkimsign"
)

func runDKIM(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runCombined(dkimCommand(), "", args...)
}

// zoneRecord finds the zone-file line and joins its strings (RFC 6376
// §3.6.2.2), checking each is at most 255 octets.
func zoneRecord(t *testing.T, out, name string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, name+" IN TXT ") {
			continue
		}
		var b strings.Builder
		for _, m := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(l, -1) {
			if len(m[1]) > 255 {
				t.Fatalf("string of %d octets in %q", len(m[1]), l)
			}
			b.WriteString(m[1])
		}
		return b.String()
	}
	t.Fatalf("no %s record in:\n%s", name, out)
	return ""
}

func TestDKIMKeygen(t *testing.T) {
	for _, algo := range []string{"rsa-2048", "ed25519"} {
		t.Run(algo, func(t *testing.T) {
			keyFile := filepath.Join(t.TempDir(), "k.pem")
			out, err := runDKIM(t, "keygen", "--domain", "Example.ORG.", "--selector", "s2026", "--algorithm", algo, "--out", keyFile)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			fi, err := os.Stat(keyFile)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("key file: %v %v", fi, err)
			}
			pemBytes, _ := os.ReadFile(keyFile)
			signer, err := dkimsign.ParsePrivateKey(pemBytes)
			if err != nil {
				t.Fatal(err)
			}
			txt := zoneRecord(t, out, "s2026._domainkey.example.org.")
			if !strings.Contains(out, "\n"+txt+"\n") {
				t.Errorf("the unsplit value is not printed for web forms")
			}
			tags := map[string]string{}
			for _, kv := range strings.Split(txt, ";") {
				k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
				tags[k] = v
			}
			p, err := base64.StdEncoding.DecodeString(tags["p"])
			if err != nil || tags["v"] != "DKIM1" {
				t.Fatalf("record %q: %v", txt, err)
			}
			switch pub := signer.Public().(type) {
			case *rsa.PublicKey:
				got, err := x509.ParsePKIXPublicKey(p)
				if err != nil || !pub.Equal(got) || tags["k"] != "rsa" {
					t.Fatalf("p= is not the public key (%v)", err)
				}
			case ed25519.PublicKey:
				if !bytes.Equal(pub, p) || tags["k"] != "ed25519" {
					t.Fatal("p= is not the public key")
				}
			default:
				t.Fatalf("key type %T", pub)
			}
			// The printed configuration loads the key.
			for _, want := range []string{"dkim:", "sign:", "domain: example.org", "selector: s2026", "key_file: " + keyFile} {
				if !strings.Contains(out, want) {
					t.Errorf("config snippet lacks %q:\n%s", want, out)
				}
			}
			if _, err := dkimsign.NewSigner([]dkimsign.Key{{Domain: "example.org", Selector: "s2026", KeyFile: keyFile}}); err != nil {
				t.Fatal(err)
			}

			// No overwrite without --force; with it, a new key.
			if _, err := runDKIM(t, "keygen", "--domain", "example.org", "--selector", "s2026", "--algorithm", algo, "--out", keyFile); err == nil ||
				!strings.Contains(err.Error(), "--force") {
				t.Fatalf("overwrite without --force: %v", err)
			}
			if after, _ := os.ReadFile(keyFile); !bytes.Equal(after, pemBytes) {
				t.Fatal("key changed without --force")
			}
			if out, err := runDKIM(t, "keygen", "--domain", "example.org", "--selector", "s2026", "--algorithm", algo, "--out", keyFile, "--force"); err != nil {
				t.Fatalf("--force: %v\n%s", err, out)
			}
			after, _ := os.ReadFile(keyFile)
			fi, _ = os.Stat(keyFile)
			if bytes.Equal(after, pemBytes) || fi.Mode().Perm() != 0o600 {
				t.Fatal("--force did not write a new 0600 key")
			}
			if m, _ := filepath.Glob(filepath.Join(filepath.Dir(keyFile), ".*tmp*")); len(m) != 0 {
				t.Fatalf("temporary files left: %v", m)
			}
		})
	}
}

func TestDKIMKeygenDefaultOut(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if out, err := runDKIM(t, "keygen", "--domain", "example.org", "--selector", "ed", "--algorithm", "ed25519"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "example.org.ed.key")); err != nil {
		t.Fatal(err)
	}
}

func TestDKIMKeygenErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"keygen", "--selector", "s"}, "--domain: required"},
		{[]string{"keygen", "--domain", "example.org"}, "--selector: required"},
		{[]string{"keygen", "--domain", "bad domain", "--selector", "s"}, "--domain:"},
		{[]string{"keygen", "--domain", "example.org", "--selector", "a/b"}, "--selector:"},
		{[]string{"keygen", "--domain", "example.org", "--selector", "s", "--algorithm", "rsa-1024"}, "--algorithm"},
		{[]string{"keygen", "--domain", "example.org", "--selector", "s", "--algorithm", "ed25519", "--out", filepath.Join(dir, "no", "such", "dir")}, "no such file"},
	}
	for _, tc := range tests {
		if _, err := runDKIM(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestZoneStrings(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want int // strings
	}{{0, 1}, {255, 1}, {256, 2}, {510, 2}, {511, 3}} {
		got := zoneStrings(strings.Repeat("a", tc.n))
		if c := strings.Count(got, `"`) / 2; c != tc.want {
			t.Errorf("%d octets: %d strings, want %d: %s", tc.n, c, tc.want, got)
		}
	}
}

// TestDKIMKeygenOwnership: run as root, a new key takes its directory's
// owner (moat's data directory), a replaced one keeps the old key's.
func TestDKIMKeygenOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files away")
	}
	dir := t.TempDir()
	if err := os.Chown(dir, 4242, 4343); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "k.pem")
	check := func(uid, gid uint32) {
		t.Helper()
		fi, err := os.Stat(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid || fi.Mode().Perm() != 0o600 {
			t.Errorf("key %d:%d %v, want %d:%d 0600", st.Uid, st.Gid, fi.Mode().Perm(), uid, gid)
		}
	}
	if out, err := runDKIM(t, "keygen", "--domain", "example.org", "--selector", "s1", "--algorithm", "ed25519", "--out", keyFile); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	check(4242, 4343)
	os.Chown(keyFile, 5000, 5001)
	if out, err := runDKIM(t, "keygen", "--domain", "example.org", "--selector", "s1", "--algorithm", "ed25519", "--out", keyFile, "--force"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	check(5000, 5001)
}
