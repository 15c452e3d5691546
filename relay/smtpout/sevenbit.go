package smtpout

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"moat/internal/reply"
	"moat/internal/sevenbit"
	"moat/relay/transport"
)

// Making a message fit the next hop, as Postfix does with
// smtp_line_length_limit = 998 and its 8BITMIME downgrade:
//
//   - RFC 5321 §4.5.3.1.6: no line of more than 998 octets (CRLF aside) is
//     ever sent, to any next hop; a strict one refuses the whole message
//     ("500 Line too long") and the sender would get a bounce.
//   - RFC 6152 §3: a message with 8-bit octets is not sent to a next hop
//     that does not offer 8BITMIME.
//
// Either way the parts that do not fit are re-encoded (internal/sevenbit:
// quoted-printable for text, base64 for the rest), so the content
// survives; what cannot be converted (8-bit octets in the header, a header
// line with no place to fold) fails at once, permanently, with the reason
// and without sending (RFC 3463 §3.7: X.6.3, conversion required but not
// supported). Re-encoding breaks a DKIM signature that covers the body or
// Content-Transfer-Encoding: the gateway therefore converts mail it signs
// itself before signing (gateway/submit.go, RFC 6376 §5.3), so that here
// only other people's mail, which would otherwise bounce, is changed.

// maxConvert bounds the message read into memory to be converted.
const maxConvert = 256 << 20

// needs reports what in msg does not fit this session. It reads the
// message once; a message without Open is taken as it is.
func (s *session) needs(msg *transport.Message) (sevenbit.Need, error) {
	if msg.Open == nil {
		return 0, nil
	}
	want := sevenbit.LongLine
	if !s.eightBit {
		want |= sevenbit.EightBit
	}
	body, err := msg.Open()
	if err != nil {
		return 0, fmt.Errorf("reading message %s: %w", msg.ID, err)
	}
	defer body.Close()
	has, err := sevenbit.Scan(body)
	if err != nil {
		return 0, fmt.Errorf("reading message %s: %w", msg.ID, err)
	}
	return has & want, nil
}

// fit returns msg as this session may send it: msg itself when it fits,
// else a copy whose Open gives the converted message and whose Size is
// its size. An error is for every recipient.
func (s *session) fit(msg *transport.Message) (*transport.Message, error) {
	need, err := s.needs(msg)
	if err != nil || need == 0 {
		return msg, err
	}
	body, err := msg.Open()
	if err != nil {
		return nil, fmt.Errorf("reading message %s: %w", msg.ID, err)
	}
	raw, err := io.ReadAll(io.LimitReader(body, maxConvert+1))
	body.Close()
	if err != nil {
		return nil, fmt.Errorf("reading message %s: %w", msg.ID, err)
	}
	if len(raw) > maxConvert {
		return nil, s.cannotConvert(need, errors.New("too large to convert"))
	}
	out, did, err := sevenbit.Convert(raw, need)
	if err != nil {
		return nil, s.cannotConvert(need, err)
	}
	if s.reencoded != nil {
		for _, r := range did.Reasons() {
			s.reencoded(r)
		}
	}
	if s.maxSize > 0 && int64(len(out)) > s.maxSize {
		// RFC 1870 §6.2, as in refuse: the converted message is larger.
		return nil, reply.New(552, 3, 4, fmt.Sprintf("Message size %d after conversion exceeds the limit of %d of %s", len(out), s.maxSize, s.name))
	}
	m := *msg
	m.Size = int64(len(out))
	m.Open = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(out)), nil }
	return &m, nil
}

// cannotConvert is the permanent failure of a message that needs a
// conversion it cannot have.
func (s *session) cannotConvert(need sevenbit.Need, err error) error {
	why := "lines over 998 octets (RFC 5321 4.5.3.1.6)"
	if need.Has(sevenbit.EightBit) {
		why = "8-bit data and " + s.name + " does not support 8BITMIME (RFC 6152)"
		if need.Has(sevenbit.LongLine) {
			why += ", and lines over 998 octets"
		}
	}
	return reply.New(554, 6, 3, fmt.Sprintf("Message has %s: %v", why, err))
}
