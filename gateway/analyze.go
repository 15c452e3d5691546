package gateway

import (
	"bytes"
	"strings"
	"time"

	"go.uber.org/zap"

	"moat/policy/authres"
	"moat/policy/content"
	"moat/policy/dmarc"
	"moat/rules"
)

// writeAddedHeaders writes, in order, the fields moat puts on top of an
// accepted message: Received (RFC 5321 §4.4), Authentication-Results for
// inbound mail (RFC 8601), the headers rules added, and a DKIM signature
// for mail of our own users and networks.
func (s *session) writeAddedHeaders(w *bytes.Buffer, raw []byte, msg *content.Message, id string, when time.Time) {
	s.t.waitIPRev()
	writeReceived(w, receivedInfo{
		conn:     s.t.Facts.Conn,
		hostname: s.srv.opt.Hostname,
		id:       id,
		protocol: s.protocol(),
		rcpts:    s.t.Rcpts,
		when:     when,
	})
	c := s.checks
	if c == nil {
		return
	}
	if s.srv.pipe.inbound(s.t) && c.AuthservID != "" {
		w.WriteString(authres.Header(c.AuthservID, s.authResults()))
	}
	for _, h := range s.t.Headers {
		w.WriteString(h.Name + ": " + h.Value + "\r\n")
	}
	if c.Signer != nil && s.t.May() && msg != nil {
		domain, err := dmarc.FromDomain(msg.HeaderValues("From"))
		if err != nil {
			return
		}
		sig, ok, err := c.Signer.Sign(domain, bytes.NewReader(raw))
		if err != nil {
			s.log.Warn("DKIM signing failed; sending unsigned", zap.String("domain", domain), zap.Error(err))
			return
		}
		if ok {
			w.WriteString(sig)
		}
	}
}

// authResultsValue is the value of moat's Authentication-Results for
// this message (without the field name and the final CRLF), for the ARC
// set of a forwarded copy (RFC 8617 §4.1.1): the results of the inbound
// checks, or "<authserv-id>; none" for our own users' mail.
func (s *session) authResultsValue() string {
	c := s.checks
	if c == nil || c.AuthservID == "" {
		return ""
	}
	var res authres.Results // our own users' mail: "; none"
	if s.srv.pipe.inbound(s.t) {
		res = s.authResults()
	}
	h := authres.Header(c.AuthservID, res)
	return strings.TrimSuffix(h[len(authres.FieldName)+2:], "\r\n")
}

// authResults are the results of the inbound checks of this message.
func (s *session) authResults() authres.Results {
	spfRes, iprevRes := s.t.Facts.SPF, s.t.Facts.IPRev
	return authres.Results{
		SPF:      &spfRes,
		DKIM:     &s.t.Facts.DKIM,
		DMARC:    &s.t.Facts.DMARC,
		IPRev:    &iprevRes,
		ARC:      s.t.arc,
		ClientIP: s.t.Facts.Conn.IP,
	}
}

// stripOwnAuthResults removes Authentication-Results fields that claim
// to be ours from the header block of raw.
func stripOwnAuthResults(raw []byte, authservID string) []byte {
	end := bytes.Index(raw, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(raw)
	} else {
		end += 4
	}
	head := authres.StripOwn(raw[:end], authservID)
	if len(head) == end {
		return raw
	}
	out := make([]byte, 0, len(head)+len(raw)-end)
	out = append(out, head...)
	return append(out, raw[end:]...)
}

// spamHeaders returns the X-Spam-* fields of an accepted message (see
// rules.SpamHeaders) for inbound mail, as Authentication-Results: mail
// of our own users and networks is not judged. Off with
// rules.score.headers: false.
func (p *Pipeline) spamHeaders(t *Txn, v rules.Verdict) []rules.Header {
	if p.checks == nil || p.checks.Rules == nil || t.May() {
		return nil
	}
	sc := p.checks.Rules.Set().Config().Score
	if !sc.Headers {
		return nil
	}
	return rules.SpamHeaders(rules.SpamReport{Junk: t.Junk, Score: t.Score, Required: sc.Tag, Tests: v.Tests})
}

// stripSpamHeaders removes every X-Spam-* field (any case) from the header
// block of raw, each with its continuation lines (RFC 5322 §2.2.3: a line
// that starts with white space continues the field above), so that the
// only X-Spam-* fields a backend reads are moat's. The header block ends
// at the first empty line (RFC 5322 §2.1); the body is never touched. One
// pass over the header block; raw itself is returned when nothing goes.
func stripSpamHeaders(raw []byte) []byte {
	var out []byte // nil until the first field is removed
	drop := false
	i := 0
	for i < len(raw) {
		next := len(raw)
		if j := bytes.IndexByte(raw[i:], '\n'); j >= 0 {
			next = i + j + 1
		}
		line := raw[i:next]
		if string(line) == "\r\n" || string(line) == "\n" {
			break // the empty line: the body follows
		}
		if line[0] != ' ' && line[0] != '\t' {
			drop = isSpamField(line)
		}
		switch {
		case drop && out == nil:
			out = append(make([]byte, 0, len(raw)), raw[:i]...)
		case !drop && out != nil:
			out = append(out, line...)
		}
		i = next
	}
	if out == nil {
		return raw
	}
	return append(out, raw[i:]...)
}

// isSpamField reports whether line starts a field named X-Spam-…: the
// prefix in any case, then field-name characters (RFC 5322 §3.6.8 ftext),
// optional white space (obsolete syntax, RFC 5322 §4.5.3) and the colon.
func isSpamField(line []byte) bool {
	const prefix = rules.SpamHeaderPrefix
	if len(line) < len(prefix) || !bytes.EqualFold(line[:len(prefix)], []byte(prefix)) {
		return false
	}
	k := len(prefix)
	for k < len(line) && line[k] >= 33 && line[k] <= 126 && line[k] != ':' {
		k++
	}
	for k < len(line) && (line[k] == ' ' || line[k] == '\t') {
		k++
	}
	return k < len(line) && line[k] == ':'
}
