package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"moat/internal/maillog"
)

// maxLogLine is the longest log line `moat rules explain` reads; longer
// lines (no line moat writes) are skipped.
const maxLogLine = 1 << 20

// incidentRE is the shape of an incident id (rules.NewIncidentID: 10
// base32 characters), loosened so that ids of other versions still work.
var incidentRE = regexp.MustCompile(`^[A-Za-z0-9_-]{4,64}$`)

func rulesExplainCommand() *cobra.Command {
	var cfgPath string
	var logs []string
	cmd := &cobra.Command{
		Use:   "explain INCIDENT_ID [--log FILE]...",
		Short: "Find an incident id from a refusal in the logs and show what was decided",
		Long: `Find the incident id that a reply carried ("[incident ABCDE23456]") in the logs
and print each matching line: time, client, sender, recipients, rule, reply.

The logs read are the mail log (log.mail_log of the configuration), or the
files given with --log (repeat it to read several: the mail log, and the
daemon's own log in JSON or console format, which adds the facts each rule
read). Compressed or rotated files must be given uncompressed.

The equivalent query by hand is

  grep 'incident=ID' <mail log>`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if !incidentRE.MatchString(id) {
				return fmt.Errorf("%q is not an incident id", id)
			}
			if len(logs) == 0 {
				cfg, err := loadConfig(cfgPath)
				if cfg == nil {
					return fmt.Errorf("configuration: %s", strings.Join(errorLines(err), "; "))
				}
				switch cfg.Log.MailLog {
				case "", "-":
					return errors.New("log.mail_log names no file: give the log to read with --log FILE")
				}
				logs = []string{cfg.Log.MailLog}
			}
			found := 0
			for _, path := range logs {
				n, err := explainFile(cmd.OutOrStdout(), path, id)
				if err != nil {
					return err
				}
				found += n
			}
			if found == 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "incident %s not found in %s\n", id, strings.Join(logs, ", "))
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "configuration file (YAML): log.mail_log")
	cmd.Flags().StringArrayVar(&logs, "log", nil, "a log file to search: the mail log, or moat's JSON or console log (repeatable)")
	return cmd
}

// logMatch is one line that names the incident.
type logMatch struct {
	Time       string
	Kind       string // mail log event, or the log message
	Client     string
	ClientName string
	HELO       string
	Sender     string
	Recipients []string
	Rule       string
	Stage      string
	Reply      string
	ConnID     string
	Extra      []string // further fields of a daemon log line (k=v)
}

// explainFile prints each line of path that names incident id and
// returns how many it printed.
func explainFile(w io.Writer, path, id string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	err = scanLines(f, maxLogLine, func(lineNo int, line string) {
		if !strings.Contains(line, id) {
			return
		}
		m, ok := matchLine(line, id)
		if !ok {
			return
		}
		n++
		printMatch(w, fmt.Sprintf("%s:%d", path, lineNo), m)
	})
	if err != nil {
		return n, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// scanLines calls fn for each line of r (without its line end); lines
// longer than max are skipped whole.
func scanLines(r io.Reader, max int, fn func(lineNo int, line string)) error {
	br := bufio.NewReaderSize(r, max)
	for lineNo := 1; ; lineNo++ {
		b, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			for errors.Is(err, bufio.ErrBufferFull) { // skip the rest of the long line
				_, err = br.ReadSlice('\n')
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			continue
		}
		if len(b) > 0 {
			fn(lineNo, strings.TrimRight(string(b), "\r\n"))
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// matchLine reads a mail log line (internal/maillog) or a daemon log line
// (zap JSON or console) and reports whether its incident field is id.
func matchLine(line, id string) (logMatch, bool) {
	if e, err := maillog.Parse(line); err == nil {
		if e.Incident != id {
			return logMatch{}, false
		}
		return logMatch{
			Time: e.Time.UTC().Format(time.RFC3339Nano), Kind: e.Kind, Client: e.Client, ClientName: e.ClientName,
			HELO: e.HELO, Sender: e.Sender, Recipients: e.Recipients, Rule: e.Rule, Reply: e.Reply, ConnID: e.ConnID,
		}, true
	}
	return matchZapLine(line, id)
}

// matchZapLine reads a zap line: JSON ({"ts":…,"msg":…,fields}) or
// console (time TAB level TAB [logger TAB] message TAB {fields}).
func matchZapLine(line, id string) (logMatch, bool) {
	var m logMatch
	var fields map[string]any
	if strings.HasPrefix(line, "{") {
		if json.Unmarshal([]byte(line), &fields) != nil {
			return m, false
		}
		m.Time = zapTime(fields["ts"])
		m.Kind, _ = fields["msg"].(string)
	} else {
		i := strings.Index(line, "\t{")
		if i < 0 || json.Unmarshal([]byte(line[i+1:]), &fields) != nil {
			return m, false
		}
		parts := strings.Split(line[:i], "\t")
		m.Time = parts[0]
		m.Kind = parts[len(parts)-1]
	}
	if s, _ := fields["incident"].(string); s != id {
		return m, false
	}
	str := func(k string) string { s, _ := fields[k].(string); return s }
	m.Client, m.Sender, m.Rule, m.Reply = str("client"), str("sender"), str("rule"), str("reply")
	m.Stage, m.ConnID, m.HELO = str("stage"), str("conn_id"), str("helo")
	if rc := str("rcpt"); rc != "" {
		m.Recipients = []string{rc}
	}
	if rs, ok := fields["recipients"].([]any); ok {
		for _, r := range rs {
			if s, ok := r.(string); ok {
				m.Recipients = append(m.Recipients, s)
			}
		}
	}
	for _, k := range []string{"action", "score", "hits"} {
		if v, ok := fields[k]; ok {
			b, _ := json.Marshal(v)
			m.Extra = append(m.Extra, k+"="+string(b))
		}
	}
	return m, true
}

// zapTime renders zap's "ts": epoch seconds (production JSON) or a string.
func zapTime(v any) string {
	switch t := v.(type) {
	case float64:
		sec, frac := math.Modf(t)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC().Format(time.RFC3339Nano)
	case string:
		return t
	}
	return ""
}

func printMatch(w io.Writer, where string, m logMatch) {
	fmt.Fprintf(w, "%s\n", clean(where))
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "  %-11s %s\n", k, clean(v))
		}
	}
	row("time", m.Time)
	row("event", m.Kind)
	client := m.Client
	if m.ClientName != "" {
		client += " (" + m.ClientName + ")"
	}
	if m.HELO != "" {
		client += " helo " + m.HELO
	}
	row("client", client)
	row("conn_id", m.ConnID)
	row("sender", m.Sender)
	row("recipients", strings.Join(m.Recipients, ", "))
	row("stage", m.Stage)
	row("rule", m.Rule)
	row("reply", m.Reply)
	for _, e := range m.Extra {
		row("", e)
	}
}
