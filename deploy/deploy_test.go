package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"moat/internal/maillog"
)

// files returns the deployment files with one of the suffixes, outside
// deploy/rules (tested by package rules).
func files(t *testing.T, suffixes ...string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (p == "rules" || p == "testdata") {
			return filepath.SkipDir
		}
		for _, s := range suffixes {
			if !d.IsDir() && strings.HasSuffix(p, s) {
				out = append(out, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs []map[string]any
	dec := yaml.NewDecoder(f)
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, len(docs)+1, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// get walks a decoded YAML/JSON value by map keys and list indexes.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string {
	s, _ := get(v, path...).(string)
	return s
}

func TestFilesParse(t *testing.T) {
	ys := files(t, ".yaml", ".yml", ".yaml.example")
	js := files(t, ".json")
	if len(ys) < 10 || len(js) < 1 {
		t.Fatalf("found %d YAML and %d JSON files", len(ys), len(js))
	}
	for _, p := range ys {
		if len(yamlDocs(t, p)) == 0 {
			t.Errorf("%s: no document", p)
		}
	}
	for _, p := range js {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// moatConfig is the part of a moat configuration these tests read.
type moatConfig struct {
	DataDir string `yaml:"data_dir"`
	SMTP    struct {
		ShutdownTimeout string `yaml:"shutdown_timeout"`
	} `yaml:"smtp"`
	Admin struct {
		Address string `yaml:"address"`
	} `yaml:"admin"`
	Rules struct {
		Paths []string `yaml:"paths"`
	} `yaml:"rules"`
	Cluster struct {
		Redis map[string]any `yaml:"redis"`
	} `yaml:"cluster"`
}

func shutdownTimeout(t *testing.T, c moatConfig) time.Duration {
	t.Helper()
	if c.SMTP.ShutdownTimeout == "" {
		return 30 * time.Second // gateway.DefaultSMTP
	}
	d, err := time.ParseDuration(c.SMTP.ShutdownTimeout)
	if err != nil {
		t.Fatalf("smtp.shutdown_timeout: %v", err)
	}
	return d
}

func TestKubernetes(t *testing.T) {
	for _, dir := range []string{"kubernetes", "kubernetes/fleet"} {
		t.Run(dir, func(t *testing.T) { checkKubernetes(t, dir) })
	}
}

func checkKubernetes(t *testing.T, dir string) {
	paths, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	byKind := map[string][]map[string]any{}
	for _, p := range paths {
		for _, d := range yamlDocs(t, p) {
			kind, api := str(d, "kind"), str(d, "apiVersion")
			if kind == "" || api == "" {
				t.Errorf("%s: a document without apiVersion or kind", p)
				continue
			}
			if kind != "Kustomization" && str(d, "metadata", "name") == "" {
				t.Errorf("%s: %s without metadata.name", p, kind)
			}
			byKind[kind] = append(byKind[kind], d)
		}
	}
	one := func(kind string) map[string]any {
		t.Helper()
		if len(byKind[kind]) == 0 {
			t.Fatalf("no %s", kind)
		}
		return byKind[kind][0]
	}
	// The kustomization lists every file of the folder.
	var listed []string
	for _, r := range get(one("Kustomization"), "resources").([]any) {
		listed = append(listed, r.(string))
	}
	for _, p := range paths {
		if b := filepath.Base(p); b != "kustomization.yaml" && !slices.Contains(listed, b) {
			t.Errorf("%s is not in kustomization.yaml", p)
		}
	}
	for _, r := range listed {
		if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
			t.Errorf("kustomization: %v", err)
		}
	}

	// The configuration in the ConfigMap.
	cm := one("ConfigMap")
	var cfg moatConfig
	if err := yaml.Unmarshal([]byte(str(cm, "data", "moat.yaml")), &cfg); err != nil {
		t.Fatalf("ConfigMap moat.yaml: %v", err)
	}
	_, adminPort, err := net.SplitHostPort(cfg.Admin.Address)
	if err != nil || strings.HasPrefix(cfg.Admin.Address, "127.") {
		t.Errorf("admin.address %q: probes need it on the pod IP", cfg.Admin.Address)
	}
	for key := range get(cm, "data").(map[string]any) {
		if key != "moat.yaml" {
			if len(yamlDocs(t, writeTemp(t, str(cm, "data", key)))) == 0 {
				t.Errorf("ConfigMap %s: empty rule file", key)
			}
		}
	}

	ss := one("StatefulSet")
	spec := get(ss, "spec", "template", "spec")
	grace, _ := get(spec, "terminationGracePeriodSeconds").(int)
	if time.Duration(grace)*time.Second <= shutdownTimeout(t, cfg) {
		t.Errorf("terminationGracePeriodSeconds %d is not above smtp.shutdown_timeout %s", grace, cfg.SMTP.ShutdownTimeout)
	}
	if get(spec, "securityContext", "runAsNonRoot") != true {
		t.Error("pod securityContext.runAsNonRoot is not true")
	}
	c := get(spec, "containers", 0)
	sc := get(c, "securityContext")
	if get(sc, "readOnlyRootFilesystem") != true || get(sc, "allowPrivilegeEscalation") != false || get(sc, "runAsNonRoot") != true {
		t.Errorf("container securityContext %v", sc)
	}
	if !equalList(get(sc, "capabilities", "drop"), "ALL") || !equalList(get(sc, "capabilities", "add"), "NET_BIND_SERVICE") {
		t.Errorf("capabilities %v: want drop ALL, add NET_BIND_SERVICE", get(sc, "capabilities"))
	}
	ports := map[string]int{}
	for _, p := range get(c, "ports").([]any) {
		ports[str(p, "name")], _ = get(p, "containerPort").(int)
	}
	if strconv.Itoa(ports["admin"]) != adminPort || ports["smtp"] != 25 {
		t.Errorf("container ports %v, admin.address %s", ports, cfg.Admin.Address)
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if str(c, probe, "httpGet", "path") != path || str(c, probe, "httpGet", "port") != "admin" {
			t.Errorf("%s: %v", probe, get(c, probe))
		}
	}
	// data_dir is on the claim from volumeClaimTemplates.
	claim := str(ss, "spec", "volumeClaimTemplates", 0, "metadata", "name")
	mounted := false
	for _, m := range get(c, "volumeMounts").([]any) {
		if str(m, "name") == claim && str(m, "mountPath") == cfg.DataDir {
			mounted = true
		}
		if rp := cfg.Rules.Paths; len(rp) > 0 && strings.HasPrefix(rp[0], str(m, "mountPath")+"/") && str(m, "name") == "rules" {
			mounted = mounted && true
		}
	}
	if claim == "" || !mounted {
		t.Errorf("data_dir %s is not on a volumeClaimTemplates claim", cfg.DataDir)
	}

	var lb map[string]any
	for _, s := range byKind["Service"] {
		if str(s, "spec", "type") == "LoadBalancer" {
			lb = s
		}
	}
	if lb == nil || str(lb, "spec", "externalTrafficPolicy") != "Local" || get(lb, "spec", "ports", 0, "port") != 25 {
		t.Errorf("no LoadBalancer Service on port 25 with externalTrafficPolicy Local: %v", lb)
	}
	if get(one("PodDisruptionBudget"), "spec", "selector") == nil {
		t.Error("PodDisruptionBudget without selector")
	}

	if strings.HasSuffix(dir, "fleet") {
		if r, _ := get(ss, "spec", "replicas").(int); r < 2 {
			t.Errorf("fleet replicas %d", r)
		}
		for _, k := range []string{"address", "password_file", "tls", "key_prefix"} {
			if _, ok := cfg.Cluster.Redis[k]; !ok {
				t.Errorf("ConfigMap: cluster.redis.%s missing", k)
			}
		}
		host, _, _ := net.SplitHostPort(str(cfg.Cluster.Redis, "address"))
		found := false
		for _, s := range byKind["Service"] {
			found = found || str(s, "metadata", "name") == host
		}
		if !found || len(byKind["Deployment"]) == 0 {
			t.Errorf("no Redis Deployment and Service named %q", host)
		}
	}
}

func equalList(v any, want ...string) bool {
	l, _ := v.([]any)
	if len(l) != len(want) {
		return false
	}
	for i := range l {
		if l[i] != want[i] {
			return false
		}
	}
	return true
}

func writeTemp(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var metricRE = regexp.MustCompile(`\bmoat_[a-z0-9_]+`)

// Every metric name in the dashboard and the alerts is in METRICS.txt.
func TestMetricNames(t *testing.T) {
	b, err := os.ReadFile("METRICS.txt")
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, l := range strings.Fields(string(b)) {
		if !metricRE.MatchString(l) || known[l] {
			t.Errorf("METRICS.txt: %q is not a new metric name", l)
		}
		known[l] = true
	}
	used := 0
	for _, p := range []string{"grafana/moat-dashboard.json", "prometheus/alerts.yaml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range metricRE.FindAllString(string(b), -1) {
			used++
			base := name
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				if trimmed, ok := strings.CutSuffix(name, s); ok && known[trimmed] {
					base = trimmed
				}
			}
			if !known[base] {
				t.Errorf("%s: %s is not in METRICS.txt", p, name)
			}
		}
	}
	if used < 20 {
		t.Errorf("only %d metric references found", used)
	}
}

func TestAlertRules(t *testing.T) {
	doc := yamlDocs(t, "prometheus/alerts.yaml")[0]
	n := 0
	for _, g := range get(doc, "groups").([]any) {
		for _, r := range get(g, "rules").([]any) {
			n++
			name, expr := str(r, "alert"), str(r, "expr")
			if name == "" || expr == "" || str(r, "labels", "severity") == "" || str(r, "annotations", "summary") == "" {
				t.Errorf("alert %q: needs alert, expr, labels.severity, annotations.summary", name)
			}
			if strings.Count(expr, "(") != strings.Count(expr, ")") || strings.Count(expr, "{") != strings.Count(expr, "}") {
				t.Errorf("alert %s: unbalanced expression", name)
			}
			if f := str(r, "for"); f != "" {
				if _, err := time.ParseDuration(f); err != nil {
					t.Errorf("alert %s: for: %v", name, err)
				}
			}
		}
	}
	for _, want := range []string{"moat_queue_oldest_age_seconds", `state="deferred"`, "moat_connections_rejected_total", "moat_dns_lookups_total",
		// issue 24 items 9 and 10
		`up{job="moat"} == 0`, "moat_tls_certificate_not_after_seconds", "moat_spool_filesystem_avail_bytes", "moat_refusals_total{stage=~\"mail|rcpt|data\""} {
		b, _ := os.ReadFile("prometheus/alerts.yaml")
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("no alert uses %s", want)
		}
	}
	if n < 4 {
		t.Errorf("%d alerts", n)
	}
}

func TestDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana/moat-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] || p.Title == "" {
			t.Errorf("panel %d %q: duplicate id or no title", p.ID, p.Title)
		}
		ids[p.ID] = true
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if strings.Count(q.Expr, "(") != strings.Count(q.Expr, ")") {
				t.Errorf("panel %q: unbalanced %s", p.Title, q.Expr)
			}
		}
	}
	// issue 24 item 9: the rejected share and a panel see RCPT refusals.
	var refusals int
	for _, p := range d.Panels {
		for _, q := range p.Targets {
			if strings.Contains(q.Expr, "moat_refusals_total") {
				refusals++
			}
		}
	}
	if refusals < 2 {
		t.Errorf("%d panels query moat_refusals_total, want the rejected share and a refusals panel", refusals)
	}
	if d.UID == "" || len(d.Panels) < 10 {
		t.Errorf("uid %q, %d panels", d.UID, len(d.Panels))
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms []string
	var user, final []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, l)
			user, final = nil, nil
		case "USER":
			user = f[1:]
		}
		final = append(final, l)
	}
	if len(froms) < 2 || !strings.Contains(froms[0], "golang:1.26") || !strings.Contains(froms[0], " AS ") {
		t.Errorf("builder stage: %v", froms)
	}
	last := froms[len(froms)-1]
	if !strings.Contains(last, "distroless/static") && !strings.Contains(last, "scratch") {
		t.Errorf("final stage %q is not distroless/static or scratch", last)
	}
	if len(user) != 1 || strings.HasPrefix(user[0], "root") || strings.HasPrefix(user[0], "0") {
		t.Errorf("final stage USER %v: want a non-root user", user)
	}
	text := strings.Join(final, "\n")
	for _, want := range []string{"EXPOSE 25 587 465 8025", "VOLUME /var/lib/moat", "ENTRYPOINT"} {
		if !strings.Contains(text, want) {
			t.Errorf("final stage lacks %q", want)
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "HEALTHCHECK"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}

// iniSection reads one [section] of a fail2ban .conf file: key = value,
// continuation lines indented, '#' and ';' comments.
func iniSection(t *testing.T, path, section string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	in, key := false, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		trim := strings.TrimSpace(l)
		switch {
		case trim == "" || trim[0] == '#' || trim[0] == ';':
			key = ""
		case strings.HasPrefix(trim, "["):
			in, key = trim == "["+section+"]", ""
		case !in:
		case l[0] == ' ' || l[0] == '\t':
			if key != "" {
				out[key] += "\n" + trim
			}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				t.Fatalf("%s: %q", path, l)
			}
			key = strings.TrimSpace(k)
			out[key] = strings.TrimSpace(v)
		}
	}
	return out
}

var (
	tagRE    = regexp.MustCompile(`<([A-Za-z_][A-Za-z0-9_-]*)>`)
	interpRE = regexp.MustCompile(`%\(([A-Za-z_][A-Za-z0-9_-]*)\)s`)
	// Roughly fail2ban's <HOST>: an IPv4 or IPv6 address (or a name).
	hostGroup = `(?:::f{4,6}:)?(?P<host>[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]+|[\w.-]*\w)`
)

// failRegexes expands the filter the way fail2ban does: %(name)s
// interpolation, <name> substitution of definition values (innermost
// first, so <mdre-<mode>> works) with the filter options, %% → %, and
// <HOST> to a capturing group.
func failRegexes(t *testing.T, def map[string]string, opts map[string]string, key string) []*regexp.Regexp {
	t.Helper()
	vals := map[string]string{}
	for k, v := range def {
		vals[k] = v
	}
	for k, v := range opts {
		vals[k] = v
	}
	s := vals[key]
	for range 20 {
		next := interpRE.ReplaceAllStringFunc(s, func(m string) string { return vals[interpRE.FindStringSubmatch(m)[1]] })
		next = tagRE.ReplaceAllStringFunc(next, func(m string) string {
			if v, ok := vals[tagRE.FindStringSubmatch(m)[1]]; ok {
				return v
			}
			return m
		})
		if next == s {
			break
		}
		s = next
	}
	var out []*regexp.Regexp
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		l = strings.ReplaceAll(l, "%%", "%")
		for _, m := range tagRE.FindAllStringSubmatch(l, -1) {
			if m[1] != "HOST" && m[1] != "ADDR" {
				t.Fatalf("%s: unresolved tag %s in %q", key, m[0], l)
			}
		}
		l = strings.ReplaceAll(l, "<HOST>", hostGroup)
		l = strings.ReplaceAll(l, "<ADDR>", hostGroup)
		out = append(out, regexp.MustCompile(l))
	}
	return out
}

type sample struct {
	e    maillog.Event
	ban  string // the client banned in mode normal, "" for none
	auth bool   // also banned in mode auth
}

func samples() []sample {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	forged := "x@example.com client=6.6.6.6 \n2026-05-01T12:00:00.000Z moat: event=rejected client=6.6.6.6 "
	return []sample{
		{maillog.Event{Time: at(0), Kind: maillog.Rejected, Client: "192.0.2.7", ConnID: "c1", Reply: "535 5.7.8 Authentication credentials invalid"}, "192.0.2.7", true},
		{maillog.Event{Time: at(1), Kind: maillog.Rejected, Client: "2001:db8::7", ConnID: "c2", Reply: "535 5.7.8 Authentication credentials invalid", HELO: "x"}, "2001:db8::7", true},
		{maillog.Event{Time: at(2), Kind: maillog.Rejected, Client: "198.51.100.3", ConnID: "c3", Reply: "421 4.7.0 Too many connections from your address", Rule: "guard"}, "198.51.100.3", false},
		{maillog.Event{Time: at(3), Kind: maillog.Rejected, Client: "198.51.100.4", ConnID: "c4", QueueID: "", Reply: "554 5.7.1 Relay access denied", Sender: forged, Recipients: []string{forged}, HELO: forged}, "198.51.100.4", false},
		{maillog.Event{Time: at(4), Kind: maillog.Rejected, Client: "203.0.113.5", ConnID: "c5", QueueID: "q5", Reply: "550 5.7.1 DMARC policy of the sender domain says reject", Verdict: "reject", Rule: "dmarc-reject", Incident: "I-1"}, "203.0.113.5", false},
		{maillog.Event{Time: at(5), Kind: maillog.Rejected, Client: "203.0.113.6", ConnID: "c6", Reply: "550 5.1.1 No such user here", Sender: "a@b", HELO: "reply=\"535 x\""}, "203.0.113.6", false},
		{maillog.Event{Time: at(6), Kind: maillog.Accepted, Client: "203.0.113.7", ConnID: "c7", QueueID: "q7", Reply: "250 2.0.0 Ok: queued as q7", Sender: forged, HELO: forged}, "", false},
		{maillog.Event{Time: at(7), Kind: maillog.Tempfailed, Client: "203.0.113.8", ConnID: "c8", Reply: "451 4.7.1 Greylisted, try again later"}, "", false},
		{maillog.Event{Time: at(8), Kind: maillog.Delivered, QueueID: "q7", Route: "backend", Relay: "10.0.0.5", Reply: "250 2.0.0 Ok", Recipients: []string{"b@example.org"}}, "", false},
		{maillog.Event{Time: at(9), Kind: maillog.Deferred, QueueID: "q7", Route: "mx", Relay: "mx.example.net", Reply: "451 4.3.0 client=6.6.6.6 moat: event=rejected client=6.6.6.6 x", Attempts: 2}, "", false},
		{maillog.Event{Time: at(10), Kind: maillog.Bounced, QueueID: "q8", Reply: "550 5.1.1 user unknown", Sender: forged}, "", false},
	}
}

func sampleLog(t *testing.T) (string, []sample) {
	var buf bytes.Buffer
	l := maillog.New(&buf)
	ss := samples()
	for _, s := range ss {
		l.Log(s.e)
	}
	return buf.String(), ss
}

// stripDate removes the leading timestamp as fail2ban's datepattern does.
func stripDate(t *testing.T, def map[string]string, line string) string {
	dp := def["datepattern"]
	if !strings.HasPrefix(dp, "{^LN-BEG}") {
		t.Fatalf("datepattern %q is not anchored at the line start", dp)
	}
	ts, rest, _ := strings.Cut(line, " ")
	if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	return " " + rest
}

func TestFail2banFilter(t *testing.T) {
	const filter = "fail2ban/filter.d/moat.conf"
	def := iniSection(t, filter, "Definition")
	log, ss := sampleLog(t)
	lines := strings.Split(strings.TrimSuffix(log, "\n"), "\n")
	if len(lines) != len(ss) {
		t.Fatalf("%d lines for %d events: a value broke a line", len(lines), len(ss))
	}
	for _, mode := range []string{"normal", "auth"} {
		res := failRegexes(t, def, map[string]string{"mode": mode}, "failregex")
		ign := failRegexes(t, def, map[string]string{"mode": mode}, "ignoreregex")
		for i, line := range lines {
			body := stripDate(t, def, line)
			got := ""
			for _, re := range res {
				if m := re.FindStringSubmatch(body); m != nil {
					got = m[re.SubexpIndex("host")]
					break
				}
			}
			for _, re := range ign {
				if re.MatchString(body) {
					got = ""
				}
			}
			want := ss[i].ban
			if mode == "auth" && !ss[i].auth {
				want = ""
			}
			if got != want {
				t.Errorf("mode %s: %s\n  banned %q, want %q", mode, line, got, want)
			}
		}
	}
	t.Run("fail2ban-regex", func(t *testing.T) { fail2banRegex(t, log, ss) })
}

// fail2banRegex runs Debian's fail2ban on the same lines, and checks the
// jail file with fail2ban-client -t.
func fail2banRegex(t *testing.T, log string, ss []sample) {
	bin, err := exec.LookPath("fail2ban-regex")
	if err != nil {
		t.Skip("fail2ban-regex not installed (Debian package fail2ban): the filter was checked with Go regexes only")
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "mail.log")
	if err := os.WriteFile(logPath, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	filter, _ := filepath.Abs("fail2ban/filter.d/moat.conf")
	for _, mode := range []string{"normal", "auth"} {
		out, err := exec.Command(bin, "-o", "ip", logPath, filter+"[mode="+mode+"]").CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", bin, err, out)
		}
		var want []string
		for _, s := range ss {
			if s.ban != "" && (mode == "normal" || s.auth) {
				want = append(want, s.ban)
			}
		}
		if got := strings.Fields(string(out)); !slices.Equal(got, want) {
			t.Errorf("mode %s: fail2ban banned %v, want %v", mode, got, want)
		}
	}

	client, err := exec.LookPath("fail2ban-client")
	if err != nil {
		return
	}
	if _, err := os.Stat("/etc/fail2ban/jail.conf"); err != nil {
		t.Log("no /etc/fail2ban: jail file not checked")
		return
	}
	// A copy of the system configuration with only our jails in it.
	conf := filepath.Join(dir, "fail2ban")
	if out, err := exec.Command("cp", "-r", "/etc/fail2ban", conf).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	jails, _ := filepath.Glob(filepath.Join(conf, "jail.d", "*"))
	for _, j := range jails {
		os.Remove(j)
	}
	os.Remove(filepath.Join(conf, "jail.local"))
	copyFile(t, "fail2ban/filter.d/moat.conf", filepath.Join(conf, "filter.d", "moat.conf"), nil)
	copyFile(t, "fail2ban/jail.d/moat.conf", filepath.Join(conf, "jail.d", "moat.conf"), func(s string) string {
		return strings.ReplaceAll(s, "/var/log/moat/mail.log", logPath)
	})
	out, err := exec.Command(client, "-c", conf, "-t").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("OK")) {
		t.Errorf("fail2ban-client -t: %v\n%s", err, out)
	}
}

func copyFile(t *testing.T, from, to string, edit func(string) string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if edit != nil {
		s = edit(s)
	}
	if err := os.WriteFile(to, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSystemdUnit(t *testing.T) {
	const unit = "systemd/moat.service"
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	directives := map[string][]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			directives[k] = append(directives[k], v)
		}
	}
	for k, want := range map[string]string{
		"User": "moat", "AmbientCapabilities": "CAP_NET_BIND_SERVICE", "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes",
		"RestrictNamespaces": "yes", "ExecReload": "/bin/kill -HUP $MAINPID", "KillSignal": "SIGTERM", "Restart": "on-failure",
	} {
		if !slices.Contains(directives[k], want) {
			t.Errorf("%s=%s missing (have %v)", k, want, directives[k])
		}
	}
	for _, k := range []string{"ReadWritePaths", "SystemCallFilter", "LimitNOFILE", "ExecStart"} {
		if len(directives[k]) == 0 {
			t.Errorf("%s missing", k)
		}
	}
	if !strings.Contains(strings.Join(directives["ReadWritePaths"], " "), "/var/lib/moat") || !slices.Contains(directives["SystemCallFilter"], "@system-service") {
		t.Errorf("ReadWritePaths %v, SystemCallFilter %v", directives["ReadWritePaths"], directives["SystemCallFilter"])
	}
	var cfg moatConfig
	b2, _ := os.ReadFile("moat.example.yaml")
	if err := yaml.Unmarshal(b2, &cfg); err != nil {
		t.Fatal(err)
	}
	stop, err := time.ParseDuration(strings.Join(directives["TimeoutStopSec"], ""))
	if err != nil || stop <= shutdownTimeout(t, cfg) {
		t.Errorf("TimeoutStopSec %v is not above smtp.shutdown_timeout %s", directives["TimeoutStopSec"], cfg.SMTP.ShutdownTimeout)
	}
	if !strings.Contains(strings.Join(directives["ReadWritePaths"], " "), cfg.DataDir) {
		t.Errorf("data_dir %s of moat.example.yaml is not writable under the unit", cfg.DataDir)
	}
	t.Run("systemd-analyze", func(t *testing.T) { systemdAnalyze(t, string(b)) })
	t.Run("sysusers-tmpfiles", sysusersTmpfiles)
}

// systemdAnalyze verifies a copy of the unit whose programs are
// /bin/true, since moat is not installed here.
func systemdAnalyze(t *testing.T, unit string) {
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	if _, err := os.Stat("/bin/true"); err != nil {
		t.Skip("no /bin/true to stand in for the moat binary")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "moat.service")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(unit, "/usr/local/bin/moat", "/bin/true")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "verify", p).CombinedOutput()
	// verify exits 0 on unknown keys and only prints them: any line
	// about our file is a failure.
	var bad []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "moat.service") {
			bad = append(bad, l)
		}
	}
	if err != nil || len(bad) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(bad, "\n"))
	}
}

func sysusersTmpfiles(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"etc/passwd", "etc/group"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ran := false
	for _, c := range []struct{ bin, file, arg string }{
		{"systemd-sysusers", "systemd/moat.sysusers.conf", ""},
		{"systemd-tmpfiles", "systemd/moat.tmpfiles.conf", "--create"},
	} {
		bin, err := exec.LookPath(c.bin)
		if err != nil {
			continue
		}
		ran = true
		abs, _ := filepath.Abs(c.file)
		args := []string{"--root=" + root}
		if c.arg != "" {
			args = append(args, c.arg)
		}
		out, err := exec.Command(bin, append(args, abs)...).CombinedOutput()
		if err != nil {
			t.Errorf("%s %s: %v\n%s", c.bin, c.file, err, out)
		}
	}
	if !ran {
		t.Skip("systemd-sysusers and systemd-tmpfiles not installed")
	}
	b, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if !bytes.HasPrefix(b, []byte("moat:")) {
		t.Errorf("sysusers made no moat user: %q", b)
	}
	if fi, err := os.Stat(filepath.Join(root, "var/lib/moat")); err != nil || !fi.IsDir() {
		t.Errorf("tmpfiles made no /var/lib/moat: %v", err)
	}
}

// The mail log lines shown in README.md are what maillog writes.
func TestReadmeMailLogExamples(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "20") || !strings.Contains(l, " moat: event=") {
			continue
		}
		n++
		e, err := maillog.Parse(l)
		if err != nil {
			t.Errorf("%s: %v", l, err)
			continue
		}
		if again := strings.TrimSuffix(string(maillog.Append(nil, e)), "\n"); again != l {
			t.Errorf("README line is not in the written form:\n  %s\n  %s", l, again)
		}
	}
	if n < 3 {
		t.Errorf("%d example lines", n)
	}
}
