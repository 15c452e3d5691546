package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"moat/gateway"
	"moat/gateway/guard"
	"moat/internal/dnsres"
	"moat/internal/reply"
	"moat/policy"
	"moat/policy/bayes"
	"moat/policy/bayes/learner"
	"moat/relay/verify"
	"moat/rules"
)

// pipelineChecks are the checks added to the gateway pipeline after the
// built-in ones of each stage (gateway.Checks.Extra), in order. With
// pipelineFactGroups this is the one place a new check is registered:
// moat serve, moat rules check and moat rules test all read it. A new
// data-stage check is a gateway.Check with a CheckData method (its own
// file) that stores its facts with Txn.Facts.SetGroup, listed here, and
// its rules.FactGroup listed in pipelineFactGroups.
// learn queues the spam traps' learning (nil: offline, nothing learned).
func pipelineChecks(cfg *Config, learn *learner.Learner) []gateway.Check {
	var out []gateway.Check
	if traps := cfg.Bayes.Learn.Traps(); len(traps) > 0 {
		out = append(out, gateway.NewSpamTrap(traps, learn))
	}
	return out
}

// pipelineFactGroups are the fact groups the pipelineChecks and the
// content checks contribute to the rules (rules.LoadOptions.FactGroups);
// cc nil: for type-checking only.
func pipelineFactGroups(cc *contentChecks) []rules.FactGroup {
	return append(append(cc.factGroups(), gateway.SpamTrapFactGroup(), gateway.ARCFactGroup()), gateway.ScannerFactGroups()...)
}

// rulesCommand is `moat rules check|test|explain`.
func rulesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "Check rule files, run a message through the rules offline, explain an incident",
	}
	cmd.AddCommand(rulesCheckCommand(), rulesTestCommand(), rulesExplainCommand(), rulesScoreCommand())
	return cmd
}

func rulesCheckCommand() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "check [--config FILE] [FILES...]",
		Short: "Validate rule files and print every error as file:line:col: rule: message",
		Long: `Validate rule files: parse, compile and type-check every condition.

With FILES, those files are checked (with --config, against its rules.lists
and routes). Without FILES, the rule files of the configuration's rules section
are checked (the built-in default configuration when --config is not given).
Every problem is printed as file:line:col: rule "name": message; the exit
status is 1 when there is any. Other configuration errors are not reported
here: use moat check-config for those.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := rules.DefaultConfig()
			// Without a configuration the facts are still every fact moat
			// computes (content, spam traps, ARC, scanners): only routes
			// and lists need one.
			opt := rules.LoadOptions{FactGroups: pipelineFactGroups(nil)}
			if cfgPath != "" || len(args) == 0 {
				c, err := loadConfig(cfgPath)
				if c == nil {
					for _, l := range errorLines(err) {
						fmt.Fprintln(cmd.ErrOrStderr(), l)
					}
					return exitError{1}
				}
				cfg, opt = c.Rules, c.ruleLoadOptions(nil)
			}
			if len(args) > 0 {
				cfg.Paths = args
			}
			errs := rules.CheckConfig(cfg, opt)
			if len(errs) > 0 {
				for _, l := range errorLines(errors.Join(errs...)) {
					fmt.Fprintln(cmd.ErrOrStderr(), l)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%d error(s)\n", len(errs))
				return exitError{1}
			}
			set, err := rules.Load(cfg, opt)
			if err != nil { // cannot happen after a clean check
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d rules in %d files: ok\n", set.Len(), len(set.Files()))
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "configuration file (YAML): its rules section")
	return cmd
}

// testInput is what `moat rules test` is told about the session.
type testInput struct {
	cfgPath, eml, ip, helo, from, dnsZone, authUser string
	to                                              []string
	tls, asJSON                                     bool
}

func rulesTestCommand() *cobra.Command {
	var in testInput
	cmd := &cobra.Command{
		Use:   "test --eml FILE --ip IP --helo NAME --from ADDR --to ADDR [--to ADDR...]",
		Short: "Run a message through the checks and the rules offline and show each stage",
		Long: `Run one message through what moat serve would do with it, offline: the
guard's deny list and DNS lists (skipped for allow-listed and trusted
clients; a refusal at connect ends the test, a lower score is the dnsbl
fact of the rules), the relay and recipient checks, the sender authentication checks (iprev, SPF,
DKIM, DMARC) as configured in auth, and the rules of every stage (connect,
helo, mail, rcpt once per recipient, data). It prints the facts the checks
found, each rule that matched (with dry runs), the score and the verdict.

As in the gateway, the authentication checks are skipped for --auth-user and
for a client in trusted_networks, and SPF checks the HELO name when --from is
empty (the null sender). Nothing is sent and nothing is spooled; rate limits
and greylisting use fresh in-memory stores (so greylist always defers).

DNS comes from the configured resolver (dns section), or with --dns from a
zone file (RFC 1035 master file syntax) served from memory, e.g.:

  example.com.                 TXT "v=spf1 ip4:192.0.2.0/24 -all"
  _dmarc.example.com.          TXT "v=DMARC1; p=reject"
  1.2.0.192.in-addr.arpa.      PTR mail.example.com.
  mail.example.com.            A   192.0.2.1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRulesTest(cmd.Context(), cmd.OutOrStdout(), in)
		},
	}
	f := cmd.Flags()
	f.StringVar(&in.cfgPath, "config", "", "configuration file (YAML): rules, auth, dns, domains, trusted_networks")
	f.StringVar(&in.eml, "eml", "", "the message (RFC 5322; LF line ends are taken as CRLF)")
	f.StringVar(&in.ip, "ip", "", "the client's IP address")
	f.StringVar(&in.helo, "helo", "", "the EHLO/HELO name")
	f.StringVar(&in.from, "from", "", "the envelope sender (MAIL FROM; empty: the null sender)")
	f.StringArrayVar(&in.to, "to", nil, "an envelope recipient (repeat for more)")
	f.StringVar(&in.dnsZone, "dns", "", "answer DNS from this zone file instead of the configured resolver")
	f.BoolVar(&in.tls, "tls", false, "the session used STARTTLS (TLS 1.3)")
	f.StringVar(&in.authUser, "auth-user", "", "the session authenticated as this user")
	f.BoolVar(&in.asJSON, "json", false, "print the result as JSON")
	for _, req := range []string{"eml", "ip", "helo", "to"} {
		_ = cmd.MarkFlagRequired(req)
	}
	return cmd
}

// testReport is what `moat rules test` found; printed as text or JSON.
type testReport struct {
	Client      string         `json:"client"`
	Trusted     bool           `json:"trusted"`
	AuthUser    string         `json:"auth_user,omitempty"`
	Inbound     bool           `json:"inbound_checks"`
	Guard       string         `json:"guard,omitempty"` // "refused": at connect, before any check
	DNSBL       *policy.DNSBL  `json:"dnsbl,omitempty"`
	DNSBLFailed []string       `json:"dnsbl_failed,omitempty"`
	IPRev       *policy.IPRev  `json:"iprev,omitempty"`
	SPF         *policy.SPF    `json:"spf,omitempty"`
	DKIM        *policy.DKIM   `json:"dkim,omitempty"`
	DMARC       *policy.DMARC  `json:"dmarc,omitempty"`
	Recipients  []testRcpt     `json:"recipients"`
	Stages      []testStage    `json:"stages"`
	Hits        []testHit      `json:"hits"`
	Score       float64        `json:"score"`
	Verdict     map[string]any `json:"verdict"`
	Headers     []rules.Header `json:"headers,omitempty"`
	Bayes       *bayes.Result  `json:"bayes,omitempty"`
	BayesNote   string         `json:"bayes_note,omitempty"`
}

// explainBayes classifies the message of an offline run with the tokens
// that weighed most; nil without a classifier or a message.
func explainBayes(ctx context.Context, cc *contentChecks, out *gateway.OfflineResult) *bayes.Result {
	m := out.Txn.Facts.Message
	if cc.opt.Bayes == nil || m == nil {
		return nil
	}
	r, err := cc.opt.Bayes.Explain(ctx, gateway.ClassifierInput(m), 12)
	if err != nil {
		return nil
	}
	return &r
}

type testRcpt struct {
	Address string `json:"address"`
	Route   string `json:"route,omitempty"`
	Refused string `json:"refused,omitempty"` // the gateway refuses it before any rule
}

type testStage struct {
	Stage  string  `json:"stage"`
	Rcpt   string  `json:"rcpt,omitempty"`
	Action string  `json:"action"`
	Rule   string  `json:"rule,omitempty"`
	Score  float64 `json:"score"`
}

type testHit struct {
	Stage  string         `json:"stage"`
	Rule   string         `json:"rule"`
	Action string         `json:"action"`
	DryRun bool           `json:"dry_run,omitempty"`
	Note   string         `json:"note,omitempty"`
	Facts  map[string]any `json:"facts,omitempty"`
}

// maxTestMessage bounds the --eml read when the config sets no limit.
const maxTestMessage = 64 << 20

func runRulesTest(ctx context.Context, w io.Writer, in testInput) error {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := loadConfig(in.cfgPath)
	if err != nil {
		return fmt.Errorf("configuration: %s", strings.Join(errorLines(err), "; "))
	}
	ip, err := netip.ParseAddr(in.ip)
	if err != nil {
		return fmt.Errorf("--ip: %q is not an IP address", in.ip)
	}
	ip = ip.Unmap()
	raw, err := readMessage(in.eml, cfg.SMTP.MaxMessageSize)
	if err != nil {
		return err
	}
	var res dnsres.Resolver
	if in.dnsZone != "" {
		if res, err = zoneFileResolver(in.dnsZone); err != nil {
			return err
		}
	} else if res, err = dnsres.New(cfg.DNS); err != nil {
		return err
	}
	cc, err := newContentChecks(cfg, res, true)
	if err != nil {
		return err
	}
	defer cc.Close()
	set, err := rules.Load(cfg.Rules, cfg.ruleLoadOptions(cc))
	if err != nil {
		return fmt.Errorf("rules: %s", strings.Join(errorLines(err), "; "))
	}
	trusted, err := gateway.ParsePrefixes("trusted_networks", cfg.TrustedNetworks)
	if err != nil {
		return err
	}

	trustedIP := false
	for _, p := range trusted {
		if p.Contains(ip) {
			trustedIP = true
		}
	}
	conn := policy.Conn{ID: "test", IP: ip, HELO: in.helo, AuthUser: in.authUser}
	if in.tls {
		conn.TLS, conn.TLSVersion = true, "TLS1.3"
	}
	listener := gateway.Listener{Name: "test", Mode: "mx"}
	if in.authUser != "" {
		listener.Mode = "submission"
	}
	// The guard's lists come first, as on the listener: one decision,
	// guard.Screen, for both.
	g, err := guard.New(guardConfig(cfg), guard.Options{Hostname: cfg.Hostname, Resolver: res})
	if err != nil {
		return err
	}
	// The same collaborators as moat serve (buildChecks), offline: fresh
	// in-memory rate limits and greylisting.
	checks := offlineChecks(cfg, rules.NewEngine(set, rules.EngineOptions{}), res)
	state, err := rulesTestState(cfg, res)
	if err != nil {
		return err
	}
	out := gateway.RunOffline(ctx, gateway.PipelineOptions{
		Hostname:       cfg.Hostname,
		MaxMessageSize: cfg.SMTP.MaxMessageSize,
		Checks:         checks,
		Screen:         gateway.GuardScreen(g),
	}, gateway.OfflineSession{
		Conn: conn, Listener: listener, State: state,
		From: in.from, To: in.to, Message: raw, DeclaredSize: int64(len(raw)),
	})
	rep := testReportOf(out, trustedIP, checks.Resolver != nil)
	rep.Bayes, rep.BayesNote = explainBayes(ctx, cc, out), cc.note
	if gf := out.Txn.Guard; gf != nil && !gf.Allowlisted && len(cfg.Guard.DNSBL.Zones) > 0 && out.Rule != "guard:"+guard.ReasonDenyList {
		rep.DNSBL, rep.DNSBLFailed = &gf.DNSBL, gf.DNSBLFailed
	}
	return printTestReport(w, rep, in.asJSON)
}

// zoneFileResolver answers DNS from a zone file (the --dns flag of the
// offline commands).
func zoneFileResolver(path string) (dnsres.Resolver, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--dns: %w", err)
	}
	defer f.Close()
	z, err := loadZone(f, path)
	if err != nil {
		return nil, fmt.Errorf("--dns: %w", err)
	}
	return z, nil
}

// offlineChecks are the checks of moat serve (buildChecks) for an offline
// run (rules test, rules score): engine decides, the authentication checks
// run when auth is enabled and res is not nil.
func offlineChecks(cfg *Config, engine *rules.Engine, res dnsres.Resolver) *gateway.Checks {
	checks := &gateway.Checks{
		Rules:      engine,
		AuthservID: cfg.Auth.AuthservID,
		Timeout:    cfg.Auth.Timeout,
		Extra:      pipelineChecks(cfg, nil), // offline: nothing is learned
		Scanners:   offlineScanners(cfg),     // skipped: their facts say so
	}
	if cfg.Auth.Enabled && res != nil {
		checks.Resolver = res
	}
	return checks
}

// rulesTestState is the gateway state of the configuration, built as
// moat serve builds it: routes, mailboxes and users, trusted networks and
// recipient verification (whose callahead asks the backend for real).
func rulesTestState(cfg *Config, res dnsres.Resolver) (*gateway.State, error) {
	v, err := verify.New(cfg.Verify, cfg.Routes, verify.Options{Hostname: cfg.Hostname, Logger: zap.NewNop(), Resolver: res})
	if err != nil {
		return nil, err
	}
	return buildState(cfg, v)
}

// testReportOf turns an offline session into the report.
func testReportOf(out *gateway.OfflineResult, trustedIP, authChecks bool) *testReport {
	t := out.Txn
	f := &t.Facts
	rep := &testReport{Client: f.Conn.IP.String(), Trusted: trustedIP, AuthUser: f.Conn.AuthUser}
	rep.Inbound = authChecks && !t.May()
	if out.Rule == "guard:"+guard.ReasonDenyList || out.Rule == "guard:"+guard.ReasonDNSBL || out.Rule == "guard:"+guard.ReasonDNSBLError {
		rep.Guard = "refused"
	}
	if rep.Inbound && rep.Guard == "" {
		rep.IPRev, rep.SPF, rep.DKIM, rep.DMARC = &f.IPRev, &f.SPF, &f.DKIM, &f.DMARC
	}
	for _, st := range out.Steps {
		if st.Stage == rules.StageRcpt {
			tr := testRcpt{Address: st.Rcpt, Route: st.Route}
			if st.Reply != nil && st.Refusal.Check != "rules" {
				tr.Refused = wireLine(st.Reply)
			}
			rep.Recipients = append(rep.Recipients, tr)
		}
		if st.Reply != nil && st.Refusal.Check != "rules" {
			continue // refused before the rules ran
		}
		a := string(st.Verdict.Action)
		if a == "" {
			a = "continue"
		}
		rep.Stages = append(rep.Stages, testStage{Stage: st.Stage.String(), Rcpt: st.Rcpt, Action: a, Rule: st.Verdict.Rule, Score: st.Score})
	}
	for _, h := range out.Hits {
		rep.Hits = append(rep.Hits, testHit{Stage: h.Stage.String(), Rule: h.Rule, Action: string(h.Action), DryRun: h.DryRun, Note: h.Note, Facts: h.Facts})
	}
	rep.Score = t.Score
	rep.Verdict = map[string]any{"action": out.Action, "rule": out.Rule, "reply": wireLine(out.Final)}
	if t.Refusal.Incident != "" {
		rep.Verdict["incident"] = t.Refusal.Incident
	}
	if out.Final.Code == 250 {
		rep.Headers = t.Headers
	}
	return rep
}

// wireLine is a reply as the client reads it (the cause stays in the log).
func wireLine(r *reply.Reply) string {
	return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text)
}

// readMessage reads the message file, at most max bytes, and makes every
// line end in CRLF as on the wire (RFC 5321 §2.3.8).
func readMessage(path string, max int64) ([]byte, error) {
	if max <= 0 {
		max = maxTestMessage
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--eml: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("--eml: %w", err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("--eml: %s is larger than smtp.max_message_size (%d bytes)", path, max)
	}
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")), nil
}

func printTestReport(w io.Writer, r *testReport, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	who := "untrusted"
	switch {
	case r.AuthUser != "":
		who = "authenticated as " + clean(r.AuthUser)
	case r.Trusted:
		who = "in trusted_networks"
	}
	fmt.Fprintf(w, "client      %s (%s)\n", r.Client, who)
	if r.DNSBL != nil {
		fmt.Fprintf(w, "dnsbl       score %g", r.DNSBL.Score)
		for _, h := range r.DNSBL.Hits {
			fmt.Fprintf(w, " %s=%s(%+g)", clean(h.Zone), h.Answer, h.Weight)
		}
		if len(r.DNSBLFailed) > 0 {
			fmt.Fprintf(w, " no answer from %s", strings.Join(r.DNSBLFailed, ","))
		}
		fmt.Fprintln(w)
	}
	if r.Guard != "" {
		fmt.Fprintln(w, "checks      not run: the guard refuses the client at connect")
	} else if !r.Inbound {
		fmt.Fprintln(w, "checks      skipped (auth.enabled is off, or the client is trusted or authenticated)")
	} else {
		fmt.Fprintln(w, "facts:")
		fmt.Fprintf(w, "  iprev     %s%s\n", r.IPRev.Result, list(" names=", r.IPRev.Names))
		fmt.Fprintf(w, "  spf       %s %s=%s%s\n", r.SPF.Result, r.SPF.Identity, clean(r.SPF.Domain), reason(r.SPF.Reason))
		fmt.Fprintf(w, "  dkim      %s\n", r.DKIM.Result)
		for _, s := range r.DKIM.Signatures {
			fmt.Fprintf(w, "    d=%s s=%s a=%s: %s%s\n", clean(s.Domain), clean(s.Selector), clean(s.Algorithm), s.Result, reason(s.Reason))
		}
		d := r.DMARC
		fmt.Fprintf(w, "  dmarc     %s policy=%s from=%s org=%s spf_aligned=%t dkim_aligned=%t%s\n",
			d.Result, orNone(d.Policy), clean(orNone(d.Domain)), clean(orNone(d.OrgDomain)), d.SPFAligned, d.DKIMAligned, reason(d.Reason))
	}
	if r.BayesNote != "" {
		fmt.Fprintf(w, "bayes       %s\n", r.BayesNote)
	}
	if b := r.Bayes; b != nil {
		fmt.Fprintf(w, "bayes       probability %.4f ready=%t (learned %d spam, %d ham; %d tokens used)\n",
			b.Probability, b.Ready, b.SpamLearned, b.HamLearned, b.Used)
		for _, t := range b.Top {
			fmt.Fprintf(w, "  %.3f  %s  (spam %d, ham %d)\n", t.Prob, clean(t.Token), t.Spam, t.Ham)
		}
	}
	fmt.Fprintln(w, "recipients:")
	for _, rc := range r.Recipients {
		if rc.Refused != "" {
			fmt.Fprintf(w, "  %s  refused before the rules: %s\n", clean(rc.Address), rc.Refused)
			continue
		}
		fmt.Fprintf(w, "  %s  route %s\n", clean(rc.Address), rc.Route)
	}
	if len(r.Stages) > 0 {
		fmt.Fprintln(w, "stages:")
		for _, s := range r.Stages {
			line := fmt.Sprintf("  %-8s %-10s score %g", s.Stage, s.Action, s.Score)
			if s.Rcpt != "" {
				line += "  rcpt " + clean(s.Rcpt)
			}
			if s.Rule != "" {
				line += "  rule " + clean(s.Rule)
			}
			fmt.Fprintln(w, line)
		}
	}
	fmt.Fprintln(w, "rule hits:")
	if len(r.Hits) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, h := range r.Hits {
		line := fmt.Sprintf("  %-8s %s: %s", h.Stage, clean(h.Rule), h.Action)
		if h.DryRun {
			line += " (dry run: not applied)"
		}
		if h.Note != "" {
			line += " — " + clean(h.Note)
		}
		fmt.Fprintln(w, line)
		keys := make([]string, 0, len(h.Facts))
		for k := range h.Facts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "             %s = %s\n", k, factValue(h.Facts[k]))
		}
	}
	fmt.Fprintf(w, "score       %g\n", r.Score)
	v := r.Verdict
	line := fmt.Sprintf("verdict     %v", v["action"])
	if rule, _ := v["rule"].(string); rule != "" {
		line += "  rule " + clean(rule)
	}
	if rp, _ := v["reply"].(string); rp != "" {
		line += "  reply " + strconvQuote(rp)
	}
	fmt.Fprintln(w, line)
	for _, h := range r.Headers {
		fmt.Fprintf(w, "header      %s: %s\n", clean(h.Name), clean(strings.NewReplacer("\r\n\t", " ", "\r\n ", " ").Replace(h.Value))) // a folded value (X-Spam-Status) on one line
	}
	return nil
}

// maxFactShown bounds how much of a fact (the body, say) a hit shows.
const maxFactShown = 160

// factValue renders a fact a rule read: strings quoted (control
// characters escaped), long values cut.
func factValue(v any) string {
	var s string
	if str, ok := v.(string); ok {
		if len(str) > maxFactShown {
			str = strings.ToValidUTF8(str[:maxFactShown], "") + "…"
		}
		s = strconvQuote(str)
	} else {
		b, err := json.Marshal(v)
		if err != nil {
			b = []byte(fmt.Sprint(v))
		}
		s = string(b)
		if len(s) > maxFactShown {
			s = strings.ToValidUTF8(s[:maxFactShown], "") + "…"
		}
	}
	return clean(s)
}

func list(prefix string, v []string) string {
	if len(v) == 0 {
		return ""
	}
	return prefix + clean(strings.Join(v, ","))
}

func reason(r string) string {
	if r == "" {
		return ""
	}
	return " (" + clean(r) + ")"
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
