package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"moat/mailbox"
	"moat/policy/scanner"
)

func configFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "moat.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestUnknownKeysPositions: every misspelled key is named with its line,
// column and the key it was probably meant to be, at any depth (a
// section, a list of sections, a map of sections).
func TestUnknownKeysPositions(t *testing.T) {
	body := "smpt:\n  max_recipients: 5\n" + // 1
		"smtp:\n  max_recipents: 5\n" + // 3, 4
		"listeners:\n  - {name: mx, adress: \"127.0.0.1:2525\", mode: mx}\n" + // 5, 6
		"routes:\n  backend: {type: smtp, address: \"10.0.0.5:25\", verify_recipient: list}\n" + // 7, 8
		"Guard:\n  Per_IP: {rate_per_minute: 1}\n" + // 9, 10: keys are read without case
		"zzzzzzzz: 1\n" // 11: nothing close
	p := configFile(t, body)
	_, err := decodeConfig(p)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		p + `:1:1: smpt: unknown key (did you mean "smtp"?)`,
		p + `:4:3: smtp.max_recipents: unknown key (did you mean "max_recipients"?)`,
		p + `:6:16: listeners[0].adress: unknown key (did you mean "address"?)`,
		p + `:8:49: routes.backend.verify_recipient: unknown key (did you mean "verify_recipients"?)`,
		p + `:11:1: zzzzzzzz: unknown key`,
	} {
		if !strings.Contains(err.Error(), want+"\n") && !strings.HasSuffix(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "Guard") || strings.Contains(err.Error(), "Per_IP") || strings.Contains(err.Error(), "zzzzzzzz: unknown key (did") {
		t.Errorf("unexpected:\n%v", err)
	}
	// check-config says the same.
	if out, err := runCmd("check-config", p); err == nil || !strings.Contains(out, `:1:1: smpt: unknown key`) {
		t.Errorf("check-config: %v\n%s", err, out)
	}
}

// TestDecodeErrorsPositions: a value of the wrong type is named with the
// position of its key.
func TestDecodeErrorsPositions(t *testing.T) {
	p := configFile(t, "smtp:\n  max_message_size: big\nlisteners:\n  - {name: mx, address: \"127.0.0.1:2525\", mode: mx, require_tls: maybe}\n")
	_, err := decodeConfig(p)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{p + ":2:3: 'smtp.max_message_size'", p + ":4:53: 'listeners[0].require_tls'"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

// TestEnvWarnings: a MOAT_* variable that names no key is warned about,
// with the nearest name; real keys and moat's own tool variables are not.
func TestEnvWarnings(t *testing.T) {
	t.Setenv("MOAT_LOG_LEVLE", "debug")
	t.Setenv("MOAT_SMTP_MAX_RECIPIENTS", "7")
	t.Setenv("MOAT_NOTHING_LIKE_IT", "x")
	t.Setenv("MOAT_BIN", "/usr/bin/moat")
	cfg, err := decodeConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SMTP.MaxRecipients != 7 {
		t.Errorf("MOAT_SMTP_MAX_RECIPIENTS not applied: %d", cfg.SMTP.MaxRecipients)
	}
	want := []string{
		"environment variable MOAT_LOG_LEVLE names no configuration key and is ignored (did you mean MOAT_LOG_LEVEL?)",
		"environment variable MOAT_NOTHING_LIKE_IT names no configuration key and is ignored",
	}
	var got []string
	for _, w := range cfg.Warnings() {
		if strings.HasPrefix(w, "environment variable") {
			got = append(got, w)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("warnings:\n%q\nwant\n%q", got, want)
	}
	// check-config prints them.
	p := configFile(t, "data_dir: "+t.TempDir()+"\n")
	if out, _ := runCmd("check-config", p); !strings.Contains(out, "warning: environment variable MOAT_LOG_LEVLE") {
		t.Errorf("check-config:\n%s", out)
	}
}

// TestConfigShow: without --defaults the keys the file and the
// environment set, with their effective values; secrets masked.
func TestConfigShow(t *testing.T) {
	t.Setenv("MOAT_LOG_LEVEL", "debug")
	p := configFile(t, "hostname: mx.example.org\nsmtp:\n  max_recipients: 50\n"+
		"mailboxes:\n  users:\n    alice@example.org: {password_hash: \"$2a$10$abcdefghijklmnopqrstuv\"}\n"+
		"scanners:\n  - {name: rspamd, type: rspamd, address: \"127.0.0.1:11333\", password: hunter2}\n")
	var out strings.Builder
	root := rootCommand()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"config", "show", "--config", p})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"hostname: mx.example.org\n", "log:\n  level: debug\n", "smtp:\n  max_recipients: 50\n",
		"password_hash: '" + masked + "'", "password: '" + masked + "'", "timeout: 10s"} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q in:\n%s", want, s)
		}
	}
	for _, not := range []string{"hunter2", "abcdefghij", "max_message_size", "data_dir", "format:"} {
		if strings.Contains(s, not) {
			t.Errorf("%q shown:\n%s", not, s)
		}
	}
}

// TestConfigShowDefaultsRoundTrip: the full listing is a configuration
// file that loads to the same settings.
func TestConfigShowDefaultsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p := configFile(t, "hostname: mx.example.org\ndata_dir: "+dir+"\n"+
		"listeners:\n  - {name: mx, address: \"127.0.0.1:2525\", mode: mx, greet_delay: 1500ms}\n"+
		"  - {name: sub, address: \"127.0.0.1:2587\", mode: submission}\n"+
		"domains:\n  local: [example.org]\n  relay: {corp.example: backend}\n"+
		"routes:\n  backend: {type: smtp, address: \"10.0.0.5:25\", verify_recipients: callahead}\n"+
		"mailboxes:\n  users:\n    alice@example.org: {quota: 1G}\n  aliases:\n    team@example.org: [alice@example.org]\n"+
		"queue:\n  max_age: 72h\n")
	want, err := decodeConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	full, err := showConfig(want, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeConfig(configFile(t, string(full)))
	if err != nil {
		t.Fatalf("the full listing does not load: %v\n%s", err, full)
	}
	want.envWarnings, got.envWarnings = nil, nil
	gv, wv := reflect.ValueOf(*got), reflect.ValueOf(*want)
	for i := 0; i < gv.NumField(); i++ {
		if gv.Type().Field(i).IsExported() && !sameValue(gv.Field(i), wv.Field(i)) {
			t.Errorf("round trip: %s differs:\n got %#v\nwant %#v", gv.Type().Field(i).Name, gv.Field(i).Interface(), wv.Field(i).Interface())
		}
	}
	if !strings.Contains(string(full), "greet_delay: 1.5s") || !strings.Contains(string(full), "max_age: 72h\n") {
		t.Errorf("durations:\n%s", full)
	}
}

// TestSecretTags: the fields that hold secrets are tagged, so config show
// masks them.
func TestSecretTags(t *testing.T) {
	for _, c := range []struct {
		t     reflect.Type
		field string
	}{{reflect.TypeOf(scanner.Config{}), "Password"}, {reflect.TypeOf(mailbox.UserConfig{}), "PasswordHash"}} {
		f, _ := c.t.FieldByName(c.field)
		if f.Tag.Get("secret") != "true" {
			t.Errorf("%s.%s is not tagged secret", c.t, c.field)
		}
	}
}

// sameValue is reflect.DeepEqual but for an empty list or map, which
// equals a nil one (YAML cannot tell them apart, nor can moat).
func sameValue(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Slice, reflect.Map:
		if a.Len() == 0 && b.Len() == 0 {
			return true
		}
		if a.Len() != b.Len() {
			return false
		}
		if a.Kind() == reflect.Map {
			for _, k := range a.MapKeys() {
				if bv := b.MapIndex(k); !bv.IsValid() || !sameValue(a.MapIndex(k), bv) {
					return false
				}
			}
			return true
		}
		for i := 0; i < a.Len(); i++ {
			if !sameValue(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Struct:
		for i := 0; i < a.NumField(); i++ {
			if a.Type().Field(i).IsExported() && !sameValue(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return sameValue(a.Elem(), b.Elem())
	case reflect.Func:
		return a.IsNil() == b.IsNil()
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// TestEnvMapEntryNeverApplied: a variable for an entry of a map the file
// defines (routes.backend.address) is not a key of its own: it is warned
// about and never applied. viper's AutomaticEnv applied it only some of
// the time, depending on map order; twenty decodes must agree.
func TestEnvMapEntryNeverApplied(t *testing.T) {
	t.Setenv("MOAT_ROUTES_BACKEND_ADDRESS", "10.9.9.9:25")
	t.Setenv("MOAT_DNS_TIMEOUT", "3s") // a key of the defaults: applied
	p := configFile(t, "routes:\n  backend: {type: smtp, address: \"10.0.0.5:25\"}\n"+
		"domains:\n  relay: {corp.example: backend}\n")
	for i := 0; i < 20; i++ {
		cfg, err := decodeConfig(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Routes["backend"].Address; got != "10.0.0.5:25" {
			t.Fatalf("decode %d: routes.backend.address = %q, the file says 10.0.0.5:25", i, got)
		}
		if cfg.DNS.Timeout != 3*time.Second {
			t.Fatalf("decode %d: MOAT_DNS_TIMEOUT not applied: %v", i, cfg.DNS.Timeout)
		}
		warned := false
		for _, w := range cfg.Warnings() {
			warned = warned || strings.Contains(w, "MOAT_ROUTES_BACKEND_ADDRESS names no configuration key")
		}
		if !warned {
			t.Fatalf("decode %d: no warning about MOAT_ROUTES_BACKEND_ADDRESS: %q", i, cfg.Warnings())
		}
	}
}
