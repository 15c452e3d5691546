package smtpd

import "moat/internal/reply"

// The replies smtpd writes itself, each declared once here. A text with
// verbs is filled in with Format where the reply is sent; a reply that
// names this server gets WithHost. reply.New derives the enhanced class
// from the basic code (RFC 3463 §2); reply.Plain is for the replies
// that carry no enhanced code (RFC 2034 §3: the greeting, HELO, EHLO;
// and the intermediate 334 and 354). TestRepliesNamed checks that no
// reply is written from an inline code.
var (
	// RFC 5321 §3.1, §4.1.1.1.
	replyGreeting = reply.Plain(220, "%s ESMTP Service Ready")
	replyHello    = reply.Plain(250, "%s Hello %s") // EHLO adds a line per extension

	// Command syntax (RFC 5321 §4.2.2, RFC 3463 §3.6: X.5.2).
	replyBadSyntax = reply.New(500, 5, 2, "Error: bad syntax")
	// RFC 5321 §4.2.4: 500 for a command not recognized, whether or not
	// it looks like one; 501 is for the arguments of a known command.
	replyBadCommand    = reply.New(500, 5, 2, "Syntax error, command unrecognized")
	replyUnrecognized  = reply.New(500, 5, 2, "Syntax errors, %s command unrecognized")
	replyNotImpl       = reply.New(502, 5, 1, "%s command not implemented") // RFC 5321 §4.2.4
	replyLineTooLong   = reply.New(500, 4, 0, "Too long line, closing connection")
	replyHeloArg       = reply.New(501, 5, 2, "Domain/address argument required for HELO")
	replyMailSyntax    = reply.New(501, 5, 2, "Was expecting MAIL arg syntax of FROM:<address>")
	replyRcptSyntax    = reply.New(501, 5, 2, "Was expecting RCPT arg syntax of TO:<address>")
	replyBadBase64     = reply.New(501, 5, 2, "Invalid base64 data")
	replyTooManySteps  = reply.New(501, 5, 2, "Too many SASL steps")
	replyAuthCancelled = reply.New(501, 0, 0, "Negotiation cancelled") // RFC 4954 §4

	// A path that is not UTF-8 (RFC 6531 §3.3, RFC 3629): bad mailbox
	// syntax, X.1.7 for the sender and X.1.3 for a recipient (RFC 3463 §3.2).
	replySenderUTF8 = reply.New(501, 1, 7, "Bad sender address syntax: not UTF-8")
	replyRcptUTF8   = reply.New(501, 1, 3, "Bad recipient address syntax: not UTF-8")

	// Parameters (RFC 3463 §3.6: X.5.4).
	replyMailParams    = reply.New(501, 5, 4, "Unable to parse MAIL ESMTP parameters")
	replyRcptParams    = reply.New(501, 5, 4, "Unable to parse RCPT ESMTP parameters")
	replyRcptParam     = reply.New(555, 5, 4, "Unknown RCPT TO argument")
	replyMailParam     = reply.New(555, 5, 4, "Unknown MAIL FROM argument")
	replySizeSyntax    = reply.New(501, 5, 4, "Unable to parse SIZE as an integer")
	replyBinaryMIME    = reply.New(504, 5, 4, "BINARYMIME is not implemented")
	replyBodyValue     = reply.New(501, 5, 4, "Unknown BODY value")
	replyNoSMTPUTF8    = reply.New(555, 5, 4, "SMTPUTF8 is not implemented")
	replySMTPUTF8Value = reply.New(501, 5, 4, "SMTPUTF8 takes no value")
	replyAuthParam     = reply.New(501, 5, 4, "Malformed AUTH parameter value")
	replyAuthMailbox   = reply.New(501, 5, 4, "Malformed AUTH parameter mailbox")
	replyDataArgs      = reply.New(501, 5, 4, "DATA command should not have any arguments")
	replyBDATSyntax    = reply.New(501, 5, 4, "Syntax: BDAT <size> [LAST]")
	replyBDATArg       = reply.New(501, 5, 4, "Unknown BDAT argument")
	replyBDATSize      = reply.New(501, 5, 4, "Malformed size argument")
	replyAuthSyntax    = reply.New(501, 5, 4, "Syntax: AUTH mechanism [initial-response]")
	replyTLSParams     = reply.New(501, 5, 4, "STARTTLS takes no parameters")

	// Order of commands (RFC 5321 §4.1.4, RFC 3463 §3.6: X.5.1).
	replyNoHello         = reply.New(503, 5, 1, "Please introduce yourself first")
	replyHelloInTransfer = reply.New(503, 5, 1, "HELO/EHLO not allowed during message transfer")
	replyMailInTransfer  = reply.New(503, 5, 1, "MAIL not allowed during message transfer")
	replyNestedMail      = reply.New(503, 5, 1, "Nested MAIL command")
	replyNoMail          = reply.New(503, 5, 1, "Missing MAIL FROM command")
	replyRcptInTransfer  = reply.New(503, 5, 1, "RCPT not allowed during message transfer")
	replyDataInTransfer  = reply.New(503, 5, 1, "DATA not allowed during message transfer")
	replyNoRcpt          = reply.New(503, 5, 1, "Missing RCPT TO command")
	replyAlreadyAuth     = reply.New(503, 5, 1, "Already authenticated")
	replyAuthInMail      = reply.New(503, 5, 1, "AUTH not allowed during a mail transaction")
	replyAlreadyTLS      = reply.New(503, 5, 1, "Already running in TLS")
	replyTLSInTransfer   = reply.New(503, 5, 1, "STARTTLS not allowed during message transfer")
	replyNoTLS           = reply.New(502, 5, 1, "TLS not supported")

	// Success.
	replyReset = reply.New(250, 0, 0, "Session reset")                    // RFC 5321 §4.1.1.5
	replyNoop  = reply.New(250, 0, 0, "I have successfully done nothing") // §4.1.1.9
	// RFC 5321 §4.1.1.8, §4.2.2: 214, a help message for a human.
	replyHelp      = reply.New(214, 0, 0, "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY STARTTLS AUTH HELP")
	replyBye       = reply.New(221, 0, 0, "Bye") // §4.1.1.10, WithHost
	replyVRFY      = reply.New(252, 5, 0, "Cannot VRFY user, but will accept message")
	replySenderOK  = reply.New(250, 1, 0, "Sender <%s> ok")    // RFC 3463 §3.2: X.1.0
	replyRcptOK    = reply.New(250, 1, 5, "Recipient <%s> ok") // X.1.5: destination valid
	replyDataOK    = reply.New(250, 0, 0, "OK: queued")        // when the session gives no reply of its own
	replyChunkOK   = reply.New(250, 0, 0, "%d octets received")
	replyStartData = reply.Plain(354, "Go ahead. End your data with <CR><LF>.<CR><LF>")
	replyChallenge = reply.Plain(334, "%s") // RFC 4954 §4: base64 challenge
	replyAuthOK    = reply.New(235, 0, 0, "Authentication succeeded")
	replyStartTLS  = reply.New(220, 0, 0, "Ready to start TLS")
	replyTLSNeeded = reply.New(523, 7, 10, "TLS is required") // RFC 5248: X.7.10 encryption needed
	replyTooBig    = reply.New(552, 3, 4, "Max message size exceeded")
	replyMaxRcpts  = reply.New(452, 5, 3, "Maximum limit of %d recipients reached") // RFC 5321 §4.5.3.1.10
	replyInternal  = reply.New(421, 3, 0, "Internal server error")                  // WithHost
	replyIdle      = reply.New(421, 4, 2, "Idle timeout, closing connection")       // RFC 5321 §4.5.3.2, WithHost
	// Config.MinDataRate and Config.DataTimeout (RFC 3463 §3.5: X.4.2, bad connection); WithHost.
	replyDataRate    = reply.New(421, 4, 2, "Message data came too slowly, closing connection")
	replyDataTimeout = reply.New(421, 4, 2, "Message data took too long, closing connection")
	replyManyErrors  = reply.New(421, 7, 0, "Too many errors, closing connection") // WithHost
)

// ErrDataTooLarge is what the message reader returns past
// Config.MaxMessageBytes (RFC 1870); a session that passes it on makes
// it the reply to the message.
var ErrDataTooLarge = reply.New(552, 3, 4, "Maximum message size exceeded")
