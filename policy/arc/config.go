package arc

import (
	"fmt"
	"strings"
)

// Config is the `arc:` section. Validation of incoming chains runs with
// the other authentication checks (auth.enabled); this section is about
// sealing.
type Config struct {
	// Seal adds an ARC set to mail forwarded by an alias or catch-all
	// to a remote address.
	Seal bool `mapstructure:"seal"`
	// Domain is the d= of the seal; its key is the dkim.sign key of that
	// domain. Default: srs.domain when it has a key, else the parent
	// domain of hostname.
	Domain string `mapstructure:"domain"`
}

// Validate checks the section; errors name the key. Whether the domain
// has a dkim.sign key is checked where the keys are loaded.
func (c Config) Validate() error {
	if c.Domain != "" && (strings.ContainsAny(c.Domain, "@ \t;=") || !strings.Contains(strings.Trim(c.Domain, "."), ".")) {
		return fmt.Errorf("arc.domain: %q is not a fully qualified domain name", c.Domain)
	}
	return nil
}
