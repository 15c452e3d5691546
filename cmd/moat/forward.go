package main

import (
	"moat/gateway"
	"moat/relay/srs"
)

// setForwarding wires SRS (and ARC sealing) of forwarded copies into the
// session checks.
func setForwarding(cfg *Config, c *gateway.Checks) error {
	r, err := srs.NewFromConfig(cfg.SRS)
	if err != nil {
		return err
	}
	c.SRS = r
	return nil
}
