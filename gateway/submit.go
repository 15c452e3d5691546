package gateway

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"time"
)

// completeSubmission makes a message of our own users and networks
// (Txn.May) ready to be signed and sent, before writeAddedHeaders signs
// it: what is added or changed afterwards would break moat's own DKIM
// signature. It returns raw itself when nothing changes.
//
// RFC 6409 §8.2 and §8.3: a message without Date or Message-ID gets the
// missing ones (as Postfix's cleanup does), at the top of the header.
func (s *session) completeSubmission(raw []byte, id string, when time.Time) []byte {
	if !s.t.May() {
		return raw
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
