package testenv

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// DovecotIMAP is a throw-away Dovecot serving IMAP on a loopback port
// with a configuration the test gives (the shipped deploy/dovecot
// snippet, its paths and user replaced), around the settings a private
// instance needs (its own directories, a port, no TLS).
type DovecotIMAP struct {
	Addr string // 127.0.0.1:port of the IMAP listener
	Log  string
}

// StartDovecotIMAP starts Dovecot with snippet (a configuration fragment
// included as it is) for IMAP on a free port, its internal processes (auth
// among them) as Debian's user dovecot, as installed. Root only: Dovecot
// switches to the snippet's mail user.
func StartDovecotIMAP(t testing.TB, snippet string) *DovecotIMAP {
	t.Helper()
	bin := NeedBinary(t, "/usr/sbin/dovecot")
	NeedBinary(t, "/usr/lib/dovecot/imap")
	if os.Geteuid() != 0 {
		t.Skip("the Dovecot IMAP test runs as root (Dovecot switches to the mail user)")
	}
	dir := sharedTempDir(t, "moat-dovecot-imap-")
	d := &DovecotIMAP{Addr: "127.0.0.1:" + strconv.Itoa(FreePort(t)), Log: filepath.Join(dir, "dovecot.log")}
	for _, sub := range []string{"run", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	snip := filepath.Join(dir, "99-moat.conf")
	if err := os.WriteFile(snip, []byte(snippet), 0o644); err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(d.Addr, ":")
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
instance_name = moat-imap-%[2]s
protocols = imap
ssl = no
disable_plaintext_auth = no
listen = 127.0.0.1
log_path = %[3]s
default_internal_user = dovecot
default_login_user = dovenull
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[2]s
  }
  inet_listener imaps {
    port = 0
  }
  chroot =
}
`+noChroot+`!include %[4]s
`, dir, port, d.Log, snip)
	runDovecot(t, bin, dir, conf, d.Addr, d.Log)
	return d
}

// IMAP is a minimal IMAP4rev1 client (RFC 3501) for tests: one command at
// a time, every response line until the tagged one.
type IMAP struct {
	conn net.Conn
	r    *bufio.Reader
	n    int
}

// DialIMAP connects and reads the greeting.
func DialIMAP(addr string) (*IMAP, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	m := &IMAP{conn: c, r: bufio.NewReader(c)}
	if l, err := m.r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
		c.Close()
		return nil, fmt.Errorf("greeting %q: %v", l, err)
	}
	return m, nil
}

// Cmd sends one command and returns the untagged lines and the tagged
// status line; a status other than OK is an error. Literals in responses
// ({n}) are read whole and appended to their line.
func (m *IMAP) Cmd(format string, args ...any) ([]string, error) {
	m.n++
	tag := fmt.Sprintf("t%d", m.n)
	if _, err := fmt.Fprintf(m.conn, "%s %s\r\n", tag, fmt.Sprintf(format, args...)); err != nil {
		return nil, err
	}
	var lines []string
	for len(lines) < 10000 {
		l, err := m.r.ReadString('\n')
		if err != nil {
			return lines, err
		}
		l = strings.TrimRight(l, "\r\n")
		if i := strings.LastIndexByte(l, '{'); i >= 0 && strings.HasSuffix(l, "}") {
			if n, err := strconv.Atoi(l[i+1 : len(l)-1]); err == nil && n >= 0 && n < 1<<20 {
				buf := make([]byte, n)
				if _, err := io.ReadFull(m.r, buf); err != nil {
					return lines, err
				}
				l += string(buf)
				rest, _ := m.r.ReadString('\n')
				l += strings.TrimRight(rest, "\r\n")
			}
		}
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				return lines, fmt.Errorf("%s", l)
			}
			return lines, nil
		}
		lines = append(lines, l)
	}
	return lines, fmt.Errorf("no end to the response")
}

// Close logs out and closes the connection.
func (m *IMAP) Close() {
	m.Cmd("LOGOUT")
	m.conn.Close()
}
