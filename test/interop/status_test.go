//go:build interop

package interop

import (
	"bytes"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"moat/internal/smtptest"
	"moat/test/testenv"
)

// TestStatusPageInChromium: after accepted and rejected traffic, the
// admin status page (ops/admin) rendered by a real browser, headless
// Chromium, holds the verdict chart (an inline SVG) and the tables of
// top rejected clients, top deciding rules and recent deliveries, each
// with the traffic sent; the version, uptime, listeners, certificates,
// refusals and deferrals by destination and error. A screenshot is written to the test's temporary
// directory, or to $MOAT_SCREENSHOT_DIR to keep it, and its path logged.
func TestStatusPageInChromium(t *testing.T) {
	chromium := testenv.NeedChromium(t)
	ruleDir := t.TempDir()
	rule := `rules:
  - name: deny-spammer
    stage: mail
    when: sender.local == "spammer"
    action: reject
`
	if err := os.WriteFile(filepath.Join(ruleDir, "10-deny.yaml"), []byte(rule), 0o644); err != nil {
		t.Fatal(err)
	}
	// far.test is relayed to a next hop that is not there: its message
	// stays deferred, for the page's deferrals. Submission adds a second
	// listener and a certificate, for the listeners and certificates.
	m := testenv.NewMoat(t, testenv.MoatBinary(t), testenv.MoatOptions{
		LocalDomain: "moat.test",
		Users:       []string{"alice@moat.test", "bob@moat.test"},
		Relay:       map[string]string{"far.test": "gone"},
		Routes:      map[string]string{"gone": "smtp 127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))},
		Admin:       true,
		Submission:  true,
		Extra:       fmt.Sprintf("rules:\n  paths: [%q]\n", filepath.Join(ruleDir, "*.yaml")),
	})
	m.Start()
	deferredID := fmt.Sprintf("deferred-%d@client.test", time.Now().UnixNano())
	if err := smtptest.Send(m.Addr, "friend@client.test", []string{"someone@far.test"}, smtptest.Message("friend@client.test", "someone@far.test", deferredID, "later\r\n")); err != nil {
		t.Fatalf("send to far.test: %v\nmoat log:\n%s", err, m.LogTail(30))
	}

	const accepted, rejected = 3, 2
	for i := range accepted {
		to := []string{"alice@moat.test", "bob@moat.test"}[i%2]
		id := fmt.Sprintf("status-%d-%d@client.test", i, time.Now().UnixNano())
		if err := smtptest.Send(m.Addr, "friend@client.test", []string{to}, smtptest.Message("friend@client.test", to, id, "hello\r\n")); err != nil {
			t.Fatalf("send %d: %v\nmoat log:\n%s", i, err, m.LogTail(30))
		}
	}
	for i := range rejected {
		id := fmt.Sprintf("spam-%d-%d@client.test", i, time.Now().UnixNano())
		err := smtptest.Send(m.Addr, "spammer@client.test", []string{"alice@moat.test"}, smtptest.Message("spammer@client.test", "alice@moat.test", id, "buy\r\n"))
		if smtptest.ReplyCode(err) != 550 {
			t.Fatalf("spam %d: got %v, want 550 from rule deny-spammer\nmoat log:\n%s", i, err, m.LogTail(30))
		}
	}
	if !testenv.WaitFor(30*time.Second, func() bool {
		return len(m.MaildirNew("alice@moat.test"))+len(m.MaildirNew("bob@moat.test")) == accepted
	}) {
		t.Fatalf("not all %d accepted messages were delivered\nmoat log:\n%s", accepted, m.LogTail(30))
	}

	url := "http://" + m.Admin + "/"
	var dom string
	// The page shows deliveries once the queue has recorded them: load
	// it until the last one is there (bounded).
	if !testenv.WaitFor(60*time.Second, func() bool {
		var err error
		dom, err = chromium.DumpDOM(url)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(element(dom, "table", "recent-deliveries"), "delivered</td>") >= accepted &&
			strings.Contains(element(dom, "table", "deferrals"), "<td>route gone</td>")
	}) {
		t.Fatalf("recent-deliveries never showed %d deliveries, or deferrals the message for far.test:\n%s", accepted, dom)
	}

	// The chart: an SVG whose label counts every verdict, with bars in
	// the colours of accepted and rejected.
	chart := element(dom, "svg", "verdict-chart")
	if chart == "" {
		t.Fatalf("no <svg id=\"verdict-chart\"> in the DOM:\n%s", dom)
	}
	label := regexp.MustCompile(`over the last hour, (\d+) messages`).FindStringSubmatch(chart)
	if label == nil {
		t.Errorf("verdict-chart has no total in its label:\n%s", chart)
	} else if n, _ := strconv.Atoi(label[1]); n != accepted+1+rejected {
		t.Errorf("verdict-chart counts %d messages, want %d:\n%s", n, accepted+1+rejected, chart)
	}
	// Each bar says what it holds in its <title> ("15:04 UTC: accepted 3,
	// rejected 2"); the traffic may straddle a minute, so sum them. Each
	// counted verdict must also be drawn as a rect of its colour (the
	// legend alone has one of each).
	sum := map[string]int{}
	for _, g := range regexp.MustCompile(`<g><title>([^<]*)</title>((?:<rect [^>]*></rect>)*)</g>`).FindAllStringSubmatch(chart, -1) {
		_, counts, _ := strings.Cut(g[1], "UTC: ")
		for _, part := range strings.Split(counts, ", ") {
			verdict, n, ok := strings.Cut(part, " ")
			if v, err := strconv.Atoi(n); ok && err == nil {
				sum[verdict] += v
				colour := map[string]string{"accepted": "#3a7d44", "rejected": "#c0392b"}[verdict]
				if colour != "" && !strings.Contains(g[2], `fill="`+colour+`"`) {
					t.Errorf("verdict-chart bar %q has no %s rect: %s", g[1], verdict, g[2])
				}
			}
		}
	}
	if sum["accepted"] != accepted+1 || sum["rejected"] != rejected || len(sum) != 2 {
		t.Errorf("verdict-chart bars hold %v, want accepted %d, rejected %d:\n%s", sum, accepted+1, rejected, chart)
	}

	// The tables.
	if got := element(dom, "table", "top-clients"); !regexp.MustCompile(`<td>127\.0\.0\.1</td>\s*<td class="n">` + strconv.Itoa(rejected) + `</td>`).MatchString(got) {
		t.Errorf("top-clients does not list 127.0.0.1 with %d rejections:\n%s", rejected, got)
	}
	if got := element(dom, "table", "top-rules"); !regexp.MustCompile(`<td>deny-spammer</td>\s*<td class="n">` + strconv.Itoa(rejected) + `</td>`).MatchString(got) {
		t.Errorf("top-rules does not list deny-spammer with %d verdicts:\n%s", rejected, got)
	}
	deliveries := element(dom, "table", "recent-deliveries")
	for _, rcpt := range []string{"alice@moat.test", "bob@moat.test"} {
		if !strings.Contains(deliveries, "<td>"+rcpt+"</td>") {
			t.Errorf("recent-deliveries does not list %s:\n%s", rcpt, deliveries)
		}
	}
	if strings.Contains(deliveries, "spammer") {
		t.Errorf("recent-deliveries lists a rejected message:\n%s", deliveries)
	}

	// The daemon: its version and uptime, both listeners, the
	// submission certificate (self-signed for moat.test, valid for a
	// day: marked as a warning), the refusals with their reason, and the deferred
	// recipient under its route with the connection error.
	if got := element(dom, "span", "version"); !regexp.MustCompile(`<span id="version">[^<]+</span>`).MatchString(got) {
		t.Errorf("no version: %q", got)
	}
	if got := element(dom, "span", "uptime"); !regexp.MustCompile(`<span id="uptime">\d+[smhd]`).MatchString(got) {
		t.Errorf("no uptime: %q", got)
	}
	listeners := element(dom, "table", "listeners")
	for _, want := range []string{"<td>mx</td><td>" + m.Addr + "</td><td>mx</td><td>none</td>", "<td>submission</td><td>" + m.Submission + "</td><td>submission</td><td>starttls</td>"} {
		if !strings.Contains(listeners, want) {
			t.Errorf("listeners lack %q:\n%s", want, listeners)
		}
	}
	if got := element(dom, "table", "certificates"); !regexp.MustCompile(`<tr class="warn"><td>[^<]+\.pem</td><td>moat\.test</td><td>\d{4}-\d\d-\d\d \d\d:\d\d</td><td class="n">0</td></tr>`).MatchString(got) {
		t.Errorf("certificates do not show the submission certificate (valid for a day) as a warning:\n%s", got)
	}
	if got := element(dom, "table", "recent-refusals"); strings.Count(got, "<td>mail</td><td>rules</td>") != rejected {
		t.Errorf("recent-refusals do not show %d refusals at mail by the rules:\n%s", rejected, got)
	}
	if got := element(dom, "table", "deferrals"); !regexp.MustCompile(`<td>route gone</td><td class="err">[^<]*(refused|connect)[^<]*</td><td class="n">1</td><td class="n">1</td>`).MatchString(got) {
		t.Errorf("deferrals do not show the far.test recipient with its error:\n%s", got)
	}

	// A screenshot, checked to be a PNG of the window's size that is not
	// one flat colour.
	dir := os.Getenv("MOAT_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "moat-status.png")
	if err := chromium.Screenshot(url, shot, 1200, 1600); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the status page: %s", shot)
	b, err := os.ReadFile(shot)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if r := img.Bounds(); r.Dx() != 1200 || r.Dy() != 1600 {
		t.Errorf("screenshot is %dx%d, want 1200x1600", r.Dx(), r.Dy())
	}
	colours := map[uint32]bool{}
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y && len(colours) < 3; y += 7 {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X && len(colours) < 3; x += 7 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[r>>8<<16|g>>8<<8|bl>>8] = true
		}
	}
	if len(colours) < 3 {
		t.Errorf("screenshot is blank (%d colours)", len(colours))
	}
}

// element returns the markup of the first <tag id="id" ...>...</tag> in
// dom, "" when there is none. The elements looked for do not nest in
// themselves.
func element(dom, tag, id string) string {
	i := strings.Index(dom, "<"+tag+` id="`+id+`"`)
	if i < 0 {
		return ""
	}
	j := strings.Index(dom[i:], "</"+tag+">")
	if j < 0 {
		return ""
	}
	return dom[i : i+j+len("</"+tag+">")]
}
