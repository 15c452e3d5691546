package analysis

import (
	"bytes"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"
)

// HTMLFacts describe the text/html parts that are not attachments. Rules
// read them as html.<name>.
type HTMLFacts struct {
	Present     bool    `expr:"present"`      // an inline text/html part exists
	Only        bool    `expr:"only"`         // HTML with no text/plain alternative
	Parts       int     `expr:"parts"`        // inline HTML parts scanned
	Bytes       int     `expr:"bytes"`        // HTML bytes tokenised
	TextRatio   float64 `expr:"text_ratio"`   // visible text bytes / HTML bytes (0..1)
	Words       int     `expr:"words"`        // visible words
	HiddenText  bool    `expr:"hidden_text"`  // some text is invisible to the reader (any reason below)
	HiddenChars int     `expr:"hidden_chars"` // non-space characters of hidden text
	Invisible   bool    `expr:"invisible"`    // display:none, visibility:hidden, opacity:0, hidden attribute
	TinyText    bool    `expr:"tiny_text"`    // font-size from 0 to 2px (or pt)
	LowContrast bool    `expr:"low_contrast"` // text coloured (nearly) like its background, white on white
	Images      int     `expr:"images"`       // <img> elements
	ImageOnly   bool    `expr:"image_only"`   // images and at most Options.ImageOnlyWords visible words
	Links       int     `expr:"links"`        // <a>/<area> with href
	Forms       int     `expr:"forms"`
	Scripts     int     `expr:"scripts"`
	IFrames     int     `expr:"iframes"` // <iframe>, <frame>
	Objects     int     `expr:"objects"` // <object>, <embed>, <applet>
	Truncated   bool    `expr:"truncated"`
}

// rawURL is a URL candidate found in HTML markup.
type rawURL struct {
	s, source string
}

// anchor is a link with the text the reader sees on it.
type anchor struct {
	href, text string
}

type htmlScan struct {
	urls    []rawURL
	anchors []anchor
	visible []byte
}

const (
	reasonInvisible = 1 << iota
	reasonTiny
	reasonContrast
)

type rgb struct {
	r, g, b int
	ok      bool
}

// frame is the state of one open element that its content inherits.
type frame struct {
	tag       string
	invisible bool // display:none, opacity:0, hidden attribute: no child can undo it
	visHidden bool // visibility:hidden: a child's visibility:visible undoes it
	tiny      bool // font-size 0–2px: a child's own font-size undoes it
	fg, bg    rgb  // text and background colour; bg unknown over a background image
	skip      bool // script, style, head: no visible text
}

// reasons says why text in fr cannot be seen, 0 when it can.
func (fr *frame) reasons() int {
	n := 0
	if fr.invisible || fr.visHidden {
		n |= reasonInvisible
	}
	if fr.tiny {
		n |= reasonTiny
	}
	if fr.fg.ok && fr.bg.ok && near(fr.fg, fr.bg) {
		n |= reasonContrast
	}
	return n
}

const maxStack = 256

var voidTags = map[string]bool{
	"area": true, "base": true, "br": true, "col": true, "embed": true, "hr": true, "img": true, "input": true,
	"link": true, "meta": true, "param": true, "source": true, "track": true, "wbr": true,
}

func (r *Result) computeHTML() {
	w := r.parts()
	f := &r.html
	var hidden []byte
	hasPlain := false
	for i := range w.parts {
		p := &w.parts[i]
		if p.Attachment {
			continue
		}
		if p.Type == "text/plain" {
			hasPlain = true
		}
		if p.Type != "text/html" {
			continue
		}
		f.Present = true
		f.Parts++
		src := p.text
		if len(src) > r.opt.MaxHTMLBytes || p.Truncated {
			src = src[:min(len(src), r.opt.MaxHTMLBytes)]
			f.Truncated = true
		}
		f.Bytes += len(src)
		if r.scanHTML(src, &hidden) {
			f.Truncated = true
		}
	}
	f.Only = f.Present && !hasPlain
	if f.Bytes > 0 {
		f.TextRatio = float64(len(bytes.TrimSpace(r.scan.visible))) / float64(f.Bytes)
	}
	f.Words = countWords(r.scan.visible)
	f.HiddenText = f.HiddenChars > 0
	f.ImageOnly = f.Images > 0 && f.Words <= r.opt.ImageOnlyWords
	f.Truncated = f.Truncated || w.truncated
	r.hidden = string(hidden)
}

// scanHTML tokenises one HTML part (golang.org/x/net/html: the HTML5
// tokenizer, which never fails on broken markup) and reports whether a
// bound stopped it.
func (r *Result) scanHTML(src string, hidden *[]byte) (truncated bool) {
	f, s := &r.html, &r.scan
	z := html.NewTokenizer(strings.NewReader(src))
	z.SetMaxBuf(len(src) + 1)
	stack := make([]frame, 1, 32)
	stack[0] = frame{bg: rgb{255, 255, 255, true}} // a reader's default background
	cur := -1                                      // index of the open anchor in s.anchors
	var buf attrs
	for n := 0; ; n++ {
		if n&255 == 0 && r.ctx.Err() != nil {
			return true
		}
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return false
		case html.TextToken:
			top := &stack[len(stack)-1]
			if top.tag == "style" {
				r.styleSheet(string(z.Text()))
			}
			if top.skip {
				continue
			}
			text := z.Text()
			if len(bytes.TrimSpace(text)) == 0 {
				s.visible = appendBounded(s.visible, " ", r.opt.MaxTextBytes)
				continue
			}
			if why := top.reasons(); why != 0 {
				f.HiddenChars += nonSpace(text)
				f.Invisible = f.Invisible || why&reasonInvisible != 0
				f.TinyText = f.TinyText || why&reasonTiny != 0
				f.LowContrast = f.LowContrast || why&reasonContrast != 0
				*hidden = appendBounded(*hidden, string(text)+" ", r.opt.MaxTextBytes)
				continue
			}
			s.visible = appendBounded(s.visible, string(text), r.opt.MaxTextBytes)
			if cur >= 0 && len(s.anchors[cur].text) < 256 {
				s.anchors[cur].text += string(text)
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			tag := string(name)
			buf = readAttrs(z, hasAttr, buf)
			s.visible = appendBounded(s.visible, " ", r.opt.MaxTextBytes)
			parent := stack[len(stack)-1]
			fr := parent
			fr.tag = tag
			r.element(tag, buf, &fr, &cur)
			if tt == html.SelfClosingTagToken || voidTags[tag] || len(stack) >= maxStack {
				continue
			}
			stack = append(stack, fr)
		case html.EndTagToken:
			name, _ := z.TagName()
			tag := string(name)
			s.visible = appendBounded(s.visible, " ", r.opt.MaxTextBytes)
			if tag == "a" {
				cur = -1
			}
			for i := len(stack) - 1; i > 0; i-- {
				if stack[i].tag == tag {
					stack = stack[:i]
					break
				}
			}
		}
	}
}

// element records what one start tag says and sets the frame its content
// inherits.
func (r *Result) element(tag string, attrs attrs, fr *frame, cur *int) {
	f, s := &r.html, &r.scan
	addURL := func(v, source string) {
		if v = strings.TrimSpace(v); v != "" && len(s.urls) < r.opt.MaxURLScan {
			s.urls = append(s.urls, rawURL{s: v, source: source})
		}
	}
	switch tag {
	case "script", "style", "head", "title", "noscript", "template":
		fr.skip = true
		if tag == "script" {
			f.Scripts++
			addURL(attrs.val("src"), "src")
		}
	case "a", "area":
		if href, ok := attrs.get("href"); ok {
			f.Links++
			addURL(href, "href")
			if tag == "a" && len(s.anchors) < r.opt.MaxURLScan {
				s.anchors = append(s.anchors, anchor{href: href})
				*cur = len(s.anchors) - 1
			}
		}
	case "img":
		f.Images++
		addURL(attrs.val("src"), "src")
	case "form":
		f.Forms++
		addURL(attrs.val("action"), "action")
	case "iframe", "frame":
		f.IFrames++
		addURL(attrs.val("src"), "src")
	case "object", "embed", "applet":
		f.Objects++
		addURL(attrs.val("data"), "src")
		addURL(attrs.val("src"), "src")
	}
	if v, ok := attrs.get("background"); ok {
		addURL(v, "src")
		fr.bg = rgb{} // text over a picture: its colour says nothing
	}
	if _, ok := attrs.get("hidden"); ok {
		fr.invisible = true
	}
	if c := parseColor(attrs.val("bgcolor")); c.ok {
		fr.bg = c
	}
	if tag == "font" {
		if c := parseColor(attrs.val("color")); c.ok {
			fr.fg = c
		}
	}
	if cl, ok := attrs.get("class"); ok && len(r.classes) > 0 {
		for i, c := range strings.Fields(cl) {
			if i >= 16 {
				break
			}
			if decls, ok := r.classes[c]; ok {
				applyStyle(decls, fr)
			}
		}
	}
	if st, ok := attrs.get("style"); ok {
		applyStyle(st, fr) // inline style wins over the style sheet
	}
}

// maxClasses bounds the class rules kept from <style> elements.
const maxClasses = 200

// styleSheet keeps the declarations of simple class rules (".name {…}",
// top level only) that touch what hides text. Rules inside at-rules
// (@media, @supports …) are skipped: they apply only on some screens.
func (r *Result) styleSheet(css string) {
	depth, at := 0, false
	sel := 0
	for i := 0; i < len(css); i++ {
		switch css[i] {
		case '{':
			if depth == 0 {
				selector := strings.TrimSpace(css[sel:i])
				at = strings.HasPrefix(selector, "@")
				if !at {
					end := strings.IndexByte(css[i:], '}')
					if end < 0 {
						return
					}
					r.classRule(selector, css[i+1:i+end])
					i += end
					sel = i + 1
					continue
				}
			}
			depth++
		case '}':
			if depth > 0 {
				depth--
			}
			if depth == 0 {
				sel = i + 1
			}
		}
	}
}

func (r *Result) classRule(selectors, decls string) {
	lower := strings.ToLower(decls)
	if !strings.Contains(lower, "display") && !strings.Contains(lower, "visibility") &&
		!strings.Contains(lower, "font-size") && !strings.Contains(lower, "color") && !strings.Contains(lower, "opacity") {
		return
	}
	for _, sel := range strings.Split(selectors, ",") {
		sel = strings.TrimSpace(sel)
		if len(sel) < 2 || sel[0] != '.' || strings.ContainsAny(sel[1:], " .#:>[+~*") {
			continue
		}
		if r.classes == nil {
			r.classes = map[string]string{}
		}
		if len(r.classes) >= maxClasses {
			return
		}
		if prev := r.classes[sel[1:]]; len(prev) < 4096 { // a class repeated without end stays bounded
			r.classes[sel[1:]] = prev + ";" + decls[:min(len(decls), 1024)]
		}
	}
}

// applyStyle reads the few inline CSS properties that hide text.
func applyStyle(style string, fr *frame) {
	for n, decl := range strings.Split(style, ";") {
		if n >= 64 {
			return
		}
		k, v, ok := strings.Cut(decl, ":")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.ToLower(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "!important")))
		switch k {
		case "display":
			if v == "none" {
				fr.invisible = true
			}
		case "visibility":
			fr.visHidden = v == "hidden" || v == "collapse"
		case "opacity":
			if x, err := strconv.ParseFloat(v, 64); err == nil && x <= 0.05 {
				fr.invisible = true
			}
		case "font-size":
			fr.tiny = tinySize(v)
		case "color":
			if c := parseColor(v); c.ok {
				fr.fg = c
			}
		case "background-image":
			if strings.Contains(v, "url(") {
				fr.bg = rgb{}
			}
		case "background-color", "background":
			if strings.Contains(v, "url(") {
				fr.bg = rgb{} // text over a picture: its colour says nothing
			} else if c := parseColor(strings.Fields(v + " x")[0]); c.ok {
				fr.bg = c
			}
		}
	}
}

// tinySize reports a font size from 0 to 2 px or pt (or 0 in any unit).
func tinySize(v string) bool {
	num := strings.TrimRight(v, "abcdefghijklmnopqrstuvwxyz%")
	unit := v[len(num):]
	x, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil {
		return false
	}
	if x <= 0 {
		return true
	}
	return (unit == "px" || unit == "pt") && x <= 2
}

var namedColors = map[string]rgb{
	"white": {255, 255, 255, true}, "black": {0, 0, 0, true}, "red": {255, 0, 0, true},
	"green": {0, 128, 0, true}, "blue": {0, 0, 255, true}, "yellow": {255, 255, 0, true},
	"gray": {128, 128, 128, true}, "grey": {128, 128, 128, true}, "silver": {192, 192, 192, true},
	"snow": {255, 250, 250, true}, "whitesmoke": {245, 245, 245, true}, "ivory": {255, 255, 240, true},
}

// parseColor reads #rgb, #rrggbb, rgb(r,g,b) and a few names.
func parseColor(v string) rgb {
	v = strings.ToLower(strings.TrimSpace(v))
	if c, ok := namedColors[v]; ok {
		return c
	}
	if strings.HasPrefix(v, "rgb(") && strings.HasSuffix(v, ")") {
		xs := strings.Split(v[4:len(v)-1], ",")
		if len(xs) != 3 {
			return rgb{}
		}
		var c [3]int
		for i, x := range xs {
			n, err := strconv.Atoi(strings.TrimSpace(x))
			if err != nil || n < 0 || n > 255 {
				return rgb{}
			}
			c[i] = n
		}
		return rgb{c[0], c[1], c[2], true}
	}
	v = strings.TrimPrefix(v, "#")
	if len(v) == 3 {
		v = string([]byte{v[0], v[0], v[1], v[1], v[2], v[2]})
	}
	if len(v) != 6 {
		return rgb{}
	}
	n, err := strconv.ParseUint(v, 16, 32)
	if err != nil {
		return rgb{}
	}
	return rgb{int(n >> 16 & 0xff), int(n >> 8 & 0xff), int(n & 0xff), true}
}

// near reports colours a reader cannot tell apart (each channel within 16).
func near(a, b rgb) bool {
	d := func(x, y int) int {
		if x > y {
			return x - y
		}
		return y - x
	}
	return d(a.r, b.r) <= 16 && d(a.g, b.g) <= 16 && d(a.b, b.b) <= 16
}

// attrs are the attributes of one tag, names lower-case (the tokenizer
// lower-cases them); the first of a repeated name wins.
type attrs []struct{ k, v string }

// get returns the value of the attribute named k and whether it is there.
func (a attrs) get(k string) (string, bool) {
	for _, kv := range a {
		if kv.k == k {
			return kv.v, true
		}
	}
	return "", false
}

func (a attrs) val(k string) string { v, _ := a.get(k); return v }

// interesting names the attributes scanHTML reads; others are skipped
// without a copy.
var interesting = map[string]bool{
	"href": true, "src": true, "action": true, "data": true, "background": true, "hidden": true,
	"bgcolor": true, "color": true, "style": true, "class": true,
}

// readAttrs collects the interesting attributes among the first 64, values
// cut at 4 KiB, into buf.
func readAttrs(z *html.Tokenizer, more bool, buf attrs) attrs {
	buf = buf[:0]
	for i := 0; more && i < 64; i++ {
		var k, v []byte
		k, v, more = z.TagAttr()
		if !interesting[string(k)] {
			continue
		}
		if len(v) > 4096 {
			v = v[:4096]
		}
		buf = append(buf, struct{ k, v string }{string(k), string(v)})
	}
	return buf
}

func appendBounded(b []byte, s string, max int) []byte {
	if room := max - len(b); room > 0 {
		if s == " " && (len(b) == 0 || b[len(b)-1] == ' ') {
			return b
		}
		return append(b, s[:min(len(s), room)]...)
	}
	return b
}

func nonSpace(b []byte) int {
	n := 0
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		if !unicode.IsSpace(r) {
			n++
		}
	}
	return n
}

// countWords counts runs of letters and digits.
func countWords[T string | []byte](b T) int {
	n, in := 0, false
	for len(b) > 0 {
		var w bool
		if c := b[0]; c < utf8.RuneSelf {
			b = b[1:]
			w = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		} else {
			r, size := utf8.DecodeRune([]byte(b[:min(len(b), utf8.UTFMax)]))
			b = b[size:]
			w = unicode.IsLetter(r) || unicode.IsDigit(r)
		}
		if w && !in {
			n++
		}
		in = w
	}
	return n
}
