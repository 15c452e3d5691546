package gateway

import (
	"errors"

	"github.com/emersion/go-smtp"

	"moat/internal/reply"
)

// wire turns any error into the *smtp.SMTPError that smtpd writes.
// Replies from smtpd itself (already *smtp.SMTPError, e.g. go-smtp's
// ErrDataTooLarge, which it uses) pass through unchanged.
func wire(err error, sessionID string) error {
	if err == nil {
		return nil
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	r := reply.From(err, sessionID)
	return &smtp.SMTPError{
		Code:         r.Code,
		EnhancedCode: smtp.EnhancedCode(r.Enhanced),
		Message:      r.Text,
	}
}
