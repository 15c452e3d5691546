package smtptest

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// Send submits one message over SMTP to addr (a loopback host:port) and
// returns the reply error of the first step that failed, nil on 250 after
// DATA. Every network step has a deadline.
func Send(addr, from string, to []string, msg []byte) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	c := gosmtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	if err := c.Mail(from, nil); err != nil {
		return fmt.Errorf("MAIL: %w", err)
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return fmt.Errorf("RCPT %s: %w", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("DATA body: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	return c.Quit()
}

// Message builds a small RFC 5322 message with the given Message-ID
// (without angle brackets) and body; lines end in CRLF.
func Message(from, to, id, body string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: moat test %s\r\n", from, to, id)
	fmt.Fprintf(&b, "Message-ID: <%s>\r\nDate: %s\r\n\r\n", id, time.Now().UTC().Format(time.RFC1123Z))
	b.WriteString(body)
	return []byte(b.String())
}

// ReplyCode is the SMTP reply code inside an error from Send, 0 when the
// error is not an SMTP reply (a network error, say) or nil.
func ReplyCode(err error) int {
	var se *gosmtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}
