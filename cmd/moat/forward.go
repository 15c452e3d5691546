package main

import (
	"fmt"
	"strings"

	"moat/gateway"
	"moat/policy/arc"
	"moat/policy/dkimsign"
	"moat/relay/srs"
)

// setForwarding wires SRS and ARC sealing of forwarded copies into the
// session checks (gateway/forward.go). c.Signer must be set first: the
// seal uses the dkim.sign key of its domain.
func setForwarding(cfg *Config, c *gateway.Checks) error {
	r, err := srs.NewFromConfig(cfg.SRS)
	if err != nil {
		return err
	}
	c.SRS = r
	if !cfg.ARC.Seal {
		return nil
	}
	domain := arcDomain(cfg)
	if c.Signer == nil {
		return fmt.Errorf("arc.seal: needs a dkim.sign key for %q", domain)
	}
	sel, key, ok := c.Signer.Key(domain)
	if !ok {
		return fmt.Errorf("arc.domain: no dkim.sign key for %q (set arc.domain or add the key)", domain)
	}
	s, err := arc.NewSealer(arc.SealerOptions{Domain: domain, Selector: sel, Key: key, Resolver: c.Resolver})
	if err != nil {
		return fmt.Errorf("arc.seal: %w", err)
	}
	c.Sealer = s
	return nil
}

// arcDomain is arc.domain, else srs.domain, else the parent domain of
// the host name.
func arcDomain(cfg *Config) string {
	if cfg.ARC.Domain != "" {
		return strings.ToLower(strings.TrimSuffix(cfg.ARC.Domain, "."))
	}
	if cfg.SRS.Enabled() {
		return strings.ToLower(strings.TrimSuffix(cfg.SRS.Domain, "."))
	}
	h := strings.ToLower(strings.TrimSuffix(cfg.Hostname, "."))
	if _, parent, ok := strings.Cut(h, "."); ok && strings.Contains(parent, ".") {
		return parent
	}
	return h
}

// checkForwarding is check-config's view of setForwarding: the same
// construction, on the configured keys, without a resolver.
func checkForwarding(cfg *Config) error {
	c := &gateway.Checks{}
	if len(cfg.DKIM.Sign) > 0 {
		s, err := dkimsign.NewSigner(cfg.DKIM.Sign)
		if err != nil {
			return nil // reported as dkim.sign
		}
		c.Signer = s
	}
	return setForwarding(cfg, c)
}
