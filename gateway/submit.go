package gateway

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"time"

	"go.uber.org/zap"

	"moat/internal/sevenbit"
)

// completeSubmission makes a message of our own users and networks
// (Txn.May) ready to be signed and sent, before writeAddedHeaders signs
// it: what is added or changed afterwards would break moat's own DKIM
// signature. It returns raw itself when nothing changes.
//
// RFC 6409 §8.2 and §8.3: a message without Date or Message-ID gets the
// missing ones (as Postfix's cleanup does), at the top of the header.
//
// RFC 6376 §5.3: a message that moat signs is converted to 7 bits, with
// no line over 998 octets (internal/sevenbit), before it is signed. The
// relay would otherwise have to re-encode it for a next hop without
// 8BITMIME, or for any next hop when a line is too long (relay/smtpout),
// after the signature, and break it (the body hash, and the
// Content-Transfer-Encoding field it covers). Signing after the relay's
// conversion instead would mean signing once per next hop, in the relay,
// with the keys there: the spool would no longer hold what is sent.
// What cannot be converted is signed as it is; the relay decides later.
func (s *session) completeSubmission(raw []byte, id string, when time.Time) []byte {
	if !s.t.May() {
		return raw
	}
	if s.checks != nil && s.checks.Signer != nil {
		raw = s.sevenBit(raw)
	}
	hasDate, hasID := headerHas(raw, "Date"), headerHas(raw, "Message-ID")
	if hasDate && hasID {
		return raw
	}
	var add bytes.Buffer
	if !hasDate {
		// RFC 5322 §3.3: day-of-week, date, time and numeric zone.
		add.WriteString("Date: " + when.Format(time.RFC1123Z) + "\r\n")
	}
	if !hasID {
		add.WriteString("Message-ID: " + newMessageID(id, s.srv.opt.Hostname) + "\r\n")
	}
	out := make([]byte, 0, add.Len()+len(raw))
	out = append(out, add.Bytes()...)
	return append(out, raw...)
}

// sevenBit returns raw converted for any next hop (see completeSubmission),
// counting what it did, or raw itself.
func (s *session) sevenBit(raw []byte) []byte {
	need, err := sevenbit.Scan(bytes.NewReader(raw))
	if err != nil || need == 0 {
		return raw
	}
	out, did, err := sevenbit.Convert(raw, need)
	if err != nil {
		s.log.Info("submitted message not converted before signing", zap.Error(err))
		return raw
	}
	if s.checks.Reencoded != nil {
		for _, r := range did.Reasons() {
			s.checks.Reencoded(r)
		}
	}
	return out
}

// newMessageID returns a msg-id (RFC 5322 §3.6.4) unique to this message:
// the queue id and 64 random bits at our host name.
func newMessageID(queueID, hostname string) string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail (Go 1.24)
	return "<" + queueID + "." + hex.EncodeToString(b[:]) + "@" + hostname + ">"
}

// headerHas reports whether the header block of raw (up to the first
// empty line, RFC 5322 §2.1) has a field called name, in any case and
// with the obsolete white space before the colon (RFC 5322 §4.5.3).
// The scan is bounded by the header block.
func headerHas(raw []byte, name string) bool {
	for i := 0; i < len(raw); {
		next := len(raw)
		if j := bytes.IndexByte(raw[i:], '\n'); j >= 0 {
			next = i + j + 1
		}
		line := raw[i:next]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return false // the empty line: the body follows
		}
		if len(line) > len(name) && bytes.EqualFold(line[:len(name)], []byte(name)) {
			rest := bytes.TrimLeft(line[len(name):], " \t")
			if len(rest) > 0 && rest[0] == ':' {
				return true
			}
		}
		i = next
	}
	return false
}
