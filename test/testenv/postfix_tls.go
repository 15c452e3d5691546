package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// EnableTLS makes the instance's smtpd offer STARTTLS with the given
// certificate chain and key (PEM files, copied into its etc/), replacing
// any before: later lines of main.cf win. It reloads Postfix, so new
// connections get the new certificate.
func (p *Postfix) EnableTLS(certFile, keyFile string) {
	p.t.Helper()
	etc := filepath.Join(p.Dir, "etc")
	n := time.Now().UnixNano()
	cert, key := filepath.Join(etc, fmt.Sprintf("tls-%d.crt", n)), filepath.Join(etc, fmt.Sprintf("tls-%d.key", n))
	for _, f := range [][2]string{{certFile, cert}, {keyFile, key}} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			p.t.Fatal(err)
		}
		// Read by smtpd before it drops privileges; 0600 root is enough.
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			p.t.Fatal(err)
		}
	}
	// smtpd needs tlsmgr(8) for its TLS state (PRNG seed, session cache).
	master := filepath.Join(etc, "master.cf")
	if b, err := os.ReadFile(master); err != nil {
		p.t.Fatal(err)
	} else if !strings.Contains(string(b), "\ntlsmgr ") {
		if err := os.WriteFile(master, append(b, "tlsmgr unix - - n 1000? 1 tlsmgr\n"...), 0o644); err != nil {
			p.t.Fatal(err)
		}
	}
	f, err := os.OpenFile(filepath.Join(etc, "main.cf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		p.t.Fatal(err)
	}
	fmt.Fprintf(f, "smtpd_tls_security_level = may\nsmtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\nsmtpd_tls_loglevel = 1\n", cert, key)
	if err := f.Close(); err != nil {
		p.t.Fatal(err)
	}
	if p.running {
		if out, err := p.ctl("reload"); err != nil {
			p.t.Fatalf("postfix reload: %v\n%s", err, out)
		}
	}
}
