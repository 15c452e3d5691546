//go:build interop

package interop

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	gosmtp "github.com/emersion/go-smtp"

	"moat/test/testenv"
)

// strictHop is a next hop in Python's aiosmtpd (Debian python3-aiosmtpd),
// strict as aiosmtpd is: a data line over 998 octets gets "500 Line too
// long" (RFC 5321 §4.5.3.1.6) and, started with decode_data and without
// SMTPUTF8, it does not offer 8BITMIME and refuses 8-bit data ("500
// Error: strict ASCII mode"). Each message it takes is written, as
// received, to a file of its directory.
const strictHop = `
import asyncio, os, sys
from aiosmtpd.smtp import SMTP

class Keep:
    def __init__(self, outdir):
        self.outdir, self.n = outdir, 0
    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        tmp = os.path.join(self.outdir, ".%d.tmp" % self.n)
        with open(tmp, "wb") as f:
            f.write(envelope.original_content)
        os.rename(tmp, os.path.join(self.outdir, "%d.eml" % self.n))
        return "250 2.0.0 kept"

async def main():
    port, outdir, eight = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "8bit"
    keep = Keep(outdir)
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(
        lambda: SMTP(keep, hostname="strict.test", decode_data=not eight, enable_SMTPUTF8=False),
        "127.0.0.1", port)
    print("ready", flush=True)
    async with srv:
        await srv.serve_forever()

asyncio.run(main())
`

// startStrictHop runs strictHop on a free port; eight offers 8BITMIME.
// It returns the address and the directory the messages land in.
func startStrictHop(t *testing.T, eight bool) (string, string) {
	t.Helper()
	py := testenv.NeedBinary(t, "/usr/bin/python3")
	if err := exec.Command(py, "-c", "import aiosmtpd").Run(); err != nil {
		testenv.Missing(t, "python3-aiosmtpd is not installed (run: bash scripts/peers.sh)")
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "strict.py")
	if err := os.WriteFile(script, []byte(strictHop), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "msgs")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	mode := "7bit"
	if eight {
		mode = "8bit"
	}
	port := testenv.FreePort(t)
	cmd := exec.Command(py, script, strconv.Itoa(port), out, mode)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- strings.TrimSpace(line) == "ready"
		io.Copy(io.Discard, stdout)
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("aiosmtpd next hop did not start:\n%s", stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("aiosmtpd next hop not ready after 30s:\n%s", stderr.String())
	}
	return "127.0.0.1:" + strconv.Itoa(port), out
}

// leafParts decodes a message as a reader does: the content of every
// leaf part, transfer encoding undone.
func leafParts(t *testing.T, msg []byte) []string {
	t.Helper()
	e, err := message.Read(strings.NewReader(string(msg)))
	if err != nil && !message.IsUnknownCharset(err) {
		t.Fatalf("%v\n%s", err, msg)
	}
	var out []string
	err = e.Walk(func(_ []int, p *message.Entity, err error) error {
		if err != nil && !message.IsUnknownCharset(err) {
			return err
		}
		if p.MultipartReader() != nil {
			return nil
		}
		b, err := io.ReadAll(p.Body)
		out = append(out, string(b))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStrictNextHop (issue 23 items 9 and 10): moat relays a message with
// a 3000-octet line and an 8-bit message to aiosmtpd next hops, one
// without 8BITMIME and one with it. Both arrive, and decode to what was
// sent: moat folded the long line by re-encoding its part as
// quoted-printable (RFC 5321 §4.5.3.1.6) and converted the 8-bit parts
// for the hop that does not offer 8BITMIME (RFC 6152 §3).
func TestStrictNextHop(t *testing.T) {
	hop7, dir7 := startStrictHop(t, false)
	hop8, dir8 := startStrictHop(t, true)
	m := testenv.NewMoat(t, testenv.MoatBinary(t), testenv.MoatOptions{
		Relay:  map[string]string{"seven.test": "seven", "eight.test": "eight"},
		Routes: map[string]string{"seven": "smtp " + hop7, "eight": "smtp " + hop8},
		Admin:  true,
	})
	m.Start()

	longLine := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 66) // 2970 octets
	msgs := map[string]string{
		"long line": "From: a@client.test\r\nTo: x@seven.test\r\nSubject: long line\r\nMessage-ID: <long@client.test>\r\n\r\n" +
			"before\r\n" + longLine + "\r\nafter\r\n",
		"8-bit": "From: a@client.test\r\nTo: x@seven.test\r\nSubject: 8-bit\r\nMessage-ID: <eight@client.test>\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: multipart/mixed; boundary=\"=b=\"\r\n\r\n" +
			"--=b=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\u00fc\u00dfe aus K\u00f6ln, d\u00e9j\u00e0 vu.\r\n" +
			"--=b=\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\x01\x02\xff\xfe\x80 raw octets\r\n" +
			"--=b=--\r\n",
	}
	for name, msg := range msgs {
		c, err := gosmtp.Dial(m.Addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Hello("client.test"); err != nil {
			t.Fatal(err)
		}
		if err := c.Mail("a@client.test", &gosmtp.MailOptions{Body: gosmtp.Body8BitMIME}); err != nil {
			t.Fatalf("%s: MAIL: %v", name, err)
		}
		for _, r := range []string{"x@seven.test", "y@eight.test"} {
			if err := c.Rcpt(r, nil); err != nil {
				t.Fatalf("%s: RCPT %s: %v", name, r, err)
			}
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, msg)
		if err := w.Close(); err != nil {
			t.Fatalf("%s: end of DATA: %v", name, err)
		}
		c.Quit()
	}

	got := map[string][]byte{} // by hop and subject
	for hop, dir := range map[string]string{"seven": dir7, "eight": dir8} {
		var files []string
		if !testenv.WaitFor(60*time.Second, func() bool {
			files, _ = filepath.Glob(filepath.Join(dir, "*.eml"))
			return len(files) >= len(msgs)
		}) {
			q, _ := m.Queue("list")
			t.Fatalf("%s next hop got %d of %d messages\nqueue:\n%s\nmoat log:\n%s", hop, len(files), len(msgs), q, m.LogTail(40))
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for name := range msgs {
				if strings.Contains(string(b), "\r\nSubject: "+name+"\r\n") {
					got[hop+"/"+name] = b
				}
			}
		}
	}
	for _, hop := range []string{"seven", "eight"} {
		for name, sent := range msgs {
			b := got[hop+"/"+name]
			if b == nil {
				t.Errorf("%s next hop: no %q message", hop, name)
				continue
			}
			for i, l := range strings.Split(string(b), "\r\n") {
				if len(l) > 998 {
					t.Errorf("%s/%s: line %d has %d octets", hop, name, i, len(l))
				}
			}
			if hop == "seven" && strings.IndexFunc(string(b), func(r rune) bool { return r >= 0x80 }) >= 0 {
				t.Errorf("%s/%s: 8-bit data reached a next hop without 8BITMIME", hop, name)
			}
			if want, have := leafParts(t, []byte(sent)), leafParts(t, b); !slices.Equal(want, have) {
				t.Errorf("%s/%s: content changed\nsent     %q\nreceived %q", hop, name, want, have)
			}
		}
	}
	resp, err := http.Get("http://" + m.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, reason := range []string{"8bit", "long_line"} {
		if !regexp.MustCompile(`(?m)^moat_outbound_reencoded_total\{reason="` + reason + `"\} [1-9]`).Match(metrics) {
			t.Errorf("moat_outbound_reencoded_total{reason=%q} not counted", reason)
		}
	}
	// The 8-bit message went unchanged to the hop that offers 8BITMIME.
	if b := got["eight/8-bit"]; b != nil && !strings.Contains(string(b), "Content-Transfer-Encoding: 8bit\r\n\r\nGr\u00fc\u00dfe") {
		t.Errorf("eight/8-bit was converted though the next hop offers 8BITMIME:\n%s", b)
	}
}
