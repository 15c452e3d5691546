// Package dkimsign signs outbound mail with DKIM (RFC 6376 §5) using
// go-msgauth, and makes keys for `moat dkim keygen`.
//
// Choices, with their sections:
//   - relaxed/relaxed canonicalization (RFC 6376 §3.4.2, §3.4.4): survives
//     the header rewrapping and trailing-space changes of relays.
//   - signed fields follow RFC 6376 §5.4.1; From is listed twice
//     ("oversigned", §8.15) so a second From added later breaks the
//     signature.
//   - rsa-sha256 or ed25519-sha256 (RFC 8463) only; RSA keys shorter than
//     2048 bits are refused at load (RFC 8301 §3.2: signers MUST use at least
//     1024 and SHOULD use 2048).
package dkimsign

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// minRSABits is the smallest RSA key accepted for signing (RFC 8301 §3.2
// SHOULD 2048).
const minRSABits = 2048

// maxKeyFile bounds the size of a key file.
const maxKeyFile = 64 * 1024

// HeaderKeys are the fields signed (RFC 6376 §5.4.1), From twice to
// oversign it (§8.15).
var headerKeys = []string{
	"From", "From", "To", "Cc", "Subject", "Date", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "Reply-To",
}

// Key is one signing key in the configuration.
type Key struct {
	Domain   string `mapstructure:"domain"`   // the d= domain whose mail is signed
	Selector string `mapstructure:"selector"` // s=; the key is published at <selector>._domainkey.<domain>
	KeyFile  string `mapstructure:"key_file"` // PEM private key: RSA (PKCS#1 or PKCS#8) or Ed25519 (PKCS#8)
}

// Validate checks one key's fields (not the file). Errors name the field;
// use ValidateKeys to get full key paths.
func (k Key) Validate() error {
	switch {
	case strings.TrimSpace(k.Domain) == "":
		return errors.New("domain: required")
	case !validName(k.Domain):
		return fmt.Errorf("domain: %q is not a domain name", k.Domain)
	case strings.TrimSpace(k.Selector) == "":
		return errors.New("selector: required")
	case !validName(k.Selector):
		return fmt.Errorf("selector: %q is not a valid selector (RFC 6376 §3.1)", k.Selector)
	case strings.TrimSpace(k.KeyFile) == "":
		return errors.New("key_file: required")
	}
	return nil
}

// ValidateKeys validates a list of keys configured at path (e.g.
// "dkim.keys"); errors read "dkim.keys[1].selector: required". Two keys for
// one domain are an error (which one would sign?).
func ValidateKeys(path string, keys []Key) error {
	seen := map[string]int{}
	for i, k := range keys {
		if err := k.Validate(); err != nil {
			return fmt.Errorf("%s[%d].%v", path, i, err)
		}
		d := strings.ToLower(strings.TrimSuffix(k.Domain, "."))
		if j, ok := seen[d]; ok {
			return fmt.Errorf("%s[%d].domain: %q already has a key at %s[%d]", path, i, k.Domain, path, j)
		}
		seen[d] = i
	}
	return nil
}

func validName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

type loadedKey struct {
	domain, selector string
	signer           crypto.Signer
}

// Signer signs messages with the key of their domain. It is safe for
// concurrent use.
type Signer struct {
	keys map[string]loadedKey // lower-case domain
}

// NewSigner validates keys and loads their key files.
func NewSigner(keys []Key) (*Signer, error) {
	if err := ValidateKeys("keys", keys); err != nil {
		return nil, err
	}
	s := &Signer{keys: map[string]loadedKey{}}
	for i, k := range keys {
		b, err := readBounded(k.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("keys[%d].key_file: %w", i, err)
		}
		signer, err := ParsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("keys[%d].key_file: %s: %w", i, k.KeyFile, err)
		}
		d := strings.ToLower(strings.TrimSuffix(k.Domain, "."))
		s.keys[d] = loadedKey{domain: d, selector: k.Selector, signer: signer}
	}
	return s, nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("larger than %d bytes", maxKeyFile)
	}
	return b, nil
}

// ParsePrivateKey reads a PEM private key: "RSA PRIVATE KEY" (PKCS#1) or
// "PRIVATE KEY" (PKCS#8, RSA or Ed25519).
func ParsePrivateKey(pemBytes []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
	}
	if err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key of %d bits is too short, want at least %d (RFC 8301 §3.2)", k.N.BitLen(), minRSABits)
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
}

// Sign reads the message (header and body, CRLF line endings) and returns
// the DKIM-Signature field to prepend, ending in CRLF. ok is false when no
// key is configured for domain (compared case-insensitively); the message
// is then not read.
func (s *Signer) Sign(domain string, msg io.Reader) (header string, ok bool, err error) {
	k, found := s.keys[strings.ToLower(strings.TrimSuffix(domain, "."))]
	if !found {
		return "", false, nil
	}
	ds, err := dkim.NewSigner(&dkim.SignOptions{
		Domain:                 k.domain,
		Selector:               k.selector,
		Signer:                 k.signer,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             headerKeys,
	})
	if err != nil {
		return "", true, err
	}
	if _, err := io.Copy(ds, msg); err != nil {
		ds.Close()
		return "", true, fmt.Errorf("dkim sign: %w", err)
	}
	if err := ds.Close(); err != nil {
		return "", true, fmt.Errorf("dkim sign: %w", err)
	}
	return ds.Signature(), true, nil
}

// Key returns the selector and private key of domain's signing key (for
// ARC sealing, policy/arc); ok is false when domain has none.
func (s *Signer) Key(domain string) (selector string, key crypto.Signer, ok bool) {
	k, found := s.keys[strings.ToLower(strings.TrimSuffix(domain, "."))]
	return k.selector, k.signer, found
}

// Domains returns the domains that have a key.
func (s *Signer) Domains() []string {
	out := make([]string, 0, len(s.keys))
	for d := range s.keys {
		out = append(out, d)
	}
	return out
}

// GenerateKey makes a new key, "rsa-2048" or "ed25519", and returns it as a
// PKCS#8 PEM block and the TXT record value to publish at
// <selector>._domainkey.<domain> (RFC 6376 §3.6.1, RFC 8463 §4.2).
func GenerateKey(algo string) (privPEM []byte, dnsTXT string, err error) {
	var priv crypto.Signer
	var pubData []byte
	var k string
	switch algo {
	case "rsa-2048", "rsa":
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, "", err
		}
		priv, k = rk, "rsa"
		pubData, err = x509.MarshalPKIXPublicKey(&rk.PublicKey)
		if err != nil {
			return nil, "", err
		}
	case "ed25519":
		pub, ek, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, "", err
		}
		// RFC 8463 §4.2: p= is the raw 32-byte public key.
		priv, k, pubData = ek, "ed25519", pub
	default:
		return nil, "", fmt.Errorf("unknown key algorithm %q (want rsa-2048 or ed25519)", algo)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, "", err
	}
	var buf bytes.Buffer
	if err := pem.Encode(&buf, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), "v=DKIM1; k=" + k + "; p=" + base64.StdEncoding.EncodeToString(pubData), nil
}
