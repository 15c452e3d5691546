package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// Chromium runs Debian's headless Chromium on loopback pages, with a
// throw-away profile and every background service that would reach the
// network turned off.
type Chromium struct {
	bin     string
	profile string
}

// NeedChromium finds /usr/bin/chromium (scripts/peers.sh installs it).
func NeedChromium(t testing.TB) *Chromium {
	t.Helper()
	return &Chromium{bin: NeedBinary(t, "/usr/bin/chromium"), profile: t.TempDir()}
}

func (c *Chromium) run(args ...string) ([]byte, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--disable-dev-shm-usage", "--user-data-dir=" + c.profile}
	cmd := exec.CommandContext(ctx, c.bin, append(base, args...)...)
	var stdout, stderr limitedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "HOME="+c.profile)
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("chromium did not finish in 90s: %w", ctx.Err())
	}
	return stdout.b, stderr.b, err
}

// DumpDOM loads url and returns the DOM as Chromium rendered it.
func (c *Chromium) DumpDOM(url string) (string, error) {
	out, errOut, err := c.run("--dump-dom", url)
	if err != nil {
		return "", fmt.Errorf("chromium --dump-dom: %v\n%s", err, errOut)
	}
	return string(out), nil
}

// Screenshot loads url and writes a PNG of width x height pixels to file.
func (c *Chromium) Screenshot(url, file string, width, height int) error {
	_, errOut, err := c.run("--screenshot="+file, fmt.Sprintf("--window-size=%d,%d", width, height),
		"--hide-scrollbars", url)
	if err != nil {
		return fmt.Errorf("chromium --screenshot: %v\n%s", err, errOut)
	}
	st, err := os.Stat(file)
	if err != nil {
		return fmt.Errorf("chromium wrote no screenshot: %v\n%s", err, errOut)
	}
	if st.Size() == 0 {
		return fmt.Errorf("chromium wrote an empty screenshot\n%s", errOut)
	}
	return nil
}

// limitedBuffer keeps at most 8 MiB of a child's output.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 8<<20 - len(l.b); room > 0 {
		if len(p) < room {
			room = len(p)
		}
		l.b = append(l.b, p[:room]...)
	}
	return len(p), nil
}
