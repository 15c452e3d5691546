package deploy

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The shipped configurations start: the Docker image's (the example
// configuration and the image's environment) and each Kubernetes
// ConfigMap, run by the real binary with only the listen addresses moved
// to free loopback ports and the paths under /etc/moat and /var/lib/moat
// moved into a temporary directory. Each must answer /healthz and
// /metrics without a token, greet on SMTP, and `moat queue list` must
// work as it would through `kubectl exec` / `docker exec`.

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binOut  []byte
)

// moatBinary builds cmd/moat once per test run.
func moatBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and starts the binary")
	}
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "moat-deploy-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "moat")
		gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
		binOut, binErr = exec.Command(gobin, "build", "-o", binPath, "moat/cmd/moat").CombinedOutput()
	})
	if binErr != nil {
		t.Fatalf("go build: %v\n%s", binErr, binOut)
	}
	return binPath
}

// loopbackPort returns a loopback address that was free a moment ago.
func loopbackPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// dockerEnv returns the variables the Dockerfile's ENV instructions set.
func dockerEnv(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(l, "ENV ") {
			continue
		}
		l = strings.TrimPrefix(l, "ENV ")
		for strings.HasSuffix(l, "\\") && i+1 < len(lines) {
			i++
			l = strings.TrimSuffix(l, "\\") + " " + strings.TrimSpace(lines[i])
		}
		for _, kv := range strings.Fields(l) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("Dockerfile ENV %q is not KEY=VALUE", kv)
			}
			env[k] = v
		}
	}
	if len(env) == 0 {
		t.Fatal("Dockerfile sets no ENV")
	}
	return env
}

// selfSigned writes a certificate and key for mx.example.org.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mx.example.org"},
		DNSNames:     []string{"mx.example.org"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// listenPort matches a listener address that names only a port (":25").
var listenPort = regexp.MustCompile(`"(:\d+)"`)

// shipped is one configuration to start.
type shipped struct {
	config string            // the YAML, paths already moved
	env    map[string]string // MOAT_* variables
	admin  string            // the admin address the test gave it
	smtp   []string          // the SMTP addresses the test gave it
}

// movePorts gives every port-only listener address a free loopback port
// (in lines that are not comments).
func movePorts(t *testing.T, s *shipped) {
	lines := strings.Split(s.config, "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		lines[i] = listenPort.ReplaceAllStringFunc(l, func(string) string {
			a := loopbackPort(t)
			s.smtp = append(s.smtp, a)
			return `"` + a + `"`
		})
	}
	s.config = strings.Join(lines, "\n")
}

func TestDockerImageStarts(t *testing.T) {
	bin := moatBinary(t)
	dir := t.TempDir()
	b, err := os.ReadFile("moat.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := dockerEnv(t)
	if strings.HasPrefix(env["MOAT_ADMIN_ADDRESS"], "127.") {
		t.Fatalf("the image's admin address %q is loopback: nothing outside the container reaches it", env["MOAT_ADMIN_ADDRESS"])
	}
	// The image as shipped passes check-config (which runs serve's
	// checks); only the data directory is the test's.
	shippedEnv := map[string]string{}
	for k, v := range env {
		shippedEnv[k] = v
	}
	shippedEnv["MOAT_DATA_DIR"] = filepath.Join(dir, "data")
	checkConfig(t, bin, string(b), shippedEnv)
	s := &shipped{config: string(b), env: env}
	movePorts(t, s)
	s.admin = loopbackPort(t)
	s.env["MOAT_ADMIN_ADDRESS"] = s.admin
	s.env["MOAT_DATA_DIR"] = filepath.Join(dir, "data")
	startShipped(t, bin, dir, s)
}

func TestKubernetesConfigMapsStart(t *testing.T) {
	bin := moatBinary(t)
	for _, cmPath := range []string{"kubernetes/configmap.yaml", "kubernetes/fleet/configmap.yaml"} {
		t.Run(cmPath, func(t *testing.T) {
			dir := t.TempDir()
			var cm struct {
				Data map[string]string `yaml:"data"`
			}
			b, err := os.ReadFile(cmPath)
			if err != nil {
				t.Fatal(err)
			}
			if err := yaml.Unmarshal(b, &cm); err != nil {
				t.Fatal(err)
			}
			cfg, ok := cm.Data["moat.yaml"]
			if !ok {
				t.Fatal("no moat.yaml in the ConfigMap")
			}
			if !strings.Contains(cfg, "address: 0.0.0.0:8025") {
				t.Fatal("the ConfigMap's admin address is not 0.0.0.0:8025 (the probes and the scrape annotations use 8025)")
			}
			rulesDir := filepath.Join(dir, "rules")
			if err := os.MkdirAll(rulesDir, 0o700); err != nil {
				t.Fatal(err)
			}
			// The rule pack's ConfigMap beside it, mounted at /etc/moat/rules.
			var rules struct {
				Data map[string]string `yaml:"data"`
			}
			if b, err = os.ReadFile(filepath.Join(filepath.Dir(cmPath), "rules.yaml")); err != nil {
				t.Fatal(err)
			}
			if err := yaml.Unmarshal(b, &rules); err != nil {
				t.Fatal(err)
			}
			for k, v := range rules.Data {
				if err := os.WriteFile(filepath.Join(rulesDir, k), []byte(v), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cert, key := selfSigned(t, dir)
			pw := filepath.Join(dir, "redis-password")
			if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			s := &shipped{env: map[string]string{}}
			s.config = strings.NewReplacer(
				"/etc/moat/rules/", rulesDir+"/",
				"/etc/moat/tls/tls.crt", cert,
				"/etc/moat/tls/tls.key", key,
				"/etc/moat/redis/password", pw,
				"/var/lib/moat", filepath.Join(dir, "data"),
			).Replace(cfg)
			if regexp.MustCompile(`(?m)^[^#]*/etc/moat`).MatchString(s.config) {
				t.Fatalf("a path under /etc/moat the test does not provide:\n%s", s.config)
			}
			// As shipped (admin on 0.0.0.0:8025) it passes check-config,
			// which runs serve's checks.
			checkConfig(t, bin, s.config, nil)
			movePorts(t, s)
			s.admin = loopbackPort(t)
			s.config = strings.Replace(s.config, "address: 0.0.0.0:8025", "address: "+s.admin, 1)
			startShipped(t, bin, dir, s)
		})
	}
}

// environ is the test's environment without MOAT_ variables, plus env.
func environ(env map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MOAT_") {
			out = append(out, kv)
		}
	}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// checkConfig runs `moat check-config` on the configuration as shipped.
func checkConfig(t *testing.T, bin, config string, env map[string]string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "moat.yaml")
	if err := os.WriteFile(p, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "check-config", p)
	cmd.Env = environ(env)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("check-config of the shipped configuration: %v\n%s", err, out)
	}
}

// startShipped runs `moat serve` on s and checks that it serves.
func startShipped(t *testing.T, bin, dir string, s *shipped) {
	t.Helper()
	if len(s.smtp) == 0 {
		t.Fatal("no SMTP listener found to move to loopback")
	}
	path := filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(path, []byte(s.config), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "moat.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "serve", "--config", path)
	cmd.Env = environ(s.env)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("moat's log:\n%s", b)
		}
	}()

	base := "http://" + s.admin
	hc := &http.Client{Timeout: 10 * time.Second}
	// Wait (bounded) for /healthz; a moat that exits fails at once.
	up := false
	for i := 0; i < 600 && !up; i++ {
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("moat serve exited: %v", err)
		default:
		}
		if resp, err := hc.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			up = resp.StatusCode == 200
		}
		if !up {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !up {
		t.Fatal("/healthz never answered 200")
	}
	resp, err := hc.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/metrics without a token: %d, want 200 (Prometheus scrapes it so)", resp.StatusCode)
	}
	for _, a := range s.smtp {
		greets(t, a)
	}
	// `kubectl exec … moat queue list` / `docker exec … moat queue list`.
	q := exec.Command(bin, "queue", "list", "--config", path)
	q.Env = environ(s.env)
	if out, err := q.CombinedOutput(); err != nil {
		t.Errorf("moat queue list: %v\n%s", err, out)
	} else if strings.Contains(string(out), "directly") {
		t.Errorf("moat queue list fell back to the spool:\n%s", out)
	}
}

// greets reads the SMTP banner (after any greet_delay) at addr.
func greets(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Errorf("SMTP %s: %v", addr, err)
		return
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "220 ") {
		t.Errorf("SMTP %s banner %q, %v", addr, line, err)
	}
}

// The build context (the repository root) leaves out the data directory
// (spooled mail) and the git history.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	for _, want := range []string{"**/moat-data", ".git"} {
		if !lines[want] {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
}
