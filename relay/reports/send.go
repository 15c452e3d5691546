package reports

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"time"

	"go.uber.org/zap"

	"moat/internal/dnsres"
	"moat/relay/dmarcrpt"
	"moat/relay/spool"
	"moat/relay/tlsrpt"
)

// Spool is where reports are put for delivery (relay/spool.Spool).
type Spool interface {
	NewID() string
	Put(ctx context.Context, env *spool.Envelope, msg io.Reader) error
}

// Options configure a Reporter.
type Options struct {
	Store    *Store
	Resolver dnsres.Resolver
	// From is the reporter address (the envelope sender and From:).
	From    string
	OrgName string
	Contact string // extra contact information (address or URI)
	// DMARC and TLS say which reports are made.
	DMARC, TLS bool
	// Hour is the UTC hour from which the day's run may start.
	Hour int
	// Spool and Notify put a report into the queue; RouteFor names the
	// route of a recipient (nil: "mx").
	Spool    Spool
	Notify   func(id string)
	RouteFor func(rcpt string) string
	// Sign returns a DKIM-Signature header field for msg signed by
	// domain; ok false when there is no key for it (nil: unsigned).
	Sign   func(domain string, msg []byte) (header string, ok bool, err error)
	Logger *zap.Logger
	Now    func() time.Time
	// Timeout bounds each DNS lookup (default 20s).
	Timeout time.Duration
	// Observe, when set, is told each outcome by kind ("dmarc",
	// "tlsrpt"): "sent", "skipped" or "kept" (metrics).
	Observe func(kind, outcome string)
	// Tick is how often Run merges the counts and looks at the clock
	// (default a minute).
	Tick time.Duration
}

// Reporter builds and sends the reports.
type Reporter struct {
	opt       Options
	submitter string
	lastRun   string    // the day of the last completed run
	retryAt   time.Time // after a DNS failure kept some days
}

// New returns a reporter; it does nothing until Run or Send.
func New(opt Options) *Reporter {
	if opt.Logger == nil {
		opt.Logger = zap.NewNop()
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 20 * time.Second
	}
	if opt.Observe == nil {
		opt.Observe = func(string, string) {}
	}
	if opt.Tick <= 0 {
		opt.Tick = time.Minute
	}
	_, dom, _ := strings.Cut(opt.From, "@")
	return &Reporter{opt: opt, submitter: strings.ToLower(dom)}
}

// Run merges the counts every minute and, once a day from Hour UTC,
// sends the reports of the days before (again an hour later while a DNS
// failure keeps some); it returns when ctx ends, after a last merge.
func (r *Reporter) Run(ctx context.Context) {
	t := time.NewTicker(r.opt.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := r.opt.Store.Flush(); err != nil {
				r.opt.Logger.Warn("report counts not saved", zap.Error(err))
			}
			return
		case <-t.C:
		}
		if err := r.opt.Store.Flush(); err != nil {
			r.opt.Logger.Warn("report counts not saved", zap.Error(err))
		}
		now := r.opt.Now().UTC()
		if now.Hour() < r.opt.Hour || r.lastRun == Day(now) || now.Before(r.retryAt) {
			continue
		}
		out, err := r.Send(ctx, SendOptions{})
		if err != nil {
			r.opt.Logger.Warn("reports not sent", zap.Error(err))
		}
		if err != nil || out.Kept > 0 {
			// A DNS failure kept some days: try again in an hour.
			r.retryAt = now.Add(time.Hour)
			continue
		}
		r.lastRun = Day(now)
	}
}

// SendOptions say what Send does.
type SendOptions struct {
	// DryRun builds the reports and tells Out what would be sent;
	// nothing is queued or deleted.
	DryRun bool
	Out    io.Writer
	// Day, when set (YYYY-MM-DD), is the only day reported; otherwise
	// every complete day (before today, UTC).
	Day string
}

// Outcome is what one report run did.
type Outcome struct {
	Sent, Skipped, Kept int
}

// Send builds the reports of the stored days and queues them (or, with
// DryRun, describes them). A day's entry is deleted once its reports
// are queued or cannot be sent; one that met a DNS temporary failure is
// kept for the next run; entries older than maxAgeDays are dropped.
func (r *Reporter) Send(ctx context.Context, so SendOptions) (Outcome, error) {
	var out Outcome
	if err := r.opt.Store.Flush(); err != nil {
		return out, err
	}
	today := Day(r.opt.Now())
	oldest := Day(r.opt.Now().AddDate(0, 0, -maxAgeDays))
	snap, err := r.opt.Store.Read(func(day string) bool {
		if so.Day != "" {
			return day == so.Day
		}
		return day < today
	})
	if err != nil {
		return out, err
	}
	var doneD, doneT []string
	if r.opt.DMARC {
		for _, k := range Keys(snap.DMARC) {
			keep := r.sendDMARC(ctx, k, snap.DMARC[k], so, &out)
			if !keep || dayOf(k) < oldest {
				doneD = append(doneD, k)
			}
		}
	}
	if r.opt.TLS {
		for _, k := range Keys(snap.TLS) {
			keep := r.sendTLS(ctx, k, snap.TLS[k], so, &out)
			if !keep || dayOf(k) < oldest {
				doneT = append(doneT, k)
			}
		}
	}
	if so.DryRun {
		return out, nil
	}
	return out, r.opt.Store.Delete(doneD, doneT)
}

func dayOf(k string) string { d, _ := splitKey(k); return d }

// dayRange is the report period of day: its first and last second, UTC.
func dayRange(day string) (time.Time, time.Time, error) {
	b, err := time.Parse("2006-01-02", day)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	return b, b.Add(24*time.Hour - time.Second), nil
}

func (r *Reporter) reportID(day, domain string) string {
	var b [6]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s.%s.%s@%s", strings.ReplaceAll(day, "-", ""), domain, hex.EncodeToString(b[:]), r.submitter)
}

// sendDMARC sends one domain's day; it reports whether to keep the
// entry (a DNS temporary failure).
func (r *Reporter) sendDMARC(ctx context.Context, k string, e *DMARCEntry, so SendOptions, out *Outcome) (keep bool) {
	day, domain := splitKey(k)
	log := r.opt.Logger.With(zap.String("report", "dmarc"), zap.String("domain", domain), zap.String("day", day))
	begin, end, err := dayRange(day)
	if err != nil || len(e.Rows) == 0 {
		return false
	}
	rows := make([]dmarcrpt.Counted, 0, len(e.Rows))
	for _, c := range e.Rows {
		rows = append(rows, *c)
	}
	id := r.reportID(day, domain)
	xmlDoc, err := dmarcrpt.Build(dmarcrpt.Meta{OrgName: r.opt.OrgName, Email: r.opt.From, Contact: r.opt.Contact,
		ReportID: id, Begin: begin, End: end}, e.Published, rows)
	if err != nil {
		log.Warn("DMARC report not built", zap.Error(err))
		return false
	}
	gz, err := gzipBytes(xmlDoc)
	if err != nil {
		return false
	}
	var dests []dmarcrpt.Destination
	for _, u := range e.Published.RUA {
		d, err := dmarcrpt.ParseURI(u)
		if err != nil {
			log.Info("DMARC rua skipped", zap.String("rua", u), zap.Error(err))
			continue
		}
		if dmarcrpt.External(domain, d.Domain) {
			// RFC 7489 §7.1: an outside destination must agree.
			lctx, cancel := context.WithTimeout(ctx, r.opt.Timeout)
			ok, err := dmarcrpt.Authorized(lctx, r.opt.Resolver, domain, d.Domain)
			cancel()
			if err != nil {
				log.Warn("DMARC report kept: external destination not checked", zap.String("rua", d.Address), zap.Error(err))
				out.Kept++
				r.opt.Observe("dmarc", "kept")
				return true
			}
			if !ok {
				log.Info("DMARC rua skipped: external destination not authorised (RFC 7489 7.1)",
					zap.String("rua", d.Address), zap.String("record", domain+"._report._dmarc."+d.Domain))
				out.Skipped++
				r.opt.Observe("dmarc", "skipped")
				continue
			}
		}
		dests = append(dests, d)
	}
	if len(dests) == 0 {
		if len(e.Published.RUA) == 0 {
			log.Debug("no rua: no DMARC report")
		}
		return false
	}
	for _, d := range dests {
		msg, err := r.composeDMARC(domain, d.Address, id, begin, end, gz)
		if err != nil {
			log.Warn("DMARC report not built", zap.Error(err))
			continue
		}
		if d.MaxSize > 0 && int64(len(msg)) > d.MaxSize {
			// RFC 7489 §6.2: not sent over the destination's limit.
			log.Info("DMARC rua skipped: report over its size limit", zap.String("rua", d.Address),
				zap.Int("size", len(msg)), zap.Int64("limit", d.MaxSize))
			out.Skipped++
			r.opt.Observe("dmarc", "skipped")
			continue
		}
		r.deliver(ctx, so, log, "dmarc", domain, d.Address, msg, xmlDoc, len(gz), out)
	}
	return false
}

// sendTLS sends one policy domain's day of TLS results.
func (r *Reporter) sendTLS(ctx context.Context, k string, e *TLSEntry, so SendOptions, out *Outcome) (keep bool) {
	day, domain := splitKey(k)
	log := r.opt.Logger.With(zap.String("report", "tlsrpt"), zap.String("domain", domain), zap.String("day", day))
	begin, end, err := dayRange(day)
	if err != nil || len(e.Policies) == 0 {
		return false
	}
	lctx, cancel := context.WithTimeout(ctx, r.opt.Timeout)
	rec, err := tlsrpt.Lookup(lctx, r.opt.Resolver, domain)
	cancel()
	switch {
	case errors.Is(err, tlsrpt.ErrNoRecord):
		log.Debug("no TLSRPT record: no report", zap.Error(err))
		return false
	case err != nil:
		log.Warn("TLS report kept: _smtp._tls not looked up", zap.Error(err))
		out.Kept++
		r.opt.Observe("tlsrpt", "kept")
		return true
	}
	aggs := make([]*tlsrpt.Aggregate, 0, len(e.Policies))
	for _, pk := range Keys(e.Policies) {
		aggs = append(aggs, e.Policies[pk])
	}
	id := r.reportID(day, domain)
	doc, err := tlsrpt.Build(tlsrpt.Meta{OrgName: r.opt.OrgName, Contact: r.contact(), ReportID: id, Begin: begin, End: end}, domain, aggs)
	if err != nil {
		return false
	}
	gz, err := gzipBytes(doc)
	if err != nil {
		return false
	}
	for _, u := range rec.RUA {
		scheme, addr, _ := strings.Cut(u, ":")
		if !strings.EqualFold(scheme, "mailto") {
			// RFC 8460 §3: https is optional; only mailto is sent.
			log.Info("TLS rua skipped: only mailto: is sent", zap.String("rua", u))
			out.Skipped++
			r.opt.Observe("tlsrpt", "skipped")
			continue
		}
		d, err := dmarcrpt.ParseURI("mailto:" + addr)
		if err != nil {
			log.Info("TLS rua skipped", zap.String("rua", u), zap.Error(err))
			out.Skipped++
			r.opt.Observe("tlsrpt", "skipped")
			continue
		}
		msg, err := r.composeTLS(domain, d.Address, id, begin, end, gz)
		if err != nil {
			continue
		}
		r.deliver(ctx, so, log, "tlsrpt", domain, d.Address, msg, doc, len(gz), out)
	}
	return false
}

func (r *Reporter) contact() string {
	if r.opt.Contact != "" {
		return r.opt.Contact
	}
	return r.opt.From
}

// deliver queues msg for rcpt, or describes it on a dry run.
func (r *Reporter) deliver(ctx context.Context, so SendOptions, log *zap.Logger, kind, domain, rcpt string, msg, doc []byte, gzSize int, out *Outcome) {
	if so.DryRun {
		if so.Out != nil {
			fmt.Fprintf(so.Out, "=== %s report for %s\nfrom: %s\nto: %s\nmessage size: %d bytes (attachment %d bytes gzip, %d bytes decoded)\n%s\n",
				kind, domain, r.opt.From, rcpt, len(msg), gzSize, len(doc), doc)
		}
		out.Sent++
		return
	}
	route := "mx"
	if r.opt.RouteFor != nil {
		route = r.opt.RouteFor(rcpt)
	}
	env := &spool.Envelope{
		ID:         r.opt.Spool.NewID(),
		Sender:     r.opt.From, // never <> (RFC 7489 §7.2.1.1)
		Recipients: []spool.Recipient{{Address: rcpt, Route: route, Status: spool.StatusPending}},
		Received:   r.opt.Now(),
		Size:       int64(len(msg)),
		Protocol:   "LOCAL",
		// Made by moat: a bounce of a report comes back to From.
		SenderCheck: spool.SenderLocal,
	}
	if err := r.opt.Spool.Put(ctx, env, bytes.NewReader(msg)); err != nil {
		log.Warn("report not queued", zap.String("rcpt", rcpt), zap.Error(err))
		return
	}
	if r.opt.Notify != nil {
		r.opt.Notify(env.ID)
	}
	log.Info("report queued", zap.String("rcpt", rcpt), zap.String("queue_id", env.ID), zap.Int("size", len(msg)))
	out.Sent++
	r.opt.Observe(kind, "sent")
}

func gzipBytes(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// part is one MIME body part.
type part struct {
	header string // without the blank line
	body   []byte
}

func (r *Reporter) composeDMARC(domain, rcpt, id string, begin, end time.Time, gz []byte) ([]byte, error) {
	name := dmarcrpt.FileName(r.submitter, domain, begin, end)
	text := fmt.Sprintf("This is a DMARC aggregate report (RFC 7489) for %s, from %s to %s (UTC),\r\n"+
		"sent by %s. Report-ID: %s\r\n", domain, begin.Format(time.RFC3339), end.Format(time.RFC3339), r.submitter, id)
	return r.compose(rcpt, dmarcrpt.Subject(domain, r.submitter, id), id, "multipart/mixed", nil, []part{
		{header: "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit", body: []byte(text)},
		{header: "Content-Type: application/gzip; name=\"" + name + "\"\r\nContent-Transfer-Encoding: base64\r\n" +
			"Content-Disposition: attachment; filename=\"" + name + "\"", body: b64(gz)},
	})
}

func (r *Reporter) composeTLS(domain, rcpt, id string, begin, end time.Time, gz []byte) ([]byte, error) {
	name := tlsrpt.FileName(r.submitter, domain, begin, end)
	text := fmt.Sprintf("This is an aggregate TLS report (RFC 8460) for %s, from %s to %s (UTC),\r\n"+
		"sent by %s. Report-ID: %s\r\n", domain, begin.Format(time.RFC3339), end.Format(time.RFC3339), r.submitter, id)
	// RFC 8460 §5.3: TLS-Report-Domain and TLS-Report-Submitter, and a
	// multipart/report of report-type "tlsrpt".
	extra := []string{"TLS-Report-Domain: " + domain, "TLS-Report-Submitter: " + r.submitter}
	return r.compose(rcpt, tlsrpt.Subject(domain, r.submitter, id), id, "multipart/report; report-type=\"tlsrpt\"", extra, []part{
		{header: "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit", body: []byte(text)},
		{header: "Content-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n" +
			"Content-Disposition: attachment; filename=\"" + name + "\"", body: b64(gz)},
	})
}

// compose writes the message and signs it.
func (r *Reporter) compose(rcpt, subject, id, ctype string, extra []string, parts []part) ([]byte, error) {
	var rb [12]byte
	rand.Read(rb[:])
	boundary := "=_moat_" + hex.EncodeToString(rb[:])
	var b bytes.Buffer
	h := []string{
		"From: " + r.opt.From,
		"To: " + rcpt,
		"Date: " + r.opt.Now().Format(time.RFC1123Z),
		"Subject: " + mime.QEncoding.Encode("us-ascii", subject),
		"Message-ID: <" + id + ">",
		"MIME-Version: 1.0",
	}
	h = append(h, extra...)
	h = append(h, "Content-Type: "+ctype+"; boundary=\""+boundary+"\"")
	for _, l := range h {
		b.WriteString(fold(l))
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	for _, p := range parts {
		b.WriteString("--" + boundary + "\r\n" + p.header + "\r\n\r\n")
		b.Write(p.body)
		b.WriteString("\r\n")
	}
	b.WriteString("--" + boundary + "--\r\n")
	msg := b.Bytes()
	if r.opt.Sign == nil {
		return msg, nil
	}
	sig, ok, err := r.opt.Sign(r.submitter, msg)
	if err != nil {
		return nil, fmt.Errorf("DKIM signing: %w", err)
	}
	if !ok {
		return msg, nil
	}
	return append([]byte(sig), msg...), nil
}

// fold breaks a long header line at spaces (RFC 5322 §2.2.3) so that
// lines stay under 78 octets where they can.
func fold(l string) string {
	if len(l) <= 78 {
		return l
	}
	var b strings.Builder
	line := 0
	for i, w := range strings.Split(l, " ") {
		if i > 0 {
			if line+1+len(w) > 78 {
				b.WriteString("\r\n ")
				line = 1
			} else {
				b.WriteByte(' ')
				line++
			}
		}
		b.WriteString(w)
		line += len(w)
	}
	return b.String()
}

// b64 is base64 in lines of 76 characters (RFC 2045 §6.8).
func b64(data []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(data)
	var b bytes.Buffer
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
	return b.Bytes()
}
