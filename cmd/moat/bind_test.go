package main

import (
	"net"
	"os"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"moat/gateway"
)

// A taken admin port stops the start before anything is served: no
// "listening" line, the SMTP port is released again, and the error names
// the key and its environment variable.
func TestStartBindsEveryListenerFirst(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	smtpAddr := freePort(t)
	path, _ := testConfig(t, "")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), `admin: {address: "127.0.0.1:0"}`, `admin: {address: "`+taken.Addr().String()+`"}`, 1)
	s = strings.Replace(s, `{name: mx, address: "127.0.0.1:0"`, `{name: mx, address: "`+smtpAddr+`"`, 1)
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	a, err := newApp(cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	err = a.start()
	a.close()
	if err == nil {
		t.Fatal("start succeeded with the admin port taken")
	}
	for _, want := range []string{"admin.address", "MOAT_ADMIN_ADDRESS", taken.Addr().String()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if n := logs.FilterMessage("listening").Len(); n != 0 {
		t.Errorf("%d listening lines logged before the start failed", n)
	}
	ln, err := net.Listen("tcp", smtpAddr)
	if err != nil {
		t.Fatalf("SMTP port not released after the failed start: %v", err)
	}
	ln.Close()
}

// A taken SMTP port names the listener.
func TestStartNamesTakenListener(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := &Config{Listeners: []gateway.Listener{{Name: "mx", Address: taken.Addr().String()}}}
	_, err = bindAll(cfg, false)
	if err == nil || !strings.Contains(err.Error(), "listeners[0] (mx)") {
		t.Fatalf("bindAll = %v, want an error naming listeners[0] (mx)", err)
	}
}
