package main

import (
	"errors"
	"fmt"
	"io"
	"moat/internal/atomicfile"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"moat/policy/dkimsign"
)

// dkimCommand is `moat dkim keygen`: it makes a signing key for
// policy/dkimsign and prints what to publish in DNS and what to put in
// the configuration.
func dkimCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dkim",
		Short: "DKIM signing keys",
		Args:  cobra.NoArgs,
	}
	var o keygenOpts
	keygen := &cobra.Command{
		Use:   "keygen --domain D --selector S",
		Short: "Make a DKIM signing key and print its DNS record",
		Long: `Make a DKIM signing key (RSA 2048 bits or Ed25519), write it to a file
readable only by its owner, and print the DNS TXT record to publish at
<selector>._domainkey.<domain> and the dkim.sign configuration that uses it.

Ed25519 (RFC 8463) signatures are small but not yet verified everywhere; sign
with an RSA key, and optionally a second Ed25519 key under another selector.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return o.run(c.OutOrStdout()) },
	}
	f := keygen.Flags()
	f.StringVar(&o.domain, "domain", "", "the signing domain, d= (required)")
	f.StringVar(&o.selector, "selector", "", "the selector, s= (required), e.g. 2026a")
	f.StringVar(&o.algorithm, "algorithm", "rsa-2048", "rsa-2048 or ed25519")
	f.StringVar(&o.out, "out", "", "private key file (default <domain>.<selector>.key in the current directory)")
	f.BoolVar(&o.force, "force", false, "replace an existing key file")
	cmd.AddCommand(keygen)
	return cmd
}

type keygenOpts struct {
	domain, selector, algorithm, out string
	force                            bool
}

func (o *keygenOpts) run(w io.Writer) error {
	o.domain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(o.domain), "."))
	o.selector = strings.TrimSpace(o.selector)
	if o.out == "" && o.domain != "" && o.selector != "" {
		o.out = o.domain + "." + o.selector + ".key"
	}
	k := dkimsign.Key{Domain: o.domain, Selector: o.selector, KeyFile: o.out}
	if err := k.Validate(); err != nil {
		return fmt.Errorf("dkim keygen: --%s", err)
	}
	if o.algorithm != "rsa-2048" && o.algorithm != "ed25519" {
		return fmt.Errorf("dkim keygen: --algorithm: %q is not rsa-2048 or ed25519", o.algorithm)
	}
	if !o.force {
		if _, err := os.Lstat(o.out); err == nil {
			return fmt.Errorf("dkim keygen: %s exists; use --force to replace it (the published record must change too)", o.out)
		}
	}
	priv, txt, err := dkimsign.GenerateKey(o.algorithm)
	if err != nil {
		return fmt.Errorf("dkim keygen: %w", err)
	}
	if err := writeKeyFile(o.out, priv, o.force); err != nil {
		return fmt.Errorf("dkim keygen: %w", err)
	}
	abs, err := filepath.Abs(o.out)
	if err != nil {
		abs = o.out
	}
	name := o.selector + "._domainkey." + o.domain + "."
	fmt.Fprintf(w, "Private key written to %s (mode 0600). Keep it secret.\n\n", abs)
	fmt.Fprintf(w, "Publish this DNS record (zone file syntax):\n\n%s IN TXT %s\n\n", name, zoneStrings(txt))
	fmt.Fprintf(w, "or, in a DNS provider's form: name %s, type TXT, value:\n\n%s\n\n", strings.TrimSuffix(name, "."), txt)
	fmt.Fprintf(w, "Then add the key to the configuration:\n\n"+
		"dkim:\n  sign:\n    - domain: %s\n      selector: %s\n      key_file: %s\n",
		o.domain, o.selector, yamlQuote(abs))
	return nil
}

// zoneStrings writes a TXT value as zone-file character-strings of at
// most 255 octets each (RFC 1035 §3.3.14; RFC 6376 §3.6.2.2: a verifier
// joins them without spaces). The value holds no '"' or '\'.
func zoneStrings(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, `"`+v[:255]+`"`)
		v = v[255:]
	}
	parts = append(parts, `"`+v+`"`)
	if len(parts) == 1 {
		return parts[0]
	}
	return "( " + strings.Join(parts, " ") + " )"
}

// yamlQuote quotes a path for YAML when it needs it.
func yamlQuote(s string) string {
	if strings.ContainsAny(s, ` :#'"{}[],&*!|>%@`+"`\t") {
		return `'` + strings.ReplaceAll(s, `'`, `''`) + `'`
	}
	return s
}

// writeKeyFile writes the key with mode 0600. Without force it refuses to
// replace a file (O_EXCL, so a file made meanwhile is not lost); with
// force it writes a temporary file and renames it over the old one, so a
// crash leaves the old or the new key, never half of one. Run as root, the
// key takes the owner of the file it replaces or of its directory, so
// that moat, running as its own user, can read it (atomicfile.OwnerFor).
func writeKeyFile(path string, data []byte, force bool) error {
	if !force {
		uid, gid, owned := atomicfile.OwnerFor(path)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("%s exists; use --force to replace it", path)
			}
			return err
		}
		if owned {
			err = f.Chown(uid, gid)
		}
		if err == nil {
			_, err = f.Write(data)
		}
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
		return err
	}
	return atomicfile.WriteFileOwned(path, data, 0o600)
}
