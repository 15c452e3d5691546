package mailbox

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// HashPassword hashes pw with argon2id and returns a PHC string
// "$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>".
//
// argon2id (RFC 9106) rather than bcrypt: it is memory-hard and has no
// 72-byte password limit. The parameters are the OWASP Password Storage
// Cheat Sheet's first argon2id setting (19 MiB, 2 passes, 1 lane), with a
// 16-byte random salt and a 32-byte tag (RFC 9106 §3.1). RFC 9106 §4's
// 64 MiB, t=3, p=4 took about 220 ms per login on the 2-core reference
// machine, too much for SMTP AUTH next to mail traffic; this setting costs
// a fraction of that and one core. bcrypt hashes made elsewhere (Dovecot's
// BLF-CRYPT, htpasswd) are verified too.
func HashPassword(pw string) (string, error) {
	if err := checkPassword(pw); err != nil {
		return "", err
	}
	salt := make([]byte, argonSaltLen)
	_, _ = rand.Read(salt) // crypto/rand.Read never fails (Go 1.24+)
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonSaltLen = 16
	argonKeyLen  = 32
	// maxPasswordLen bounds the work a client can ask for.
	maxPasswordLen = 1024
)

// b64 is the PHC string format's base64: standard alphabet, no padding.
var b64 = base64.RawStdEncoding

// dummyHash is verified when the user is unknown or has no password, so
// that a failed login costs the same whether or not the user exists.
// It is the hash of a random password nobody knows, made by HashPassword.
const dummyHash = "$argon2id$v=19$m=19456,t=2,p=1$8/7UaR4GXbm3tlNbrBSv8Q$zZIHPs0PUDnAh/wSpLkyk8EdhwJk9h9YVnR8GJXJRAo"

func checkPassword(pw string) error {
	switch {
	case pw == "":
		return errors.New("empty password")
	case len(pw) > maxPasswordLen:
		return fmt.Errorf("password longer than %d bytes", maxPasswordLen)
	}
	return nil
}

// Dovecot passwd-file scheme prefixes that we understand.
func stripScheme(h string) string {
	for _, p := range []string{"{ARGON2ID}", "{BLF-CRYPT}"} {
		if len(h) >= len(p) && strings.EqualFold(h[:len(p)], p) {
			return h[len(p):]
		}
	}
	return h
}

// hashKind reports which verifier a stored hash needs.
func hashKind(h string) string {
	h = stripScheme(h)
	switch {
	case strings.HasPrefix(h, "$argon2id$"):
		return "argon2id"
	case strings.HasPrefix(h, "$2a$"), strings.HasPrefix(h, "$2b$"), strings.HasPrefix(h, "$2y$"):
		return "bcrypt"
	}
	return ""
}

// checkHash validates a stored hash without a password.
func checkHash(h string) error {
	switch hashKind(h) {
	case "argon2id":
		_, err := parseArgon2id(stripScheme(h))
		return err
	case "bcrypt":
		cost, err := bcrypt.Cost([]byte(stripScheme(h)))
		if err != nil {
			return fmt.Errorf("bcrypt hash: %w", err)
		}
		if cost > maxBcryptCost {
			return fmt.Errorf("bcrypt cost %d above %d: too slow for AUTH", cost, maxBcryptCost)
		}
		return nil
	}
	return errors.New(`password hash is neither bcrypt ("$2a$", "$2b$", "$2y$") nor argon2id ("$argon2id$v=19$...")`)
}

const maxBcryptCost = 16

type argonParams struct {
	m    uint32
	t    uint32
	p    uint8
	salt []byte
	key  []byte
}

// parseArgon2id reads "$argon2id$v=19$m=..,t=..,p=..$salt$hash" and
// bounds the parameters, so that a hash cannot make a login take gigabytes
// or minutes.
func parseArgon2id(h string) (argonParams, error) {
	var a argonParams
	parts := strings.Split(h, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return a, errors.New(`argon2id hash: want "$argon2id$v=19$m=M,t=T,p=P$salt$hash"`)
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return a, fmt.Errorf("argon2id hash: version %q, want v=%d", parts[2], argon2.Version)
	}
	var seen [3]bool
	for kv := range strings.SplitSeq(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return a, fmt.Errorf("argon2id hash: parameter %q is not a number", kv)
		}
		switch k {
		case "m":
			a.m, seen[0] = uint32(n), true
		case "t":
			a.t, seen[1] = uint32(n), true
		case "p":
			if n > 255 {
				return a, fmt.Errorf("argon2id hash: p=%d above 255", n)
			}
			a.p, seen[2] = uint8(n), true
		default:
			return a, fmt.Errorf("argon2id hash: unknown parameter %q", k)
		}
	}
	switch {
	case !seen[0] || !seen[1] || !seen[2]:
		return a, errors.New("argon2id hash: m, t and p are all required")
	case a.m < 8*uint32(a.p) || a.m > 1<<20:
		return a, fmt.Errorf("argon2id hash: m=%d outside 8*p KiB to 1 GiB", a.m)
	case a.t < 1 || a.t > 64:
		return a, fmt.Errorf("argon2id hash: t=%d outside 1 to 64", a.t)
	case a.p < 1:
		return a, errors.New("argon2id hash: p must be at least 1")
	}
	var err error
	if a.salt, err = b64.DecodeString(parts[4]); err != nil || len(a.salt) < 8 || len(a.salt) > 64 {
		return a, errors.New("argon2id hash: salt must be 8 to 64 bytes of unpadded base64")
	}
	if a.key, err = b64.DecodeString(parts[5]); err != nil || len(a.key) < 16 || len(a.key) > 128 {
		return a, errors.New("argon2id hash: hash must be 16 to 128 bytes of unpadded base64")
	}
	return a, nil
}

// verifyPassword compares pw with a stored hash in constant time (for
// a given hash). An error means the hash itself is unusable.
func verifyPassword(hash, pw string) (bool, error) {
	h := stripScheme(hash)
	switch hashKind(h) {
	case "argon2id":
		a, err := parseArgon2id(h)
		if err != nil {
			return false, err
		}
		key := argon2.IDKey([]byte(pw), a.salt, a.t, a.m, a.p, uint32(len(a.key)))
		return subtle.ConstantTimeCompare(key, a.key) == 1, nil
	case "bcrypt":
		if cost, err := bcrypt.Cost([]byte(h)); err != nil || cost > maxBcryptCost {
			return false, checkHash(h)
		}
		err := bcrypt.CompareHashAndPassword([]byte(h), []byte(pw))
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
			return false, nil
		}
		return false, fmt.Errorf("bcrypt hash: %w", err)
	}
	return false, checkHash(h)
}
