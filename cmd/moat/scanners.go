package main

import (
	"fmt"

	"go.uber.org/zap"

	"moat/gateway"
	"moat/ops/metrics"
	"moat/policy/scanner"
	"moat/policy/scanner/clamd"
	"moat/policy/scanner/milter"
	"moat/policy/scanner/rspamd"
	"moat/policy/scanner/spamd"
)

// scannerConstructors map scanners[].type to its client's constructor
// (one package per protocol under policy/scanner).
var scannerConstructors = map[string]func(scanner.Config) (scanner.Scanner, error){
	scanner.TypeRspamd: constructor(rspamd.New),
	scanner.TypeSpamd:  constructor(spamd.New),
	scanner.TypeClamd:  constructor(clamd.New),
	scanner.TypeMilter: constructor(milter.New),
}

// constructor turns a client package's New into the table's type (no
// typed nil in the interface on error).
func constructor[C scanner.Scanner](newClient func(scanner.Config) (C, error)) func(scanner.Config) (scanner.Scanner, error) {
	return func(c scanner.Config) (scanner.Scanner, error) {
		s, err := newClient(c)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
}

// newScanners builds the clients of `scanners:` for moat serve, their
// metrics hooks (m may be nil) and the virus policy; nil when none are
// configured.
func newScanners(cfg *Config, m *metrics.Metrics, log *zap.Logger) (*gateway.Scanners, error) {
	if len(cfg.Scanners) == 0 {
		return nil, nil
	}
	opt := gateway.ScannersOptions{VirusAction: cfg.VirusAction, Hostname: cfg.Hostname, MaxMessageSize: cfg.SMTP.MaxMessageSize, Logger: log}
	for i, c := range cfg.Scanners {
		mk, ok := scannerConstructors[c.Type]
		if !ok {
			return nil, fmt.Errorf("scanners[%d].type: %q is not one of %q", i, c.Type, scanner.Types())
		}
		s, err := mk(c)
		if err != nil {
			return nil, fmt.Errorf("scanners[%d] (%s): %w", i, c.Name, err)
		}
		opt.Scanners = append(opt.Scanners, gateway.ScannerSpec{Config: c, Scanner: s})
	}
	if m != nil {
		opt.Observe, opt.Error, opt.Verdict = m.ScannerDuration, m.ScannerError, m.ScannerVerdict
	}
	sc := gateway.NewScanners(opt)
	if m != nil {
		m.Scanners(sc.Names())
	}
	return sc, nil
}

// offlineScanners are the scanners of an offline run (moat rules test,
// rules score): not called, their facts say skipped, so that a rule file
// that reads them runs alike; stored mail is not sent to live scanners.
func offlineScanners(cfg *Config) *gateway.Scanners {
	opt := gateway.ScannersOptions{VirusAction: cfg.VirusAction, Hostname: cfg.Hostname, Offline: true}
	for _, c := range cfg.Scanners {
		opt.Scanners = append(opt.Scanners, gateway.ScannerSpec{Config: c})
	}
	return gateway.NewScanners(opt)
}

// validateVirusAction checks virus_action.
func (c *Config) validateVirusAction() error {
	switch c.VirusAction {
	case gateway.VirusReject, gateway.VirusQuarantine:
		return nil
	}
	return fmt.Errorf("virus_action: %q is not reject or quarantine", c.VirusAction)
}
