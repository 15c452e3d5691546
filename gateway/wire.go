package gateway

import (
	"errors"

	"github.com/emersion/go-smtp"

	"moat/internal/reply"
)

// wire turns any error into the *smtp.SMTPError that go-smtp writes.
// Replies from go-smtp itself (already *smtp.SMTPError, e.g. its
// ErrDataTooLarge) pass through unchanged.
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
