package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"moat/gateway"
	"moat/gateway/acmecert"
	"moat/gateway/guard"
	"moat/gateway/stspub"
	"moat/internal/dnsres"
	"moat/mailbox"
	"moat/policy/arc"
	"moat/policy/authlimit"
	"moat/policy/bayes"
	"moat/policy/cluster"
	"moat/policy/dkimsign"
	"moat/policy/scanner"
	"moat/policy/uribl"
	"moat/relay/mtasts"
	"moat/relay/queue"
	"moat/relay/reports"
	"moat/relay/route"
	"moat/relay/smtpout"
	"moat/relay/srs"
	"moat/relay/verify"
	"moat/rules"
)

// Config is the whole configuration file. Each part owns its section's
// type and validation; this struct only composes them. Keys are the
// contract of moat (ARCHITECTURE.md): extend, never rename.
type Config struct {
	Hostname        string                 `mapstructure:"hostname"`
	DataDir         string                 `mapstructure:"data_dir"`
	Log             LogConfig              `mapstructure:"log"`
	TLS             gateway.TLSFiles       `mapstructure:"tls"`
	Listeners       []gateway.Listener     `mapstructure:"listeners"`
	TrustedNetworks []string               `mapstructure:"trusted_networks"`
	SMTP            gateway.SMTP           `mapstructure:"smtp"`
	Domains         Domains                `mapstructure:"domains"`
	Routes          map[string]route.Route `mapstructure:"routes"`
	SMTPClient      smtpout.Timeouts       `mapstructure:"smtp_client"`
	DNS             dnsres.Config          `mapstructure:"dns"`
	Mailboxes       mailbox.Config         `mapstructure:"mailboxes"`
	Queue           queue.Config           `mapstructure:"queue"`
	Guard           guard.Config           `mapstructure:"guard"`
	Auth            AuthConfig             `mapstructure:"auth"`
	DKIM            DKIMConfig             `mapstructure:"dkim"`
	Rules           rules.Config           `mapstructure:"rules"`
	Verify          verify.Config          `mapstructure:"verify"`
	Submission      SubmissionConfig       `mapstructure:"submission"`
	Cluster         cluster.Config         `mapstructure:"cluster"`
	Bayes           bayes.Config           `mapstructure:"bayes"`
	URIBL           uribl.Config           `mapstructure:"uribl"`
	Admin           AdminConfig            `mapstructure:"admin"`
	// Scanners are the external scanners run at DATA (rspamd, spamd,
	// clamd, milters; issue 22). A list: set in the file only (no
	// MOAT_* variable).
	Scanners []scanner.Config `mapstructure:"scanners"`
	// VirusAction is what a message with malware gets when no rule
	// refused it first: reject (554 5.7.1) or quarantine.
	VirusAction string `mapstructure:"virus_action"`
	// Reports are the DMARC aggregate and SMTP TLS reports (issue 26).
	Reports reports.Config `mapstructure:"reports"`

	// envWarnings are the MOAT_* variables that named no key, found
	// while decoding (see Warnings).
	envWarnings []string
	// SRS rewrites the envelope sender of mail forwarded off-site by an
	// alias or catch-all (relay/srs; "Forwarding: SRS and ARC").
	SRS srs.Config `mapstructure:"srs"`
	// ARC seals forwarded copies (policy/arc); incoming chains are
	// validated with the other auth checks.
	ARC arc.Config `mapstructure:"arc"`
	// ACME obtains certificates for the names moat serves (issue 26).
	ACME acmecert.Config `mapstructure:"acme"`
	// MTASTS is `mta_sts:`: recipient domains' MTA-STS policies applied
	// to MX delivery, and the policies of our own domains published.
	MTASTS MTASTSConfig `mapstructure:"mta_sts"`
	// TLSPolicy and DANE are, with MTASTS.Outbound, the TLS of MX
	// delivery (issue 26; relay/smtpout tlspolicy.go, relay/mtasts).
	TLSPolicy smtpout.TLSPolicies `mapstructure:"tls_policy"`
	DANE      smtpout.DANEConfig  `mapstructure:"dane"`
}

// MTASTSConfig is `mta_sts:` (RFC 8461), one section for both sides:
// recipient domains' policies applied to MX delivery (relay/mtasts:
// enabled, fetch_timeout, cache_size) and our own domains' policies
// published (gateway/stspub: listener, publish).
type MTASTSConfig struct {
	Outbound mtasts.Config `mapstructure:",squash"`
	Own      stspub.Config `mapstructure:",squash"`
}

// SubmissionConfig is `submission:`: limits on AUTH failures and on what
// an authenticated user may send.
type SubmissionConfig struct {
	authlimit.Config `mapstructure:",squash"`
}

// AuthConfig is `auth:`: the sender authentication checks (SPF, DKIM,
// DMARC, iprev), the Authentication-Results header and the default policy
// applied when no rule decided.
type AuthConfig struct {
	// Enabled runs the checks for mail from untrusted, unauthenticated
	// clients.
	Enabled bool `mapstructure:"enabled"`
	// AuthservID names this gateway in Authentication-Results; default
	// the hostname.
	AuthservID string `mapstructure:"authserv_id"`
	// Timeout bounds each check.
	Timeout          time.Duration `mapstructure:"timeout"`
	rules.AuthPolicy `mapstructure:",squash"`
}

// DKIMConfig is `dkim:`.
type DKIMConfig struct {
	// Sign lists the domains whose outgoing mail is signed.
	Sign []dkimsign.Key `mapstructure:"sign"`
}

// LogConfig is `log:`.
type LogConfig struct {
	Level  string `mapstructure:"level"`  // debug, info, warn, error
	Format string `mapstructure:"format"` // console or json
	// MailLog is where the one-line-per-message mail log goes: a file
	// path (appended), "-" for standard error, "" for none.
	MailLog string `mapstructure:"mail_log"`
}

// Domains is `domains:`.
type Domains struct {
	Local []string          `mapstructure:"local"`
	Relay map[string]string `mapstructure:"relay"` // domain -> route name
}

// AdminConfig is `admin:`.
type AdminConfig struct {
	Address   string `mapstructure:"address"`
	TokenFile string `mapstructure:"token_file"`
	// OpenMetrics serves /metrics, /healthz and /readyz to any client
	// without a token (containers: Prometheus and the kubelet reach the
	// pod address); the rest of the API then needs the token or, without
	// one, a client on loopback (MOAT_ADMIN_OPEN_METRICS).
	OpenMetrics bool `mapstructure:"open_metrics"`
}

// keyDelim replaces viper's "." so that keys such as
// mailboxes.users.alice@example.org stay whole.
const keyDelim = "::"

// defaults returns the configuration every file starts from.
func defaults() Config {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return Config{
		Hostname: host,
		DataDir:  "./moat-data",
		Log:      LogConfig{Level: "info", Format: "console"},
		Listeners: []gateway.Listener{
			{Name: "mx", Address: "127.0.0.1:2525", Mode: "mx", TLS: "none"},
		},
		TrustedNetworks: []string{"127.0.0.0/8", "::1/128"},
		SMTP:            gateway.DefaultSMTP(),
		Domains:         Domains{Local: []string{"localhost"}, Relay: map[string]string{}},
		Routes:          map[string]route.Route{},
		SMTPClient:      smtpout.DefaultTimeouts(),
		MTASTS:          MTASTSConfig{Outbound: mtasts.DefaultConfig(), Own: stspub.DefaultConfig()},
		DANE:            smtpout.DefaultDANEConfig(),
		DNS:             dnsres.DefaultConfig(),
		Queue:           queue.DefaultConfig(),
		Guard:           guard.DefaultConfig(),
		Auth:            AuthConfig{Enabled: true, Timeout: 20 * time.Second, AuthPolicy: rules.DefaultAuthPolicy()},
		Rules:           rules.DefaultConfig(),
		Verify:          verify.DefaultConfig(),
		Submission:      SubmissionConfig{authlimit.DefaultConfig()},
		Cluster:         cluster.DefaultConfig(),
		Bayes:           bayes.DefaultConfig(),
		URIBL:           uribl.DefaultConfig(),
		Admin:           AdminConfig{Address: "127.0.0.1:8025"},
		VirusAction:     "reject",
		ACME:            acmecert.DefaultConfig(),
		Reports:         reports.DefaultConfig(),
	}
}

// builtinDefault is what `moat serve` runs with no --config: the default
// above plus one mailbox, so that a first message has somewhere to go.
const builtinDefault = `
mailboxes:
  users:
    postmaster@localhost: {}
`

// loadConfig decodes path (see decodeConfig) and validates it.
func loadConfig(path string) (*Config, error) {
	cfg, err := decodeConfig(path)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// decodeConfig reads path (or the built-in default when path is ""), then
// MOAT_* environment variables, over the defaults. Unknown keys and
// values of the wrong type are errors.
func decodeConfig(path string) (*Config, error) {
	v := viper.NewWithOptions(viper.KeyDelimiter(keyDelim))
	setDefaults(v, "", reflect.ValueOf(defaults()))
	defaultKeys := v.AllKeys()
	v.SetConfigType("yaml")
	var file []byte
	if path == "" {
		if err := v.MergeConfig(strings.NewReader(builtinDefault)); err != nil {
			return nil, err
		}
	} else {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		file = data
		if err := v.MergeConfig(bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if errs := unknownKeys(path, data); len(errs) > 0 {
			return nil, fmt.Errorf("config: %w", errors.Join(errs...))
		}
	}
	// MOAT_DATA_DIR, MOAT_LOG_LEVEL, MOAT_DNS_TIMEOUT ...: one variable for
	// each key of the defaults, bound by name. Not viper's AutomaticEnv,
	// which also tried keys that only the file names (entries of a map
	// such as routes.backend.address) and applied such a variable only
	// some of the time, depending on map order: those have no variable.
	known := map[string]bool{}
	for _, k := range defaultKeys {
		name := envName(k)
		if err := v.BindEnv(k, name); err != nil {
			return nil, err
		}
		known[name] = true
	}

	var cfg Config
	err := v.UnmarshalExact(&cfg, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
	)))
	if err != nil {
		if file != nil {
			err = locateDecodeErrors(path, file, err)
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg.envWarnings = envWarnings(os.Environ(), known)
	cfg.Mailboxes.SetDefaults(cfg.DataDir)
	if cfg.Auth.AuthservID == "" {
		cfg.Auth.AuthservID = cfg.Hostname
	}
	cfg.Rules.Auth = cfg.Auth.AuthPolicy
	cfg.Reports.SetDefaults(cfg.Hostname)
	for i := range cfg.Scanners {
		cfg.Scanners[i].SetDefaults()
	}
	return &cfg, nil
}

// setDefaults registers every leaf key of the default config: the keys a
// MOAT_* variable can set, whether or not the file mentions them.
func setDefaults(v *viper.Viper, prefix string, rv reflect.Value) {
	rt := rv.Type()
	for i := 0; i < rt.NumField(); i++ {
		f := rt.Field(i)
		tag := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
		if tag == "-" || !f.IsExported() || (tag == "" && !strings.Contains(f.Tag.Get("mapstructure"), "squash")) {
			continue
		}
		fv := rv.Field(i)
		if tag == "" && strings.Contains(f.Tag.Get("mapstructure"), "squash") {
			setDefaults(v, prefix, fv)
			continue
		}
		key := prefix + tag
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Time{}) {
			setDefaults(v, key+keyDelim, fv)
			continue
		}
		v.SetDefault(key, fv.Interface())
	}
}

// Validate checks the whole configuration; every error names its key.
func (c *Config) Validate() error {
	var errs []error
	if c.Hostname == "" || strings.ContainsAny(c.Hostname, " \t\r\n") {
		errs = append(errs, fmt.Errorf("hostname: %q is not a host name", c.Hostname))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: must be set"))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: %q is not debug, info, warn or error", c.Log.Level))
	}
	if c.Log.Format != "console" && c.Log.Format != "json" {
		errs = append(errs, fmt.Errorf("log.format: %q is not console or json", c.Log.Format))
	}
	errs = append(errs, c.TLS.Validate())
	errs = append(errs, gateway.ValidateListeners(c.Listeners, c.TLS.Configured() || c.ACME.Enabled))
	errs = append(errs, c.ACME.Validate(), c.MTASTS.Own.Validate())
	if _, err := gateway.ParsePrefixes("trusted_networks", c.TrustedNetworks); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.SMTP.Validate())
	if len(c.Domains.Local) == 0 && len(c.Domains.Relay) == 0 {
		errs = append(errs, errors.New("domains: at least one local or relay domain is needed"))
	}
	errs = append(errs, c.routeConfig().Validate())
	errs = append(errs, c.SMTPClient.Validate())
	errs = append(errs, c.TLSPolicy.Validate(), c.MTASTS.Outbound.Validate(), c.DANE.Validate())
	errs = append(errs, c.DNS.Validate())
	errs = append(errs, c.Mailboxes.Validate(c.Domains.Local))
	errs = append(errs, c.Queue.Validate())
	errs = append(errs, c.Guard.Validate())
	errs = append(errs, c.Verify.Validate())
	errs = append(errs, c.Submission.Validate())
	errs = append(errs, c.Bayes.Validate())
	errs = append(errs, c.validateSpamTraps())
	errs = append(errs, c.URIBL.Validate("uribl"))
	errs = append(errs, c.SRS.Validate())
	errs = append(errs, c.ARC.Validate())
	errs = append(errs, scanner.ValidateList("scanners", c.Scanners), c.validateVirusAction())
	if _, err := c.Bayes.StoreKind(c.Cluster.Enabled()); err != nil {
		errs = append(errs, err)
	}
	if c.Cluster.Enabled() {
		errs = append(errs, c.Cluster.Validate())
	}
	if c.Admin.TokenFile != "" {
		if _, err := readToken(c.Admin.TokenFile); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, c.Auth.AuthPolicy.Validate())
	if c.Auth.Timeout <= 0 {
		errs = append(errs, errors.New("auth.timeout: must be positive"))
	}
	errs = append(errs, dkimsign.ValidateKeys("dkim.sign", c.DKIM.Sign))
	errs = append(errs, c.Reports.Validate())
	if err := c.Rules.Validate(); err != nil {
		errs = append(errs, err)
	} else {
		for _, e := range rules.CheckConfig(c.Rules, c.ruleLoadOptions(nil)) {
			errs = append(errs, e)
		}
	}
	if c.Admin.Address != "" {
		if _, _, err := net.SplitHostPort(c.Admin.Address); err != nil {
			errs = append(errs, fmt.Errorf("admin.address: %q is not host:port", c.Admin.Address))
		}
	}
	return errors.Join(errs...)
}

// Warnings returns what is valid but unsafe in the configuration, one
// line each naming its key: `moat check-config` prints them and `moat
// serve` logs them once at start.
//
//   - A relay domain whose route does not verify recipients: mail for an
//     unknown user is accepted, refused later by the backend and bounced
//     to a sender that may be forged (backscatter). Postfix's
//     reject_unverified_recipient is the model; relay/verify offers
//     callahead (smtp and lmtp routes) and list.
//   - Sender authentication off while notices to unverified senders are
//     withheld: then no sender of an untrusted, unauthenticated client is
//     verified, so none of them gets a bounce.
//   - A MOAT_* environment variable that names no key (a misspelling is
//     otherwise ignored without a word), with the nearest known name.
func (c *Config) Warnings() []string {
	out := append([]string(nil), c.envWarnings...)
	domains := make([]string, 0, len(c.Domains.Relay))
	for d := range c.Domains.Relay {
		domains = append(domains, d)
	}
	sort.Strings(domains)
	for _, d := range domains {
		name := c.Domains.Relay[d]
		rt, ok := c.Routes[name]
		if !ok && name == route.MX {
			out = append(out, fmt.Sprintf("domains.relay.%s: the implicit mx route does not verify recipients; "+
				"name a route with verify_recipients: list", d))
			continue
		}
		if !ok {
			continue // an error of its own (routes)
		}
		if rt.VerifyRecipients == "" || rt.VerifyRecipients == route.VerifyNone {
			out = append(out, fmt.Sprintf("routes.%s.verify_recipients: none for relay domain %s (domains.relay): "+
				"mail to unknown users is accepted and bounced later, to senders who may be forged; "+
				"set callahead or list", name, d))
		}
	}
	if !c.Auth.Enabled && !c.Queue.BounceUnverifiedSenders {
		out = append(out, "auth.enabled: false with queue.bounce_unverified_senders: false: "+
			"no sender from an untrusted, unauthenticated client is verified, so none gets a bounce")
	}
	return out
}

// ruleLoadOptions checks what rules refer to outside themselves; cc
// computes the content facts (nil: type-checking only).
func (c *Config) ruleLoadOptions(cc *contentChecks) rules.LoadOptions {
	return rules.LoadOptions{FactGroups: pipelineFactGroups(cc), ValidateRoute: func(name string) error {
		if name == route.Local || name == route.MX {
			return nil
		}
		if _, ok := c.Routes[name]; !ok {
			return fmt.Errorf("route %q is not defined in routes", name)
		}
		return nil
	}}
}

func (c *Config) routeConfig() route.Config {
	return route.Config{
		LocalDomains: c.Domains.Local,
		RelayDomains: c.Domains.Relay,
		Routes:       c.Routes,
	}
}

// errorLines splits a joined error into one line per problem.
func errorLines(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		for _, l := range strings.Split(e.Error(), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}
