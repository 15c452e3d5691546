package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Status is the delivery state of one recipient.
type Status string

// Recipient states.
const (
	StatusPending   Status = "pending"
	StatusDelivered Status = "delivered"
	StatusFailed    Status = "failed"
)

// SenderCheck records, when a message is accepted, why its envelope
// sender may (or may not) be sent delivery status notifications. A
// notice goes to an address the client named; unless that address was
// shown to belong to the client, the notice is backscatter to a forged
// sender (RFC 3834 §2, RFC 5321 §6.2). The gateway sets it; the queue
// manager reads it.
type SenderCheck string

// Sender checks. The zero value is what a record written before the
// field existed reads as: notified as before. Only SenderUnverified
// withholds notices.
const (
	// SenderUnchecked: not recorded (an older record): notify as before.
	SenderUnchecked SenderCheck = ""
	// SenderSPF: SPF passed for the MAIL FROM identity (RFC 7208 §2.6.3).
	SenderSPF SenderCheck = "spf"
	// SenderDMARC: DMARC passed (aligned DKIM or SPF, RFC 7489 §3.1) and
	// the MAIL FROM domain is in the same organizational domain.
	SenderDMARC SenderCheck = "dmarc"
	// SenderAuthenticated: the client authenticated (SMTP AUTH, RFC 4954).
	SenderAuthenticated SenderCheck = "auth"
	// SenderTrusted: the client is in trusted_networks.
	SenderTrusted SenderCheck = "trusted"
	// SenderLocal: moat made the message itself (a notice, a report).
	SenderLocal SenderCheck = "local"
	// SenderUnverified: none of the above; notices are withheld unless
	// the operator asks for them (queue.bounce_unverified_senders).
	SenderUnverified SenderCheck = "none"
)

// Verified reports whether notices may go to the sender: every value but
// SenderUnverified, so that unknown and unrecorded values keep the
// classic behaviour.
func (c SenderCheck) Verified() bool { return c != SenderUnverified }

// Recipient is one envelope recipient and its delivery state.
type Recipient struct {
	Address     string    `json:"address"`
	Route       string    `json:"route"` // "local", a route name, or "mx"
	Status      Status    `json:"status"`
	Attempts    int       `json:"attempts,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	// Bounced is set once a failure notice for this failed recipient has
	// been durably queued (or was not due: null sender, or a sender
	// recorded as SenderUnverified, see SenderCheck). The queue manager
	// keeps a message until every failed recipient is Bounced.
	Bounced bool `json:"bounced,omitempty"`
}

// Envelope is the spooled state of one message.
type Envelope struct {
	ID         string      `json:"id"`
	Sender     string      `json:"sender"` // "" = null sender (RFC 5321 §4.5.5)
	Recipients []Recipient `json:"recipients"`
	Received   time.Time   `json:"received"`
	Size       int64       `json:"size"`
	UTF8       bool        `json:"utf8,omitempty"`
	// About the original client, for Received and XFORWARD.
	ClientIP   string `json:"client_ip,omitempty"`
	ClientName string `json:"client_name,omitempty"`
	HELO       string `json:"helo,omitempty"`
	Protocol   string `json:"protocol,omitempty"`
	// Junk: the rules marked the message as spam; local delivery files
	// it into the junk folder. Records written before the field read as
	// false.
	Junk bool `json:"junk,omitempty"`
	// SenderCheck says whether the sender may get notices (see
	// SenderCheck); records written before the field read as
	// SenderUnchecked and are notified as before.
	SenderCheck SenderCheck `json:"sender_check,omitempty"`

	Attempts    int       `json:"attempts,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	Held        bool      `json:"held,omitempty"`
	DelayWarned bool      `json:"delay_warned,omitempty"`
	// Quarantine says why a quarantined message is there; records
	// written before the field, and every message of the delivery
	// queue, have none.
	Quarantine *Reason `json:"quarantine,omitempty"`
}

// Clone returns a deep copy.
func (e *Envelope) Clone() *Envelope {
	c := *e
	c.Recipients = append([]Recipient(nil), e.Recipients...)
	if e.Quarantine != nil {
		r := *e.Quarantine
		r.Facts = append([]string(nil), r.Facts...)
		c.Quarantine = &r
	}
	return &c
}

// Pending reports whether any recipient is still pending.
func (e *Envelope) Pending() bool {
	for _, r := range e.Recipients {
		if r.Status == StatusPending {
			return true
		}
	}
	return false
}

// Limits on a record read back from disk: a record over these is set
// aside, never trusted.
const (
	MaxEnvelopeSize = 4 << 20 // bytes of one .env file
	MaxRecipients   = 10000   // per message
	maxField        = 4096    // bytes of one string field
	recordVersion   = 1
)

// record is the on-disk form: a version number and the envelope.
type record struct {
	V int `json:"v"`
	*Envelope
}

func encodeEnvelope(env *Envelope) ([]byte, error) {
	_, b, err := encodeClone(env)
	return b, err
}

// encodeClone returns the record of env and the copy of env it encodes.
func encodeClone(env *Envelope) (*Envelope, []byte, error) {
	// Error texts come from remote servers: cut them rather than refuse
	// the record.
	env = env.Clone()
	env.LastError = truncate(env.LastError, maxField)
	for i := range env.Recipients {
		env.Recipients[i].LastError = truncate(env.Recipients[i].LastError, maxField)
	}
	env.Quarantine = trimReason(env.Quarantine)
	if err := checkEnvelope(env); err != nil {
		return nil, nil, err
	}
	b, err := json.Marshal(record{V: recordVersion, Envelope: env})
	if err != nil {
		return nil, nil, err
	}
	if len(b) > MaxEnvelopeSize {
		return nil, nil, fmt.Errorf("spool: envelope of %s is %d bytes, limit %d", env.ID, len(b), MaxEnvelopeSize)
	}
	return env, append(b, '\n'), nil
}

// ParseEnvelope decodes and checks an envelope record. It never panics;
// any record over the limits, of an unknown version or with an unknown
// field is an error.
func ParseEnvelope(b []byte) (*Envelope, error) {
	if len(b) > MaxEnvelopeSize {
		return nil, fmt.Errorf("spool: envelope record of %d bytes exceeds %d", len(b), MaxEnvelopeSize)
	}
	env := &Envelope{}
	rec := record{Envelope: env}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return nil, fmt.Errorf("spool: envelope record: %w", err)
	}
	if dec.More() {
		return nil, errors.New("spool: envelope record: trailing data")
	}
	if rec.V != recordVersion {
		return nil, fmt.Errorf("spool: envelope record version %d, want %d", rec.V, recordVersion)
	}
	if err := checkEnvelope(env); err != nil {
		return nil, err
	}
	return env, nil
}

func checkEnvelope(env *Envelope) error {
	if !ValidID(env.ID) {
		return fmt.Errorf("spool: bad queue id %q", env.ID)
	}
	if len(env.Recipients) == 0 {
		return fmt.Errorf("spool: %s: no recipients", env.ID)
	}
	if len(env.Recipients) > MaxRecipients {
		return fmt.Errorf("spool: %s: %d recipients, limit %d", env.ID, len(env.Recipients), MaxRecipients)
	}
	if env.Size < 0 {
		return fmt.Errorf("spool: %s: negative size", env.ID)
	}
	if err := checkReason(env.ID, env.Quarantine); err != nil {
		return err
	}
	strs := []string{env.Sender, env.ClientIP, env.ClientName, env.HELO, env.Protocol, env.LastError, string(env.SenderCheck)}
	for _, r := range env.Recipients {
		if r.Address == "" {
			return fmt.Errorf("spool: %s: empty recipient address", env.ID)
		}
		switch r.Status {
		case StatusPending, StatusDelivered, StatusFailed:
		default:
			return fmt.Errorf("spool: %s: recipient %q has unknown status %q", env.ID, r.Address, r.Status)
		}
		strs = append(strs, r.Address, r.Route, r.LastError)
	}
	for _, s := range strs {
		if len(s) > maxField {
			return fmt.Errorf("spool: %s: field of %d bytes exceeds %d", env.ID, len(s), maxField)
		}
	}
	return nil
}

// ValidID reports whether id is a queue id this package could have made:
// 1 to 64 characters of [0-9A-Za-z]. Nothing else reaches a file name.
func ValidID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
