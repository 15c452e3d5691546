package gateway

import (
	"bytes"
	"time"

	"go.uber.org/zap"

	"moat/policy/authres"
	"moat/policy/content"
	"moat/policy/dmarc"
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
		spfRes, iprevRes := s.t.Facts.SPF, s.t.Facts.IPRev
		w.WriteString(authres.Header(c.AuthservID, authres.Results{
			SPF:      &spfRes,
			DKIM:     &s.t.Facts.DKIM,
			DMARC:    &s.t.Facts.DMARC,
			IPRev:    &iprevRes,
			ClientIP: s.t.Facts.Conn.IP,
		}))
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
