package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"moat/gateway"
	"moat/internal/dnsres"
	"moat/policy"
	"moat/policy/content"
	"moat/policy/dkimsign"
	"moat/relay/dmarcrpt"
	"moat/relay/reports"
	"moat/relay/tlsrpt"
	"moat/rules"
)

// reportOps is the DMARC and TLS reporting of a running moat: the store
// the gateway and delivery record into, and the daily job.
type reportOps struct {
	cfg      reports.Config
	store    *reports.Store
	reporter *reports.Reporter
	cancel   context.CancelFunc
	done     chan struct{}
}

// newReportOps builds the store the gateway and delivery record into
// (nil when reports are off); wire adds the daily job once the queue
// exists.
func newReportOps(cfg *Config) *reportOps {
	if !cfg.Reports.Enabled() {
		return nil
	}
	return &reportOps{cfg: cfg.Reports, store: reports.Open(reports.DBPath(cfg.DataDir), nil)}
}

// wire builds the daily job: reports go into a's spool, by a's routes,
// signed by signer.
func (ro *reportOps) wire(a *app, cfg *Config, signer *dkimsign.Signer) {
	if ro == nil {
		return
	}
	ro.reporter = reports.New(reportOptions(cfg, ro.store, signer, a.resolver, a.log.Named("reports"), reports.Options{
		Spool:    a.spool,
		Notify:   a.queue.Notify,
		RouteFor: func(rcpt string) string { return a.routing.Load().router.Route(rcpt).Route },
		Observe:  a.metrics.Report,
	}))
	if _, d, _ := strings.Cut(cfg.Reports.From, "@"); signer == nil || !hasKey(signer, d) {
		a.log.Warn("reports are sent unsigned: dkim.sign has no key for the reporter's domain",
			zap.String("reports.from", cfg.Reports.From))
	}
}

func hasKey(s *dkimsign.Signer, domain string) bool {
	for _, d := range s.Domains() {
		if strings.EqualFold(d, domain) {
			return true
		}
	}
	return false
}

// reportOptions fills what the daemon and the commands share.
func reportOptions(cfg *Config, store *reports.Store, signer *dkimsign.Signer, r dnsres.Resolver, log *zap.Logger, o reports.Options) reports.Options {
	o.Store = store
	o.From, o.OrgName, o.Contact = cfg.Reports.From, cfg.Reports.OrgName, cfg.Reports.Contact
	o.DMARC, o.TLS, o.Hour = cfg.Reports.DMARC.Enabled, cfg.Reports.TLS.Enabled, cfg.Reports.Hour
	o.Logger = log
	o.Resolver = r
	if signer != nil {
		o.Sign = func(domain string, msg []byte) (string, bool, error) {
			return signer.Sign(domain, bytes.NewReader(msg))
		}
	}
	return o
}

// start runs the daily job until stop.
func (ro *reportOps) start() {
	if ro == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	ro.cancel, ro.done = cancel, make(chan struct{})
	go func() {
		defer close(ro.done)
		ro.reporter.Run(ctx)
	}()
}

// stop ends the job after a last merge of the counts.
func (ro *reportOps) stop() {
	if ro == nil || ro.cancel == nil {
		return
	}
	ro.cancel()
	<-ro.done
	ro.cancel = nil
}

// tlsSink is what relay/smtpout reports each TLS attempt to (nil when
// TLS reports are off).
func (ro *reportOps) tlsSink() tlsrpt.Sink {
	if ro == nil || !ro.cfg.TLS.Enabled {
		return nil
	}
	return ro.store
}

// afterData records the DMARC result of each inbound message once the
// data stage decided (nil when DMARC reports are off).
func (ro *reportOps) afterData() func(*gateway.Txn, error) {
	if ro == nil || !ro.cfg.DMARC.Enabled {
		return nil
	}
	return func(t *gateway.Txn, refusal error) {
		if pub, row, ok := dmarcRow(t, refusal); ok {
			ro.store.RecordDMARC(pub, row)
		}
	}
}

// chainAfterData calls each non-nil hook in turn.
func chainAfterData(fns ...func(*gateway.Txn, error)) func(*gateway.Txn, error) {
	var set []func(*gateway.Txn, error)
	for _, f := range fns {
		if f != nil {
			set = append(set, f)
		}
	}
	switch len(set) {
	case 0:
		return nil
	case 1:
		return set[0]
	}
	return func(t *gateway.Txn, err error) {
		for _, f := range set {
			f(t, err)
		}
	}
}

// dmarcRow is what a message contributes to its From domain's DMARC
// report: only a DMARC evaluation with a record (pass or fail), of
// inbound mail, that was decided (a temporary refusal comes again and
// is counted then), and that is not itself a report (reports are never
// answered, not even in a count).
func dmarcRow(t *gateway.Txn, refusal error) (dmarcrpt.Published, dmarcrpt.Row, bool) {
	d := t.Facts.DMARC
	if t.May() || d.Published == nil || (d.Result != policy.ResultPass && d.Result != policy.ResultFail) {
		return dmarcrpt.Published{}, dmarcrpt.Row{}, false
	}
	if IsReport(t.Facts.Message) {
		return dmarcrpt.Published{}, dmarcrpt.Row{}, false
	}
	disp := "none"
	switch {
	case refusal != nil && t.Verdict.Action == rules.Reject:
		disp = "reject"
	case refusal != nil:
		return dmarcrpt.Published{}, dmarcrpt.Row{}, false // tempfail, greylist: it comes again
	case t.Quarantine != "" || t.Junk:
		disp = "quarantine"
	}
	row := dmarcrpt.Row{
		SourceIP:    t.Facts.Conn.IP.String(),
		Disposition: disp,
		DKIM:        passFail(d.DKIMAligned),
		SPF:         passFail(d.SPFAligned),
		HeaderFrom:  d.Domain,
	}
	// RFC 7489 §7.2.1.1 PolicyOverrideType: why what was done is less
	// than the policy asked.
	if d.Result == policy.ResultFail && rank(disp) < rank(d.Published.P) {
		if !d.Sampled {
			row.Reason = "sampled_out"
		} else {
			row.Reason = "local_policy"
		}
	}
	for _, s := range t.Facts.DKIM.Signatures {
		if len(row.DKIMAuth) >= 8 {
			break
		}
		row.DKIMAuth = append(row.DKIMAuth, dmarcrpt.DKIMResult{Domain: strings.ToLower(s.Domain), Selector: s.Selector, Result: dkimResult(s.Result)})
	}
	if spf := t.Facts.SPF; spf.Result != "" {
		scope := "mfrom"
		if spf.Identity == "helo" {
			scope = "helo"
		}
		row.SPFAuth = []dmarcrpt.SPFResult{{Domain: strings.ToLower(spf.Domain), Scope: scope, Result: string(spf.Result)}}
	}
	p := d.Published
	pub := dmarcrpt.Published{Domain: p.Domain, ADKIM: p.ADKIM, ASPF: p.ASPF, P: p.P, SP: p.SP, Pct: p.Pct, RUA: p.RUA, RI: p.RI}
	return pub, row, true
}

func passFail(b bool) string {
	if b {
		return "pass"
	}
	return "fail"
}

func rank(disp string) int {
	switch disp {
	case "reject":
		return 2
	case "quarantine":
		return 1
	}
	return 0
}

// dkimResult maps a DKIM result to the report schema's DKIMResultType.
func dkimResult(r policy.Result) string {
	switch r {
	case policy.ResultPass, policy.ResultFail, policy.ResultPolicy, policy.ResultNeutral,
		policy.ResultTempError, policy.ResultPermError, policy.ResultNone:
		return string(r)
	}
	return "neutral"
}

// IsReport tells a message that is itself a DMARC or TLS report (RFC
// 7489 §7.2.1.1 and RFC 8460 §5.3 subjects, the TLS-Report-Domain
// field, a tlsrpt report type): such mail is not counted, so that no
// report is ever made because a report arrived.
func IsReport(m *content.Message) bool {
	if m == nil {
		return false
	}
	if m.HasHeader("TLS-Report-Domain") {
		return true
	}
	ct := strings.ToLower(m.Header("Content-Type"))
	if strings.Contains(ct, "tlsrpt") {
		return true
	}
	return strings.HasPrefix(strings.ToLower(strings.TrimSpace(m.Subject())), "report domain:")
}

// reportCommand is `moat dmarc report` or `moat tlsrpt report`.
func reportCommand(kind string) *cobra.Command {
	var cfgPath, day string
	var dryRun bool
	short := map[string]string{"dmarc": "DMARC aggregate reports (RFC 7489)", "tlsrpt": "SMTP TLS reports (RFC 8460)"}[kind]
	cmd := &cobra.Command{Use: kind, Short: short, Args: cobra.NoArgs}
	rep := &cobra.Command{
		Use:   "report --dry-run",
		Short: "Show the reports the daily run would send",
		Long: `Build the reports of the recorded days (or of --day) and print, for each,
the recipient, the message size and the decoded report. Nothing is sent and
nothing is deleted: the running server sends the reports every day at
reports.hour (UTC). The command reads data_dir/reports.db, which the server
opens only for a moment every minute.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if !dryRun {
				return fmt.Errorf("only --dry-run is supported: the running server sends the reports at reports.hour (UTC)")
			}
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			return previewReports(c.Context(), cfg, kind, day, c.OutOrStdout())
		},
	}
	rep.Flags().StringVar(&cfgPath, "config", "", "configuration file (YAML)")
	rep.Flags().StringVar(&day, "day", "", "the UTC day to report, YYYY-MM-DD (default: every complete day recorded)")
	rep.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be sent; send nothing")
	cmd.AddCommand(rep)
	return cmd
}

// previewReports prints what the daily run would send of kind.
func previewReports(ctx context.Context, cfg *Config, kind, day string, w io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if day != "" {
		if _, err := time.Parse("2006-01-02", day); err != nil {
			return fmt.Errorf("--day: %q is not YYYY-MM-DD", day)
		}
	}
	res, err := dnsres.New(cfg.DNS)
	if err != nil {
		return err
	}
	var signer *dkimsign.Signer
	if len(cfg.DKIM.Sign) > 0 {
		if signer, err = dkimsign.NewSigner(cfg.DKIM.Sign); err != nil {
			return err
		}
	}
	store := reports.Open(filepath.Join(cfg.DataDir, "reports.db"), nil)
	opt := reportOptions(cfg, store, signer, res, zap.NewNop(), reports.Options{})
	opt.DMARC, opt.TLS = kind == "dmarc", kind == "tlsrpt"
	out, err := reports.New(opt).Send(ctx, reports.SendOptions{DryRun: true, Out: w, Day: day})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%d report(s) would be sent, %d destination(s) skipped, %d domain(s) kept for a DNS retry\n", out.Sent, out.Skipped, out.Kept)
	return nil
}
