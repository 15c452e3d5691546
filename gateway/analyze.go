package gateway

import (
	"bytes"
	"context"
	"time"

	"go.uber.org/zap"

	"moat/policy/authres"
	"moat/policy/content"
	"moat/policy/dkim"
	"moat/policy/dmarc"
)

// analyze computes the message facts at end of DATA: the parsed message,
// and for inbound mail DKIM (RFC 6376) and DMARC (RFC 7489).
func (s *session) analyze(raw []byte) *content.Message {
	msg, err := content.Parse(raw, content.DefaultOptions())
	if err != nil {
		s.log.Info("message header not parsed", zap.Error(err))
		msg = nil
	}
	s.facts.Message = msg
	s.env.size = int64(len(raw))
	if !s.inbound() {
		return msg
	}
	c := s.checks
	c.timed("dkim", func(ctx context.Context) {
		s.facts.DKIM = dkim.Verify(ctx, c.Resolver, bytes.NewReader(raw), dkim.Options{})
	})
	var from []string
	if msg != nil {
		from = msg.HeaderValues("From")
	}
	c.timed("dmarc", func(ctx context.Context) {
		s.facts.DMARC = dmarc.Evaluate(ctx, c.Resolver, dmarc.Input{From: from, SPF: s.env.spf, DKIM: s.facts.DKIM})
	})
	return msg
}

// writeAddedHeaders writes, in order, the fields moat puts on top of an
// accepted message: Received (RFC 5321 §4.4), Authentication-Results for
// inbound mail (RFC 8601), the headers rules added, and a DKIM signature
// for mail of our own users and networks.
func (s *session) writeAddedHeaders(w *bytes.Buffer, raw []byte, msg *content.Message, id string, when time.Time) {
	s.waitIPRev()
	writeReceived(w, receivedInfo{
		conn:     s.facts.Conn,
		hostname: s.srv.opt.Hostname,
		id:       id,
		protocol: s.protocol(),
		rcpts:    s.env.rcpts,
		when:     when,
	})
	c := s.checks
	if c == nil {
		return
	}
	if s.inbound() && c.AuthservID != "" {
		spfRes, iprevRes := s.env.spf, s.facts.IPRev
		w.WriteString(authres.Header(c.AuthservID, authres.Results{
			SPF:      &spfRes,
			DKIM:     &s.facts.DKIM,
			DMARC:    &s.facts.DMARC,
			IPRev:    &iprevRes,
			ClientIP: s.facts.Conn.IP,
		}))
	}
	for _, h := range s.env.headers {
		w.WriteString(h.Name + ": " + h.Value + "\r\n")
	}
	if c.Signer != nil && s.may() && msg != nil {
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
