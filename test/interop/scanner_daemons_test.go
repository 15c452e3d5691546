//go:build interop

package interop

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"moat/test/testenv"
)

// The scanners' environment on its own, spoken to in each daemon's
// protocol by a few lines here (no moat code): if one of these fails,
// the scanner tests' failures are about the installed daemon or its
// offline configuration, not about moat's clients.

// rawClamd sends msg with clamd's zINSTREAM (4-byte big-endian chunk
// lengths, a zero length to end) and returns the answer.
func rawClamd(t *testing.T, addr string, msg []byte) string {
	t.Helper()
	var req bytes.Buffer
	req.WriteString("zINSTREAM\x00")
	binary.Write(&req, binary.BigEndian, uint32(len(msg)))
	req.Write(msg)
	binary.Write(&req, binary.BigEndian, uint32(0))
	return strings.TrimRight(rawExchange(t, addr, req.Bytes()), "\x00")
}

// rawSpamd sends msg with SPAMC/1.5 SYMBOLS and returns the answer.
func rawSpamd(t *testing.T, addr string, msg []byte) string {
	t.Helper()
	req := fmt.Sprintf("SYMBOLS SPAMC/1.5\r\nContent-length: %d\r\n\r\n", len(msg))
	return rawExchange(t, addr, append([]byte(req), msg...))
}

func rawExchange(t *testing.T, addr string, req []byte) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(io.LimitReader(c, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// rawRspamd posts msg to /checkv2 and returns the JSON answer.
func rawRspamd(t *testing.T, url string, msg []byte) string {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/checkv2", bytes.NewReader(msg))
	req.Header.Set("IP", "127.0.0.1")
	req.Header.Set("From", "sender@client.test")
	req.Header.Set("Rcpt", "alice@moat.test")
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b)
}

// TestScannerDaemons: the four daemons start offline and give the
// expected verdicts on EICAR, GTUBE and a clean message in their own
// protocols; their start-up times are logged (CI budget).
func TestScannerDaemons(t *testing.T) {
	t0 := time.Now()
	sc := testenv.StartScanners(t, "")
	t.Logf("start-up: clamd %s, clamav-milter %s, spamd %s, rspamd %s (all: %s)",
		sc.Clamd.Startup.Round(time.Millisecond), sc.Milter.Startup.Round(time.Millisecond),
		sc.Spamd.Startup.Round(time.Millisecond), sc.Rspamd.Startup.Round(time.Millisecond),
		time.Since(t0).Round(time.Millisecond))

	if got := rawClamd(t, sc.Clamd.Addr, eicarMessage()); got != "stream: "+testenv.EICARSignature+" FOUND" {
		t.Errorf("clamd on EICAR: %q\n%s", got, sc.Clamd.Log())
	}
	if got := rawClamd(t, sc.Clamd.Addr, eicarAttachment()); got != "stream: "+testenv.EICARSignature+" FOUND" {
		t.Errorf("clamd on EICAR attached in base64: %q", got)
	}
	if got := rawClamd(t, sc.Clamd.Addr, cleanMessage()); got != "stream: OK" {
		t.Errorf("clamd on a clean message: %q", got)
	}
	if got := rawSpamd(t, sc.Spamd.Addr, gtubeMessage()); !strings.Contains(got, "Spam: True") || !strings.Contains(got, "GTUBE") {
		t.Errorf("spamd on GTUBE: %q\n%s", got, sc.Spamd.Log())
	}
	if got := rawSpamd(t, sc.Spamd.Addr, cleanMessage()); !strings.Contains(got, "Spam: False") {
		t.Errorf("spamd on a clean message: %q", got)
	}
	if got := rawRspamd(t, sc.Rspamd.URL, gtubeMessage()); !strings.Contains(got, `"action":"reject"`) || !strings.Contains(got, "GTUBE") {
		t.Errorf("rspamd on GTUBE: %s\n%s", got, sc.Rspamd.Log())
	}
	start := time.Now()
	if got := rawRspamd(t, sc.Rspamd.URL, cleanMessage()); !strings.Contains(got, `"action":"no action"`) {
		t.Errorf("rspamd on a clean message: %s\n%s", got, sc.Rspamd.Log())
	}
	t.Logf("rspamd scanned the clean message in %s", time.Since(start).Round(time.Millisecond))
}
