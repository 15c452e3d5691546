package maillog

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var moreRE = regexp.MustCompile(`^\+[0-9]+ more$`)

// Parse reads one line written by Log (with or without its newline) back
// into an Event. Unknown keys are skipped so that old readers keep working
// when fields are added; a repeated key other than rcpt, a value that is
// not well quoted, or a missing timestamp, tag or event is an error. The
// recipients include neither the "+N more" marker nor what it stands for.
func Parse(line string) (Event, error) {
	var e Event
	line = strings.TrimSuffix(line, "\n")
	if len(line) > MaxLine {
		return e, fmt.Errorf("maillog: line of %d bytes is longer than %d", len(line), MaxLine)
	}
	if strings.ContainsAny(line, "\r\n") {
		return e, errors.New("maillog: line break inside the line")
	}
	ts, rest, ok := strings.Cut(line, " ")
	if !ok {
		return e, errors.New("maillog: no timestamp")
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return e, fmt.Errorf("maillog: timestamp: %w", err)
	}
	e.Time = t
	rest, ok = strings.CutPrefix(rest, Tag)
	if !ok {
		return e, fmt.Errorf("maillog: no %q tag", Tag)
	}
	seen := map[string]bool{}
	for rest != "" {
		if rest[0] != ' ' {
			return e, fmt.Errorf("maillog: no space before %.20q", rest)
		}
		rest = rest[1:]
		key, after, ok := strings.Cut(rest, "=")
		if !ok || key == "" || strings.ContainsAny(key, " \"") {
			return e, fmt.Errorf("maillog: no key=value at %.20q", rest)
		}
		var val string
		if strings.HasPrefix(after, `"`) {
			q, err := strconv.QuotedPrefix(after)
			if err != nil {
				return e, fmt.Errorf("maillog: %s: bad quoting", key)
			}
			if val, err = strconv.Unquote(q); err != nil {
				return e, fmt.Errorf("maillog: %s: bad quoting", key)
			}
			rest = after[len(q):]
		} else {
			end := strings.IndexByte(after, ' ')
			if end < 0 {
				end = len(after)
			}
			val, rest = after[:end], after[end:]
			if val == "" {
				return e, fmt.Errorf("maillog: %s: empty value", key)
			}
		}
		if key != kRcpt {
			if seen[key] {
				return e, fmt.Errorf("maillog: %s: given twice", key)
			}
			seen[key] = true
		}
		if err := e.set(key, val); err != nil {
			return e, err
		}
	}
	if e.Kind == "" {
		return e, errors.New("maillog: no event")
	}
	return e, nil
}

func (e *Event) set(key, val string) error {
	var err error
	switch key {
	case kEvent:
		e.Kind = val
	case kClient:
		e.Client = val
	case kConnID:
		e.ConnID = val
	case kQueueID:
		e.QueueID = val
	case kReply:
		e.Reply = val
	case kStage:
		e.Stage = val
	case kReason:
		e.Reason = val
	case kVerdict:
		e.Verdict = val
	case kRule:
		e.Rule = val
	case kIncident:
		e.Incident = val
	case kRoute:
		e.Route = val
	case kRelay:
		e.Relay = val
	case kSize:
		e.Size, err = strconv.ParseInt(val, 10, 64)
	case kDelay:
		e.Delay, err = time.ParseDuration(val)
	case kAttempts:
		e.Attempts, err = strconv.Atoi(val)
	case kClientName:
		e.ClientName = val
	case kHELO:
		e.HELO = val
	case kSender:
		e.Sender = val
	case kRcpt:
		if !moreRE.MatchString(val) {
			e.Recipients = append(e.Recipients, val)
		}
	}
	if err != nil {
		return fmt.Errorf("maillog: %s: %w", key, err)
	}
	return nil
}
