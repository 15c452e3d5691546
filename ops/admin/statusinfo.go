package admin

import (
	"net/http"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"moat/relay/spool"
)

// What the status page shows beyond the counters, and GET /api/status,
// the same facts as JSON for scripts and monitoring: the version, how long
// the daemon has run, its listeners, when its certificates expire, the
// last refusals with their reason, and the deferred recipients grouped by
// destination and error text.

// Status page limits.
const (
	// CertWarnDays: a certificate with fewer days left is shown as a
	// warning.
	CertWarnDays = 14
	// maxDeferralScan bounds the messages read to group the deferrals;
	// maxDeferralGroups bounds the groups kept while reading them.
	maxDeferralScan   = 10000
	maxDeferralGroups = 1000
	// maxDeferralError bounds one group's error text.
	maxDeferralError = 200
)

// ListenerInfo describes one SMTP listener (the daemon's listeners:
// configuration).
type ListenerInfo struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Mode    string `json:"mode"` // mx, submission
	TLS     string `json:"tls"`  // none, starttls, implicit
}

// CertStatus is one certificate's expiry as of the page.
type CertStatus struct {
	Name     string    `json:"name"`
	Subject  string    `json:"subject,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
	DaysLeft int       `json:"days_left"`
	// State is "ok", "warn" (fewer than CertWarnDays days left),
	// "expired" or "missing" (nothing loaded).
	State string `json:"state"`
}

// RefusalStatus is one recent refusal.
type RefusalStatus struct {
	Time   time.Time `json:"time"`
	Stage  string    `json:"stage"`
	Reason string    `json:"reason"`
	Kind   string    `json:"kind"` // reject, tempfail
	Client string    `json:"client,omitempty"`
}

// DeferralGroup counts the pending recipients that failed at one
// destination with one error text.
type DeferralGroup struct {
	Destination string `json:"destination"` // the domain for mx, else "route NAME" or "local"
	Error       string `json:"error"`
	Recipients  int    `json:"recipients"`
	Messages    int    `json:"messages"`
}

// Deferrals is the top groups of deferred recipients.
type Deferrals struct {
	// Groups are the largest groups, most recipients first, at most the
	// page's top N.
	Groups []DeferralGroup `json:"groups"`
	// Recipients deferred in the messages read; Scanned messages read;
	// Partial: the queue held more than were read.
	Recipients int  `json:"recipients"`
	Scanned    int  `json:"scanned"`
	Partial    bool `json:"partial,omitempty"`
}

// QueueStatus is the queue's count.
type QueueStatus struct {
	Messages      int   `json:"messages"`
	Active        int   `json:"active"`
	Deferred      int   `json:"deferred"`
	Held          int   `json:"held"`
	Recipients    int   `json:"recipients"`
	OldestSeconds int64 `json:"oldest_seconds"`
}

// Status is the answer of GET /api/status.
type Status struct {
	Version       string          `json:"version"`
	Now           time.Time       `json:"now"`
	Started       time.Time       `json:"started,omitzero"`
	UptimeSeconds int64           `json:"uptime_seconds"`
	Listeners     []ListenerInfo  `json:"listeners"`
	Certificates  []CertStatus    `json:"certificates"`
	Queue         *QueueStatus    `json:"queue,omitempty"`
	Quarantined   *int            `json:"quarantined,omitempty"`
	Refusals      []RefusalStatus `json:"refusals"`
	Deferrals     *Deferrals      `json:"deferrals,omitempty"`
}

// info fills what the page and the API share about the daemon itself.
func (s *Server) info(now time.Time) Status {
	st := Status{Version: s.opt.Version, Now: now.UTC(), Listeners: s.opt.Listeners, Certificates: []CertStatus{}, Refusals: []RefusalStatus{}}
	if st.Listeners == nil {
		st.Listeners = []ListenerInfo{}
	}
	if !s.opt.Started.IsZero() {
		st.Started = s.opt.Started.UTC()
		st.UptimeSeconds = int64(now.Sub(s.opt.Started) / time.Second)
	}
	if s.opt.Metrics != nil {
		for _, c := range s.opt.Metrics.Certificates() {
			st.Certificates = append(st.Certificates, certStatus(c.Name, c.Subject, c.NotAfter, now))
		}
	}
	return st
}

func certStatus(name, subject string, notAfter, now time.Time) CertStatus {
	c := CertStatus{Name: name, Subject: subject, NotAfter: notAfter.UTC()}
	left := notAfter.Sub(now)
	c.DaysLeft = int(left / (24 * time.Hour))
	switch {
	case notAfter.IsZero():
		c.State, c.DaysLeft, c.NotAfter = "missing", 0, time.Time{}
	case left <= 0:
		c.State = "expired"
	case left < CertWarnDays*24*time.Hour:
		c.State = "warn"
	default:
		c.State = "ok"
	}
	return c
}

// groupDeferrals groups the pending recipients of envs that have an
// error by destination and error, reading at most maxDeferralScan
// messages, and returns the top n groups.
func groupDeferrals(envs []*spool.Envelope, n int) *Deferrals {
	type key struct{ dest, err string }
	type count struct{ rcpts, msgs int }
	d := &Deferrals{Groups: []DeferralGroup{}}
	groups := map[key]*count{}
	for i, env := range envs {
		if i == maxDeferralScan {
			d.Partial = true
			break
		}
		d.Scanned++
		seen := map[key]bool{}
		for _, r := range env.Recipients {
			if r.Status != spool.StatusPending || r.LastError == "" {
				continue
			}
			d.Recipients++
			k := key{deferralDestination(r.Route, r.Address), deferralError(r.LastError)}
			c := groups[k]
			if c == nil {
				if len(groups) >= maxDeferralGroups {
					continue // counted in Recipients, in no group
				}
				c = &count{}
				groups[k] = c
			}
			c.rcpts++
			if !seen[k] {
				seen[k] = true
				c.msgs++
			}
		}
	}
	for k, c := range groups {
		d.Groups = append(d.Groups, DeferralGroup{Destination: k.dest, Error: k.err, Recipients: c.rcpts, Messages: c.msgs})
	}
	sort.Slice(d.Groups, func(i, j int) bool {
		a, b := d.Groups[i], d.Groups[j]
		if a.Recipients != b.Recipients {
			return a.Recipients > b.Recipients
		}
		if a.Destination != b.Destination {
			return a.Destination < b.Destination
		}
		return a.Error < b.Error
	})
	if len(d.Groups) > n {
		d.Groups = d.Groups[:n]
	}
	return d
}

// deferralDestination names where a recipient goes: its domain on the
// mx route, else the route.
func deferralDestination(route, addr string) string {
	switch route {
	case "mx", "":
		if i := strings.LastIndexByte(addr, '@'); i >= 0 {
			return strings.ToLower(addr[i+1:])
		}
		return addr
	case "local":
		return "local"
	}
	return "route " + route
}

// deferralError is an error text cut to maxDeferralError bytes of valid
// UTF-8.
func deferralError(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= maxDeferralError {
		return s
	}
	s = s[:maxDeferralError]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// deferrals reads the queue's deferrals; nil when there is no queue or it
// cannot be listed (logged).
func (s *Server) deferrals() *Deferrals {
	if s.opt.Queue == nil {
		return nil
	}
	// one more than groupDeferrals reads, so that it can say partial
	envs, err := s.opt.Queue.Sample(maxDeferralScan + 1)
	if err != nil {
		s.log.Warn("status: queue not listed", zap.Error(err))
		return nil
	}
	return groupDeferrals(envs, statusTopN)
}

// apiStatus serves GET /api/status.
func (s *Server) apiStatus(w http.ResponseWriter, _ *http.Request) {
	now := time.Now()
	st := s.info(now)
	if s.opt.Queue != nil {
		q := s.opt.Queue.Stats()
		st.Queue = &QueueStatus{Messages: q.Messages, Active: q.Active, Deferred: q.Deferred, Held: q.Held,
			Recipients: q.Recipients, OldestSeconds: int64(q.Oldest / time.Second)}
	}
	if s.opt.Quarantine != nil {
		if n, err := s.opt.Quarantine.Len(); err == nil {
			st.Quarantined = &n
		}
	}
	if s.opt.Metrics != nil {
		for _, r := range s.opt.Metrics.Snapshot(statusTopN).Refusals {
			st.Refusals = append(st.Refusals, RefusalStatus{Time: r.Time.UTC(), Stage: r.Stage, Reason: r.Reason, Kind: r.Kind, Client: r.Client})
		}
	}
	st.Deferrals = s.deferrals()
	writeJSON(w, st)
}
