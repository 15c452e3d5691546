package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"moat/gateway"
	"moat/gateway/acmecert"
	"moat/gateway/stspub"
)

// certServices are the certificate parts with listeners of their own:
// ACME's challenge listeners and the MTA-STS policy server.
type certServices struct {
	acme    *acmecert.Manager // nil: acme off
	sts     *stspub.Server    // nil: nothing published
	tlsConf *tls.Config
}

// buildCerts loads tls: and sets up ACME (with mta-sts.<domain> of each
// published policy among its names), registers the expiry metric of
// every certificate (label name: the certificate file, or acme:<name>)
// and returns the listeners' TLS configuration; nil when neither is set.
func (a *app) buildCerts(cfg *Config) (*tls.Config, error) {
	if !cfg.TLS.Configured() && !cfg.ACME.Enabled {
		return nil, nil
	}
	certs, err := gateway.LoadCertificates(cfg.TLS)
	if err != nil {
		return nil, err
	}
	for i, f := range certs.Files() {
		a.metrics.TLSCertificate(f.CertFile, func() *x509.Certificate { return certs.LeafAt(i) })
	}
	if cfg.ACME.Enabled {
		mgr, err := newACME(cfg, a.log.Named("acme"))
		if err != nil {
			return nil, err
		}
		certs.SetSource(mgr)
		for _, n := range mgr.Names() {
			a.metrics.TLSCertificate("acme:"+n, func() *x509.Certificate { return mgr.Leaf(n) })
		}
		a.certx.acme = mgr
	}
	a.certs = certs
	a.certx.tlsConf = certs.ServerConfig()
	return a.certx.tlsConf, nil
}

func newACME(cfg *Config, log *zap.Logger) (*acmecert.Manager, error) {
	return acmecert.New(cfg.ACME, acmecert.Options{
		Hostname: cfg.Hostname,
		DataDir:  cfg.DataDir,
		Extra:    cfg.MTASTS.Own.Hosts(),
		Logger:   log,
	})
}

// startCerts binds and serves the ACME challenge listeners and the
// MTA-STS listener; an error leaves none of them open.
func (a *app) startCerts(cfg *Config) error {
	if a.certx.acme != nil {
		if err := a.certx.acme.Start(a.certx.tlsConf); err != nil {
			return err
		}
	}
	if cfg.MTASTS.Own.Enabled() {
		ln, err := stspub.Listen(cfg.MTASTS.Own)
		if err != nil {
			a.stopCerts(context.Background())
			return err
		}
		a.certx.sts = stspub.Serve(cfg.MTASTS.Own, ln, a.certx.tlsConf)
		a.log.Info("serving MTA-STS policies", zap.String("address", ln.Addr().String()), zap.Strings("hosts", cfg.MTASTS.Own.Hosts()))
	}
	return nil
}

func (a *app) stopCerts(ctx context.Context) {
	if a.certx.sts != nil {
		a.certx.sts.Close()
	}
	if a.certx.acme != nil {
		a.certx.acme.Close(ctx)
	}
}

// checkCertificates is preflight's part: the files load, the acme
// section builds, and each published MTA-STS policy has a certificate
// for mta-sts.<domain> (from ACME, or a file for that name: the default
// certificate alone would fail the senders' verification, RFC 8461 §3.3).
func checkCertificates(cfg *Config) error {
	var errs []error
	var certs *gateway.Certificates
	if cfg.TLS.Configured() {
		c, err := gateway.LoadCertificates(cfg.TLS)
		if err != nil {
			return err
		}
		certs = c
	}
	if cfg.ACME.Enabled {
		if _, err := newACME(cfg, zap.NewNop()); err != nil {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	for i, p := range cfg.MTASTS.Own.Publish {
		if h := stspub.HostFor(p.Domain); certs == nil || !certs.Covers(h) {
			errs = append(errs, fmt.Errorf("mta_sts.publish[%d].domain: no certificate for %s in tls.certificates, and acme is off", i, h))
		}
	}
	return errors.Join(errs...)
}

// mtaSTSCommand is `moat mta-sts record FILE`: the DNS records to
// publish for the policies in mta_sts.publish.
func mtaSTSCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mta-sts",
		Short: "MTA-STS policies published for our own domains",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "record FILE",
		Short: "Print the _mta-sts TXT record of each policy in mta_sts.publish, and the policy served",
		Long: `Print, for each policy in mta_sts.publish of the configuration FILE, the
_mta-sts TXT record to publish (RFC 8461 §3.1; its id is a hash of the policy,
so it changes whenever the policy does: publish the new record after moat
serves the new policy) and the policy text served at
https://mta-sts.<domain>/.well-known/mta-sts.txt.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cfg, err := loadConfig(args[0])
			if err != nil {
				return fmt.Errorf("configuration: %s", strings.Join(errorLines(err), "; "))
			}
			return printSTSRecords(c.OutOrStdout(), cfg.MTASTS.Own)
		},
	})
	return cmd
}

func printSTSRecords(w io.Writer, c stspub.Config) error {
	if !c.Enabled() {
		return errors.New("mta_sts.publish is empty: no policy is published")
	}
	for _, p := range c.Publish {
		fmt.Fprintln(w, p.Record())
		fmt.Fprintf(w, "; served at https://%s%s (%s needs an address record for this host):\n", stspub.HostFor(p.Domain), stspub.WellKnownPath, stspub.HostFor(p.Domain))
		for _, l := range strings.Split(strings.TrimRight(p.Text(), "\r\n"), "\r\n") {
			fmt.Fprintln(w, ";   "+l)
		}
	}
	return nil
}
