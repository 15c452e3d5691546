package mailbox

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
)

// Config is the `mailboxes` section of the configuration.
//
// Defaults: Root is <data_dir>/mailboxes (SetDefaults); Quota "" (none);
// RecipientDelimiter "+" when unset.
//
// Map keys are addresses that contain dots: the configuration loader must
// not split keys at '.' (cmd/moat uses viper's KeyDelimiter("::")).
type Config struct {
	// Root holds one Maildir per user at Root/<domain>/<localpart>.
	Root string `mapstructure:"root"`
	// Users maps an address to its settings.
	Users map[string]UserConfig `mapstructure:"users"`
	// UsersFile is a passwd-like file, one "address:hash[:quota]" a line;
	// see ParseUsersFile.
	UsersFile string `mapstructure:"users_file"`
	// Aliases maps an address to an address or a list of addresses;
	// targets may be remote.
	Aliases map[string]any `mapstructure:"aliases"`
	// CatchAll maps a local domain to the address that receives mail for
	// its unknown local parts.
	CatchAll map[string]string `mapstructure:"catch_all"`
	// Quota is the default per-mailbox quota: bytes, or a size such as
	// "500M" or "1G" (powers of 1024); "" or "0" is none.
	Quota string `mapstructure:"quota"`
	// RecipientDelimiter separates a subaddress ("alice+lists@") from the
	// mailbox (RFC 5233 §1); each character of the string is a delimiter,
	// as in Postfix. nil means "+"; "" turns subaddressing off.
	RecipientDelimiter *string `mapstructure:"recipient_delimiter"`
	// JunkFolder is the Maildir++ folder that mail the rules marked as
	// junk is delivered into: <mailbox>/.<JunkFolder>/ (Dovecot's and
	// Courier's layout; see maildir.ValidFolder for the names allowed).
	// "INBOX" delivers junk to the inbox like other mail (its X-Spam-*
	// fields still tell a Sieve script). Default "Junk" (SetDefaults).
	JunkFolder string `mapstructure:"junk_folder"`
}

// UserConfig is one user of Config.Users.
type UserConfig struct {
	// PasswordHash is bcrypt or argon2id (see HashPassword); empty means
	// the user receives mail but cannot log in.
	PasswordHash string `mapstructure:"password_hash" secret:"true"`
	// Quota overrides Config.Quota; "" means the default, "0" none.
	Quota string `mapstructure:"quota"`
}

// DefaultRecipientDelimiter is used when RecipientDelimiter is nil.
const DefaultRecipientDelimiter = "+"

// DefaultJunkFolder is used when JunkFolder is empty: the special-use
// \Junk mailbox name (RFC 6154) that Dovecot's default configuration
// and most clients use.
const DefaultJunkFolder = "Junk"

// SetDefaults fills what the file left empty: Root from data_dir and the
// recipient delimiter.
func (c *Config) SetDefaults(dataDir string) {
	if c.Root == "" && dataDir != "" {
		c.Root = filepath.Join(dataDir, "mailboxes")
	}
	if c.RecipientDelimiter == nil {
		d := DefaultRecipientDelimiter
		c.RecipientDelimiter = &d
	}
	if c.JunkFolder == "" {
		c.JunkFolder = DefaultJunkFolder
	}
}

// Validate checks the section against the local domains (domains.local):
// every user, alias and catch-all is in a local domain, every alias and
// catch-all target is a valid address and resolves when it is local,
// there is no alias loop, and the users file parses. Every error names
// its key, e.g. "mailboxes.aliases.team@example.org: ...".
func (c *Config) Validate(localDomains []string) error {
	_, err := build(*c, localDomains)
	return err
}

// ParseSize reads a size: a number of bytes, optionally followed by K, M,
// G or T (powers of 1024, an optional "B" or "iB" after the letter).
// "" is 0.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, nil
	}
	u := strings.ToUpper(t)
	u = strings.TrimSuffix(u, "IB")
	u = strings.TrimSuffix(u, "B")
	mult := int64(1)
	if n := len(u); n > 0 {
		switch u[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult != 1 {
			u = strings.TrimSpace(u[:n-1])
		}
	}
	n, err := strconv.ParseInt(u, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want bytes or a number with K, M, G or T", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * mult, nil
}

// aliasTargets turns an alias value as a YAML/viper decoder gives it
// (a string, []any of strings, []string) into a list.
func aliasTargets(v any) ([]string, error) {
	switch t := v.(type) {
	case string:
		return []string{t}, nil
	case []string:
		return t, nil
	case []any:
		out := make([]string, 0, len(t))
		for i, e := range t {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("item %d: want an address, got %T", i, e)
			}
			out = append(out, s)
		}
		return out, nil
	case map[string]any, map[any]any:
		return nil, errors.New("want an address or a list of addresses, got a map " +
			"(was the key split at '.' by the config loader?)")
	}
	return nil, fmt.Errorf("want an address or a list of addresses, got %T", v)
}

// checkDelimiter allows ASCII atext characters other than '.'.
func checkDelimiter(d string) error {
	if len(d) > 8 {
		return errors.New("at most 8 characters")
	}
	for i := 0; i < len(d); i++ {
		if !isAtext(d[i]) {
			return fmt.Errorf("%q is not an atext character (RFC 5322 §3.2.3) other than '.'", d[i])
		}
	}
	return nil
}
