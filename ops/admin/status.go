package admin

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"moat/ops/metrics"
	"moat/relay/queue"
)

// Chart geometry (SVG user units).
const (
	chartBarW  = 10
	chartGap   = 2
	chartH     = 160
	chartTop   = 20
	chartLeft  = 40
	chartWidth = chartLeft + 60*(chartBarW+chartGap) + 10
	chartFullH = chartTop + chartH + 30
	statusTopN = 20
)

var verdictColors = map[string]string{
	metrics.VerdictAccepted:    "#3a7d44",
	metrics.VerdictRejected:    "#c0392b",
	metrics.VerdictTempfailed:  "#e67e22",
	metrics.VerdictGreylisted:  "#7f8c8d",
	metrics.VerdictDiscarded:   "#8e44ad",
	metrics.VerdictQuarantined: "#2c3e50",
}

type rect struct {
	X, Y, W, H int
	Color      string
}

type bar struct {
	Rects []rect
	Title string
}

type legend struct {
	X     int
	Name  string
	Color string
}

type chart struct {
	W, H, Left, Top, Bottom int
	Bars                    []bar
	Legend                  []legend
	Max                     uint64
	Total                   uint64
	StartLabel, EndLabel    string
	EndX                    int
}

type queueRow struct {
	State string
	N     int
}

type page struct {
	Now        string
	HasQueue   bool
	Queue      []queueRow
	Oldest     string
	Recipients int
	// HasQuarantine and Quarantined: the number of quarantined messages.
	HasQuarantine bool
	Quarantined   int
	Chart         chart
	TopClients    []metrics.Count
	TopRules      []metrics.Count
	Deliveries    []deliveryRow
	// TopAuthFailures and Refusals: issue 24 item 9.
	TopAuthFailures []metrics.Count
	Refusals        []refusalRow
	// Issue 24 item 12 (statusinfo.go): the daemon, its listeners and
	// certificates, the deferrals by destination and error.
	Info      Status
	Uptime    string
	Deferrals *Deferrals
}

type refusalRow struct {
	Time, Stage, Reason, Kind, Client string
}

type deliveryRow struct {
	Time, QueueID, Recipient, Route, Result, Error string
}

func buildChart(mins []metrics.Minute) chart {
	c := chart{W: chartWidth, H: chartFullH, Left: chartLeft, Top: chartTop, Bottom: chartTop + chartH}
	for _, m := range mins {
		c.Max = max(c.Max, m.Total)
		c.Total += m.Total
	}
	scale := c.Max
	if scale == 0 {
		scale = 1
	}
	for i, m := range mins {
		x := chartLeft + i*(chartBarW+chartGap)
		y := c.Bottom
		b := bar{}
		var parts []string
		for _, v := range metrics.Verdicts() {
			n := m.Counts[v]
			if n == 0 {
				continue
			}
			h := int(n * chartH / scale)
			if h == 0 {
				h = 1
			}
			y -= h
			b.Rects = append(b.Rects, rect{X: x, Y: y, W: chartBarW, H: h, Color: verdictColors[v]})
			parts = append(parts, fmt.Sprintf("%s %d", v, n))
		}
		if len(parts) == 0 {
			parts = append(parts, "no messages")
		}
		b.Title = m.Start.UTC().Format("15:04") + " UTC: " + strings.Join(parts, ", ")
		c.Bars = append(c.Bars, b)
	}
	for i, v := range metrics.Verdicts() {
		c.Legend = append(c.Legend, legend{X: chartLeft + i*110, Name: v, Color: verdictColors[v]})
	}
	if len(mins) > 0 {
		c.StartLabel = mins[0].Start.UTC().Format("15:04")
		c.EndLabel = mins[len(mins)-1].Start.UTC().Format("15:04") + " UTC"
	}
	c.EndX = chartLeft + 60*(chartBarW+chartGap) - 60
	return c
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	p := page{Now: now.UTC().Format(time.RFC3339), Info: s.info(now), Deferrals: s.deferrals()}
	if p.Info.UptimeSeconds > 0 {
		p.Uptime = ShortDuration(time.Duration(p.Info.UptimeSeconds) * time.Second)
	}
	var stats queue.Stats
	if s.opt.Queue != nil {
		stats, p.HasQueue = s.opt.Queue.Stats(), true
	}
	var snap metrics.Snapshot
	if s.opt.Metrics != nil {
		snap = s.opt.Metrics.Snapshot(statusTopN)
		if !p.HasQueue && snap.HasQueue {
			stats, p.HasQueue = snap.Queue, true
		}
	}
	if p.HasQueue {
		p.Queue = []queueRow{
			{"total", stats.Messages}, {"active", stats.Active}, {"deferred", stats.Deferred},
			{"held", stats.Held}, {"waiting", max(0, stats.Messages-stats.Active-stats.Deferred-stats.Held)},
		}
		p.Oldest = stats.Oldest.Truncate(time.Second).String()
		p.Recipients = stats.Recipients
	}
	if s.opt.Quarantine != nil {
		// a count, no listing, per page view (the page reloads every
		// 30 s); a failure only hides it
		if n, err := s.opt.Quarantine.Len(); err == nil {
			p.HasQuarantine, p.Quarantined = true, n
		} else {
			s.log.Warn("status page: quarantine not listed", zap.Error(err))
		}
	}
	if snap.Minutes == nil {
		snap.Minutes = make([]metrics.Minute, 60)
		now := time.Now().UTC().Truncate(time.Minute)
		for i := range snap.Minutes {
			snap.Minutes[i].Start = now.Add(time.Duration(i-59) * time.Minute)
		}
	}
	p.Chart = buildChart(snap.Minutes)
	p.TopClients, p.TopRules = snap.TopClients, snap.TopRules
	p.TopAuthFailures = snap.TopAuthFailures
	for _, r := range snap.Refusals {
		p.Refusals = append(p.Refusals, refusalRow{
			Time: r.Time.UTC().Format("15:04:05"), Stage: r.Stage, Reason: r.Reason, Kind: r.Kind, Client: r.Client,
		})
	}
	for _, d := range snap.Deliveries {
		p.Deliveries = append(p.Deliveries, deliveryRow{
			Time: d.Time.UTC().Format("15:04:05"), QueueID: d.QueueID, Recipient: d.Recipient,
			Route: d.Route, Result: d.Result, Error: d.Error,
		})
	}
	var buf bytes.Buffer
	if err := statusTmpl.Execute(&buf, p); err != nil {
		s.log.Error("status page", zap.Error(err))
		http.Error(w, "500 internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	// No script, no external anything: only the inline style sheet.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	w.Write(buf.Bytes())
}

var statusTmpl = template.Must(template.New("status").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="30">
<title>moat status</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.2em .6em;text-align:left;font-size:.9em}
td.n{text-align:right}
.delivered{color:#3a7d44}.deferred{color:#e67e22}.bounced{color:#c0392b}
.err{max-width:40em;overflow-wrap:anywhere}
.warn{background:#fdebd0;color:#a04000}.expired,.missing{background:#f5b7b1;color:#922b21}
</style>
</head>
<body>
<h1>moat status</h1>
<p>As of {{.Now}}. This page reloads every 30 seconds.</p>
<p id="daemon">Version <span id="version">{{with .Info.Version}}{{.}}{{else}}unknown{{end}}</span>{{if .Uptime}}, up <span id="uptime">{{.Uptime}}</span> (since {{.Info.Started.Format "2006-01-02 15:04:05"}} UTC){{end}}.</p>

<h2>Listeners</h2>
<table id="listeners">
<tr><th>name</th><th>address</th><th>mode</th><th>TLS</th></tr>
{{range .Info.Listeners}}<tr><td>{{.Name}}</td><td>{{.Address}}</td><td>{{.Mode}}</td><td>{{.TLS}}</td></tr>
{{else}}<tr><td colspan="4">not known</td></tr>
{{end}}</table>

<h2>Certificates</h2>
<table id="certificates">
<tr><th>certificate</th><th>subject</th><th>expires (UTC)</th><th>days left</th></tr>
{{range .Info.Certificates}}<tr class="{{.State}}"><td>{{.Name}}</td><td>{{.Subject}}</td><td>{{if .NotAfter.IsZero}}not loaded{{else}}{{.NotAfter.Format "2006-01-02 15:04"}}{{end}}</td><td class="n">{{if eq .State "expired"}}expired{{else}}{{.DaysLeft}}{{end}}</td></tr>
{{else}}<tr><td colspan="4">no TLS certificate configured</td></tr>
{{end}}</table>

<h2>Queue</h2>
{{if .HasQueue}}
<table id="queue-states">
<tr><th>state</th><th>messages</th></tr>
{{range .Queue}}<tr><td>{{.State}}</td><td class="n">{{.N}}</td></tr>
{{end}}</table>
<p>Pending recipients: {{.Recipients}}. Oldest message: {{.Oldest}}.</p>
{{else}}<p>The queue is not available.</p>{{end}}

<h2>Deferred, by destination and error</h2>
{{with .Deferrals}}
<table id="deferrals">
<tr><th>destination</th><th>error</th><th>recipients</th><th>messages</th></tr>
{{range .Groups}}<tr><td>{{.Destination}}</td><td class="err">{{.Error}}</td><td class="n">{{.Recipients}}</td><td class="n">{{.Messages}}</td></tr>
{{else}}<tr><td colspan="4">nothing deferred</td></tr>
{{end}}</table>
<p>{{.Recipients}} deferred recipient(s) in {{.Scanned}} message(s){{if .Partial}} (a sample of {{.Scanned}} messages of a larger queue){{end}}.</p>
{{else}}<p>The queue is not available.</p>{{end}}

<h2>Quarantine</h2>
{{if .HasQuarantine}}<p id="quarantine-count">{{.Quarantined}} message(s) in quarantine (<code>moat quarantine list</code>).</p>
{{else}}<p>The quarantine is not available.</p>{{end}}

<h2>Verdicts per minute, last hour</h2>
{{with .Chart}}
<svg id="verdict-chart" xmlns="http://www.w3.org/2000/svg" width="{{.W}}" height="{{.H}}" viewBox="0 0 {{.W}} {{.H}}" role="img" aria-label="verdicts per minute over the last hour, {{.Total}} messages">
<line x1="{{.Left}}" y1="{{.Bottom}}" x2="{{.W}}" y2="{{.Bottom}}" stroke="#999"/>
<line x1="{{.Left}}" y1="{{.Top}}" x2="{{.Left}}" y2="{{.Bottom}}" stroke="#999"/>
<text x="2" y="{{.Top}}" font-size="11">{{.Max}}</text>
<text x="2" y="{{.Bottom}}" font-size="11">0</text>
{{range .Bars}}<g><title>{{.Title}}</title>{{range .Rects}}<rect x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}" fill="{{.Color}}"/>{{end}}</g>
{{end}}<text x="{{.Left}}" y="{{.H}}" font-size="11" dy="-16">{{.StartLabel}}</text>
<text x="{{.EndX}}" y="{{.H}}" font-size="11" dy="-16">{{.EndLabel}}</text>
{{range .Legend}}<rect x="{{.X}}" y="2" width="10" height="10" fill="{{.Color}}"/><text x="{{.X}}" y="11" dx="14" font-size="11">{{.Name}}</text>
{{end}}</svg>
<p>{{.Total}} messages in the last hour.</p>
{{end}}

<h2>Top rejected clients</h2>
<table id="top-clients">
<tr><th>client</th><th>rejections</th></tr>
{{range .TopClients}}<tr><td>{{.Key}}</td><td class="n">{{.Count}}</td></tr>
{{else}}<tr><td colspan="2">none yet</td></tr>
{{end}}</table>

<h2>Top AUTH failures</h2>
<table id="top-auth-failures">
<tr><th>client</th><th>failed AUTH</th></tr>
{{range .TopAuthFailures}}<tr><td>{{.Key}}</td><td class="n">{{.Count}}</td></tr>
{{else}}<tr><td colspan="2">none yet</td></tr>
{{end}}</table>

<h2>Recent refusals</h2>
<table id="recent-refusals">
<tr><th>time (UTC)</th><th>stage</th><th>reason</th><th>reply</th><th>client</th></tr>
{{range .Refusals}}<tr><td>{{.Time}}</td><td>{{.Stage}}</td><td>{{.Reason}}</td><td>{{.Kind}}</td><td>{{.Client}}</td></tr>
{{else}}<tr><td colspan="5">none yet</td></tr>
{{end}}</table>

<h2>Top deciding rules</h2>
<table id="top-rules">
<tr><th>rule</th><th>verdicts</th></tr>
{{range .TopRules}}<tr><td>{{.Key}}</td><td class="n">{{.Count}}</td></tr>
{{else}}<tr><td colspan="2">none yet</td></tr>
{{end}}</table>

<h2>Recent deliveries</h2>
<table id="recent-deliveries">
<tr><th>time (UTC)</th><th>queue id</th><th>recipient</th><th>route</th><th>status</th><th>error</th></tr>
{{range .Deliveries}}<tr><td>{{.Time}}</td><td>{{.QueueID}}</td><td>{{.Recipient}}</td><td>{{.Route}}</td><td class="{{.Result}}">{{.Result}}</td><td class="err">{{.Error}}</td></tr>
{{else}}<tr><td colspan="6">none yet</td></tr>
{{end}}</table>
</body>
</html>
`))

// ShortDuration renders a duration as its two largest units: 45s, 12m3s,
// 5h2m, 3d4h (a negative one as 0s): uptimes and message ages.
func ShortDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%dh", s/86400, s%86400/3600)
}
