//go:build interop

package interop

import (
	"encoding/base64"
	"fmt"
	"strings"

	"moat/test/testenv"
)

// The test messages of the scanner tests, CRLF line ends, as a client
// sends them (header and body, no trailing dot).

// scanMessage builds a message with a full, ordinary header (Date,
// Message-ID: neither spamd nor rspamd has reasons to dislike it).
func scanMessage(subject, extraHeader, body string) []byte {
	var b strings.Builder
	b.WriteString("From: Sender <sender@client.test>\r\n")
	b.WriteString("To: Alice <alice@moat.test>\r\n")
	fmt.Fprintf(&b, "Subject: %s\r\n", subject)
	b.WriteString("Date: Thu, 03 Dec 2026 21:00:00 +0000\r\n")
	fmt.Fprintf(&b, "Message-ID: <%s.scanner-test@client.test>\r\n", strings.ReplaceAll(strings.ToLower(subject), " ", "-"))
	b.WriteString("MIME-Version: 1.0\r\n")
	b.WriteString(extraHeader)
	b.WriteString("\r\n")
	b.WriteString(body)
	return []byte(b.String())
}

// cleanMessage is an ordinary short note.
func cleanMessage() []byte {
	return scanMessage("Lunch on Friday", "Content-Type: text/plain; charset=us-ascii\r\n",
		"Hello Alice,\r\n\r\nare we still on for lunch on Friday at noon? The usual place.\r\n\r\nRegards,\r\nSender\r\n")
}

// eicarMessage carries EICAR as its plain-text body.
func eicarMessage() []byte {
	return scanMessage("EICAR test", "Content-Type: text/plain; charset=us-ascii\r\n", testenv.EICAR+"\r\n")
}

// eicarAttachment carries EICAR as a base64 attachment.
func eicarAttachment() []byte {
	att := base64.StdEncoding.EncodeToString([]byte(testenv.EICAR))
	return scanMessage("EICAR attached", "Content-Type: multipart/mixed; boundary=\"b1\"\r\n",
		"--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee the attachment.\r\n"+
			"--b1\r\nContent-Type: application/octet-stream; name=\"eicar.com\"\r\n"+
			"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"eicar.com\"\r\n\r\n"+
			att+"\r\n--b1--\r\n")
}

// gtubeMessage carries GTUBE in its body.
func gtubeMessage() []byte {
	return scanMessage("GTUBE test", "Content-Type: text/plain; charset=us-ascii\r\n",
		"This is the GTUBE, the Generic Test for Unsolicited Bulk Email:\r\n\r\n"+testenv.GTUBE+"\r\n")
}
