package gateway

import (
	"crypto/tls"
	"fmt"
	"io"
	"strings"
	"time"

	"moat/policy"
)

type receivedInfo struct {
	conn     policy.Conn
	hostname string
	id       string
	protocol string
	rcpts    []Rcpt
	when     time.Time
}

// writeReceived writes the trace header of RFC 5321 §4.4:
//
//	Received: from <helo> (<ptr> [<ip>])
//	        by <hostname> (moat) with <protocol> (<tls>)
//	        id <queue id>
//	        for <rcpt>; <date>
//
// "for" is written only for a single recipient, so a message to many
// does not reveal the others (a common MTA practice). Values that come
// from the client (HELO) are reduced to printable ASCII without
// parentheses, so they cannot break the header's structure.
func writeReceived(w io.Writer, in receivedInfo) {
	helo := sanitizeComment(in.conn.HELO)
	if helo == "" {
		helo = "unknown"
	}
	ip := in.conn.IP.String()
	if in.conn.IP.Is6() {
		ip = "IPv6:" + ip
	}
	ptr := in.conn.PTR
	if ptr == "" {
		ptr = "unknown"
	}
	fmt.Fprintf(w, "Received: from %s (%s [%s])\r\n", helo, sanitizeComment(ptr), ip)
	fmt.Fprintf(w, "\tby %s (moat) with %s", in.hostname, in.protocol)
	if in.conn.TLS {
		fmt.Fprintf(w, " (%s %s)", in.conn.TLSVersion, in.conn.TLSCipher)
	}
	fmt.Fprintf(w, "\r\n\tid %s", in.id)
	if len(in.rcpts) == 1 && !strings.ContainsAny(in.rcpts[0].Addr, "\r\n") {
		fmt.Fprintf(w, "\r\n\tfor <%s>", sanitizeComment(in.rcpts[0].Addr))
	}
	// RFC 5322 §3.3 date-time.
	fmt.Fprintf(w, ";\r\n\t%s\r\n", in.when.Format("Mon, 02 Jan 2006 15:04:05 -0700"))
}

// sanitizeComment keeps printable ASCII except the characters that would
// end or nest an RFC 5322 comment, and bounds the length.
func sanitizeComment(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 255; i++ {
		c := s[i]
		if c > 32 && c < 127 && c != '(' && c != ')' && c != '\\' && c != ';' {
			b.WriteByte(c)
		} else if c >= 128 {
			b.WriteByte('?')
		}
	}
	return b.String()
}

func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLS1.0"
	case tls.VersionTLS11:
		return "TLS1.1"
	case tls.VersionTLS12:
		return "TLS1.2"
	case tls.VersionTLS13:
		return "TLS1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}

func tlsCipherName(id uint16) string { return tls.CipherSuiteName(id) }
