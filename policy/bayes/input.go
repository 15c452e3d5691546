package bayes

import (
	"bytes"
	"crypto/sha256"
	"path"
	"strings"

	"moat/policy/content"
)

// Field is one header field, name and decoded value.
type Field struct {
	Name, Value string
}

// Input is what the classifier reads of a message. The gateway fills it
// from its message analysis; FromContent builds one from a
// *content.Message.
type Input struct {
	// Headers are the top-level header fields, top to bottom. Only the
	// fields the tokenizer knows are read for their values; the names of
	// all are tokens.
	Headers []Field
	// Subject is the decoded Subject.
	Subject string
	// Text is the visible body text (HTML stripped), decoded to UTF-8.
	Text string
	// URLs are the URLs (or bare host names) found in the message.
	URLs []string
	// Parts are MIME structure tokens, e.g. "multipart/alternative",
	// "att:application/pdf", "ext:pdf".
	Parts []string
}

// Digest identifies a learned message.
type Digest [32]byte

// maxFromContentFields bounds the header fields copied by FromContent.
const maxFromContentFields = 200

// headerFields are the fields FromContent copies into an Input.
var headerFields = []string{
	"From", "Reply-To", "Return-Path", "Sender", "To", "Cc", "Message-ID",
	"Received", "X-Mailer", "User-Agent", "Content-Type", "List-Id",
	"List-Unsubscribe", "Precedence", "X-Priority", "MIME-Version",
	"Content-Transfer-Encoding", "Organization",
}

// FromContent builds the Input of a parsed message. URLs are taken from
// the visible text (href targets of stripped HTML are not in it; the
// gateway's analysis supplies those).
func FromContent(m *content.Message, names []string) Input {
	in := Input{Subject: m.Subject(), Text: m.Text()}
	for _, name := range headerFields {
		for _, v := range m.HeaderValues(name) {
			if len(in.Headers) >= maxFromContentFields {
				break
			}
			in.Headers = append(in.Headers, Field{Name: name, Value: v})
		}
	}
	for _, n := range names {
		if len(in.Headers) >= maxFromContentFields {
			break
		}
		in.Headers = append(in.Headers, Field{Name: n})
	}
	ct := strings.ToLower(strings.TrimSpace(m.Header("Content-Type")))
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = strings.TrimSpace(ct[:i])
	}
	if ct == "" {
		ct = "text/plain"
	}
	in.Parts = append(in.Parts, "top:"+ct)
	for _, a := range m.Attachments() {
		in.Parts = append(in.Parts, "att:"+a.ContentType)
		if ext := strings.ToLower(path.Ext(a.Name)); ext != "" {
			in.Parts = append(in.Parts, "ext:"+ext[1:])
		}
	}
	in.URLs = textURLs(in.Text, 100)
	return in
}

// FieldNames returns the names of the header fields of raw's header
// section, at most max, in order (so the presence of a field is a token).
func FieldNames(raw []byte, max int) []string {
	var out []string
	for len(raw) > 0 && len(out) < max {
		i := bytes.IndexByte(raw, '\n')
		line := raw
		if i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break // RFC 5322 §2.1: the empty line ends the header section
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // RFC 5322 §2.2.3: a folded continuation
		}
		if c := bytes.IndexByte(line, ':'); c > 0 && c <= 76 {
			out = append(out, string(bytes.TrimSpace(line[:c])))
		}
	}
	return out
}

// Parse parses raw (a whole message) and returns its Input and Digest,
// for `moat learn` and for tests.
func Parse(raw []byte) (Input, Digest, error) {
	m, err := content.Parse(raw, content.Options{})
	if err != nil {
		return Input{}, Digest{}, err
	}
	return FromContent(m, FieldNames(raw, 100)), DigestOf(m.Header("Message-ID"), raw), nil
}

// DigestOf returns the digest of a message: SHA-256 over its Message-ID
// and its body (the bytes after the header section, line endings
// normalised to LF and trailing white space dropped). Trace fields added in
// transit do not change it, so one message learned from two mailboxes
// counts once.
func DigestOf(messageID string, raw []byte) Digest {
	body := bodyOf(raw)
	h := sha256.New()
	h.Write([]byte("moat-bayes-1\x00"))
	h.Write([]byte(strings.TrimSpace(messageID)))
	h.Write([]byte{0})
	body = bytes.TrimRight(body, " \t\r\n")
	for len(body) > 0 {
		i := bytes.IndexByte(body, '\n')
		if i < 0 {
			h.Write(body)
			break
		}
		h.Write(bytes.TrimSuffix(body[:i], []byte("\r")))
		h.Write([]byte{'\n'})
		body = body[i+1:]
	}
	var d Digest
	h.Sum(d[:0])
	return d
}

// bodyOf returns the bytes after the empty line that ends the header
// section (RFC 5322 §2.1), or nil when there is none.
func bodyOf(raw []byte) []byte {
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			return nil
		}
		line := bytes.TrimSuffix(raw[:i], []byte("\r"))
		raw = raw[i+1:]
		if len(line) == 0 {
			return raw
		}
	}
	return nil
}
