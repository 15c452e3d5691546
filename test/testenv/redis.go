package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Redis is a throw-away redis-server on a loopback port, without
// persistence, that can be killed and started again on the same port.
type Redis struct {
	t    testing.TB
	Addr string // 127.0.0.1:port
	port string
	bin  string
	cli  string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartRedis starts redis-server (and needs redis-cli for the queries).
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	r := &Redis{
		t:    t,
		bin:  NeedBinary(t, "/usr/bin/redis-server"),
		cli:  NeedBinary(t, "/usr/bin/redis-cli"),
		dir:  t.TempDir(),
		port: strconv.Itoa(FreePort(t)),
	}
	r.Addr = "127.0.0.1:" + r.port
	t.Cleanup(r.Kill)
	r.Start()
	return r
}

// Start starts the server (again) on its port and waits for it.
func (r *Redis) Start() {
	r.t.Helper()
	logf, err := os.OpenFile(filepath.Join(r.dir, "redis.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		r.t.Fatal(err)
	}
	cmd := exec.Command(r.bin, "--port", r.port, "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", r.dir, "--protected-mode", "yes")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		r.t.Fatal(err)
	}
	r.cmd, r.done = cmd, make(chan struct{})
	done := r.done
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	if err := WaitPort(r.Addr, 15*time.Second); err != nil {
		b, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
		r.t.Fatalf("redis-server: %v\n%s", err, b)
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (r *Redis) Kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
	r.cmd = nil
}

// Cli runs redis-cli against the server and returns its trimmed output.
func (r *Redis) Cli(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, r.cli, append([]string{"-h", "127.0.0.1", "-p", r.port}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Keys returns the keys matching pattern (KEYS, fine for a test server).
func (r *Redis) Keys(pattern string) []string {
	out, err := r.Cli("--no-raw", "KEYS", pattern)
	if err != nil || out == "" || strings.HasPrefix(out, "(empty") {
		return nil
	}
	var keys []string
	for _, l := range strings.Split(out, "\n") {
		// --no-raw prints `1) "key"`.
		if _, k, ok := strings.Cut(l, ") "); ok {
			if s, err := strconv.Unquote(strings.TrimSpace(k)); err == nil {
				keys = append(keys, s)
			}
		}
	}
	return keys
}
