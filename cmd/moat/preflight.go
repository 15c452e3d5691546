package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"moat/ops/admin"
	"moat/policy/authlimit"
	"moat/policy/dkimsign"
	"moat/relay/verify"
)

// loadChecked loads the configuration at path and runs preflight on it:
// what `moat serve` and `moat check-config` both do before anything is
// bound, so that check-config says ok exactly when serve gets past its
// checks (issue 24: one validation path).
func loadChecked(path string) (*Config, error) {
	cfg, err := loadConfig(path)
	if err != nil {
		return cfg, err
	}
	return cfg, preflight(cfg)
}

// preflight runs the checks serve makes while it builds its parts, with
// no lasting side effect: listen ports in range, the admin address and
// token rule (admin.New itself), files opened and parsed as the user
// running it (TLS certificate and key, DKIM keys, token, recipient
// lists, users files), and data_dir and log.mail_log writable. Every
// error names its key. Config.Validate has run before.
func preflight(cfg *Config) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	for i, l := range cfg.Listeners {
		add(checkPort(fmt.Sprintf("listeners[%d].address", i), l.Address))
	}
	if cfg.Admin.Address != "" {
		add(checkPort("admin.address (MOAT_ADMIN_ADDRESS)", cfg.Admin.Address))
		token, err := "", error(nil)
		if cfg.Admin.TokenFile != "" {
			token, err = readToken(cfg.Admin.TokenFile) // reported by Validate
		}
		if err == nil {
			// The same constructor serve calls: a non-loopback address
			// needs admin.token_file or admin.open_metrics.
			_, err := admin.New(admin.Options{Address: cfg.Admin.Address, Token: token, OpenMetrics: cfg.Admin.OpenMetrics})
			add(err)
		}
	}
	add(writableDir("data_dir", cfg.DataDir))
	add(writableFile("log.mail_log", cfg.Log.MailLog))
	add(checkCertificates(cfg)) // tls, acme, mta_sts (certs.go)
	if len(cfg.DKIM.Sign) > 0 {
		if _, err := dkimsign.NewSigner(cfg.DKIM.Sign); err != nil {
			add(fmt.Errorf("dkim.sign: %w", err))
		}
	}
	add(checkForwarding(cfg))
	if v, err := verify.New(cfg.Verify, cfg.Routes, verify.Options{Hostname: cfg.Hostname}); err != nil {
		add(err)
	} else {
		v.Close()
	}
	if _, err := buildState(cfg, nil); err != nil {
		add(err)
	}
	if _, err := authlimit.New(cfg.Submission.Config, authlimit.Options{}); err != nil {
		add(err)
	}
	return errors.Join(errs...)
}

// checkPort: the port of a listen address is a number from 0 to 65535 or
// a service name the system knows.
func checkPort(key, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: %q is not host:port", key, addr)
	}
	if port == "" {
		return fmt.Errorf("%s: %q has no port", key, addr)
	}
	if n, err := strconv.Atoi(port); err == nil {
		if n < 0 || n > 65535 {
			return fmt.Errorf("%s: port %d of %q is out of range (0-65535)", key, n, addr)
		}
		return nil
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("%s: port %q of %q is neither a number nor a known service", key, port, addr)
	}
	return nil
}

// writableDir: dir (or, when it does not exist yet, the nearest parent,
// where serve creates it) takes a new file. The probe file is removed.
func writableDir(key, dir string) error {
	if dir == "" {
		return nil
	}
	d := dir
	for i := 0; i < 64; i++ { // bounded walk up to the root
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s: %s is not a directory", key, d)
			}
			f, err := os.CreateTemp(d, ".moat-check-*")
			if err != nil {
				return fmt.Errorf("%s: %s is not writable: %w", key, d, err)
			}
			f.Close()
			os.Remove(f.Name())
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: %w", key, err)
		}
		p := filepath.Dir(d)
		if p == d {
			break
		}
		d = p
	}
	return fmt.Errorf("%s: no existing parent directory of %s", key, dir)
}

// writableFile: a file serve appends to opens for appending, or can be
// created in its directory. "" and "-" (none, standard error) pass.
func writableFile(key, path string) error {
	switch path {
	case "", "-":
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		return f.Close()
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w", key, err)
	}
	return writableDir(key, filepath.Dir(path))
}
