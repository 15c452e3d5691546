package bayes

import (
	"net"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/publicsuffix"
)

// TokenOptions bounds and shapes tokenization. Zero fields take the
// documented defaults.
type TokenOptions struct {
	// MaxTokens bounds the distinct tokens of one message. Default 1000.
	MaxTokens int
	// MaxText bounds the bytes of body text read. Default 64 KiB.
	MaxText int
	// Pairs adds word pairs (bigrams of adjacent text words) after the
	// single words, while the MaxTokens budget lasts. Default off: on the
	// measured corpus pairs did not pay for the extra store lookups (see
	// the package README).
	Pairs bool
}

const (
	defaultMaxTokens = 1000
	defaultMaxText   = 64 << 10
	maxWordBytes     = 30  // longer words become "sk:" + a prefix
	maxURLs          = 100 // URL tokens per message
	maxReceived      = 4   // Received fields read, top down
	maxWordsPerField = 8   // words taken from one header field value
	maxWords         = 8000
)

func (o TokenOptions) withDefaults() TokenOptions {
	if o.MaxTokens <= 0 {
		o.MaxTokens = defaultMaxTokens
	}
	if o.MaxText <= 0 {
		o.MaxText = defaultMaxText
	}
	return o
}

// tokenSet collects distinct tokens up to a bound.
type tokenSet struct {
	seen map[string]struct{}
	list []string
	max  int
}

func (t *tokenSet) full() bool { return len(t.list) >= t.max }

func (t *tokenSet) add(tok string) {
	if tok == "" || t.full() {
		return
	}
	if _, ok := t.seen[tok]; ok {
		return
	}
	t.seen[tok] = struct{}{}
	t.list = append(t.list, tok)
}

// Tokenize returns the distinct tokens of in, at most opt.MaxTokens:
// header, Subject, URL and MIME tokens first, then the body words, then
// (with Pairs) word pairs.
func Tokenize(in Input, opt TokenOptions) []string {
	opt = opt.withDefaults()
	t := &tokenSet{seen: make(map[string]struct{}, min(opt.MaxTokens, 1024)), max: opt.MaxTokens}
	received := 0
	for _, f := range in.Headers {
		if t.full() {
			break
		}
		name := strings.ToLower(f.Name)
		if len(name) > 40 {
			name = name[:40]
		}
		t.add("h:" + name)
		if f.Value == "" {
			continue
		}
		v := f.Value
		switch name {
		case "from":
			t.add("from:" + addrDomain(v))
			if i := strings.IndexByte(v, '<'); i > 0 {
				fieldWords(t, "fromname:", v[:i])
			}
		case "reply-to":
			t.add("replyto:" + addrDomain(v))
		case "return-path":
			t.add("rpath:" + addrDomain(v))
		case "sender":
			t.add("sender:" + addrDomain(v))
		case "message-id":
			t.add("mid:" + addrDomain(v))
		case "received":
			if received < maxReceived {
				received++
				receivedTokens(t, v)
			}
		case "x-mailer", "user-agent":
			fieldWords(t, "xm:", v)
		case "content-type":
			ct, params, _ := strings.Cut(strings.ToLower(v), ";")
			t.add("ct:" + strings.TrimSpace(ct))
			if i := strings.Index(params, "charset="); i >= 0 {
				cs := strings.Trim(strings.TrimSpace(params[i+8:]), `"'`)
				cs, _, _ = strings.Cut(cs, ";")
				t.add("cs:" + clip(strings.Trim(cs, `"' `), 30))
			}
		case "content-transfer-encoding":
			t.add("cte:" + clip(strings.ToLower(strings.TrimSpace(v)), 30))
		case "list-id":
			t.add("list:" + clip(strings.ToLower(strings.Trim(strings.TrimSpace(v), "<>")), 60))
		case "precedence", "x-priority":
			t.add(name + ":" + clip(collapseDigits(strings.ToLower(strings.TrimSpace(v))), 20))
		case "to", "cc":
			t.add(name + "count:" + strconv.Itoa(bucket(strings.Count(v, "@"))))
		}
	}
	fieldWords(t, "s:", in.Subject)
	if in.Subject == "" {
		t.add("s:none")
	}
	for i, u := range in.URLs {
		if i >= maxURLs || t.full() {
			break
		}
		urlTokens(t, u)
	}
	for _, p := range in.Parts {
		t.add("p:" + clip(strings.ToLower(p), 60))
	}
	text := in.Text
	if len(text) > opt.MaxText {
		text = text[:opt.MaxText]
	}
	var words []string
	eachWord(text, func(w string) bool {
		t.add(w)
		if opt.Pairs && len(words) < maxWords {
			words = append(words, w)
		}
		return !t.full()
	})
	if opt.Pairs {
		for i := 1; i < len(words) && !t.full(); i++ {
			t.add(words[i-1] + " " + words[i])
		}
	}
	return t.list
}

// bucket maps a count onto 0, 1, 2, 3-4, 5-8, 9+ (logarithmic).
func bucket(n int) int {
	switch {
	case n <= 2:
		return n
	case n <= 4:
		return 4
	case n <= 8:
		return 8
	}
	return 9
}

// clip cuts s to at most n bytes on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// fieldWords adds the first words of a header value with a prefix.
func fieldWords(t *tokenSet, prefix, v string) {
	n := 0
	eachWord(v, func(w string) bool {
		t.add(prefix + w)
		n++
		return n < maxWordsPerField
	})
}

// addrDomain returns the lower-cased domain of the (first) address in a
// header value, "none" when there is none.
func addrDomain(v string) string {
	if i := strings.IndexByte(v, '<'); i >= 0 {
		v = v[i+1:]
		if j := strings.IndexByte(v, '>'); j >= 0 {
			v = v[:j]
		}
	}
	i := strings.LastIndexByte(v, '@')
	if i < 0 {
		return "none"
	}
	d := strings.ToLower(strings.TrimSpace(v[i+1:]))
	d = strings.TrimRight(d, ">\"' ,;")
	if j := strings.IndexAny(d, " \t,;("); j >= 0 {
		d = d[:j]
	}
	if d == "" {
		return "none"
	}
	return clip(d, 80)
}

// receivedTokens adds hints from one Received field (RFC 5321 §4.4): the
// registered domains of the host names in it and its "with" protocol.
func receivedTokens(t *tokenSet, v string) {
	v = strings.ToLower(v)
	if len(v) > 1000 {
		v = v[:1000]
	}
	fields := strings.FieldsFunc(v, func(r rune) bool {
		return !(r == '.' || r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	})
	for i, f := range fields {
		if i > 40 {
			break
		}
		if f == "with" && i+1 < len(fields) {
			t.add("rcvd:with:" + clip(fields[i+1], 20))
			continue
		}
		if strings.Count(f, ".") == 0 || strings.Trim(f, ".") != f {
			continue
		}
		if net.ParseIP(f) != nil {
			continue
		}
		if d, err := publicsuffix.EffectiveTLDPlusOne(f); err == nil {
			t.add("rcvd:" + clip(d, 80))
		}
	}
}

// urlTokens adds the host, registered domain and scheme of one URL (or
// bare host name).
func urlTokens(t *tokenSet, u string) {
	u = strings.ToLower(strings.TrimSpace(u))
	scheme := "none"
	if i := strings.Index(u, "://"); i >= 0 && i < 12 {
		scheme, u = u[:i], u[i+3:]
	}
	t.add("uscheme:" + clip(scheme, 12))
	if i := strings.IndexAny(u, "/?#"); i >= 0 {
		u = u[:i]
	}
	if i := strings.LastIndexByte(u, '@'); i >= 0 {
		t.add("u:userinfo")
		u = u[i+1:]
	}
	if h, _, err := net.SplitHostPort(u); err == nil {
		u = h
	}
	u = strings.Trim(u, "[].")
	if u == "" {
		return
	}
	if net.ParseIP(u) != nil {
		t.add("u:ip")
		return
	}
	t.add("u:" + clip(u, 80))
	if d, err := publicsuffix.EffectiveTLDPlusOne(u); err == nil {
		t.add("ud:" + clip(d, 80))
	}
}

// textURLs finds up to max URLs (http, https, www.) in visible text.
func textURLs(text string, max int) []string {
	var out []string
	lower := asciiLower(text) // same length as text, unlike strings.ToLower
	for i := 0; i < len(lower) && len(out) < max; {
		j := strings.Index(lower[i:], "http")
		k := strings.Index(lower[i:], "www.")
		if j < 0 && k < 0 {
			break
		}
		if j < 0 || (k >= 0 && k < j) {
			j = k
		}
		start := i + j
		end := start
		for end < len(lower) && end-start < 2000 && !isURLEnd(lower[end]) {
			end++
		}
		u := strings.TrimRight(text[start:end], ".,;:!?)'\"")
		if l := lower[start : start+len(u)]; strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://") || strings.HasPrefix(l, "www.") {
			out = append(out, u)
		}
		i = max1(end, start+4)
	}
	return out
}

// asciiLower lower-cases ASCII letters only, keeping every byte offset.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func max1(a, b int) int {
	if a > b {
		return a
	}
	return b
}

func isURLEnd(c byte) bool {
	return c <= ' ' || c == '<' || c == '>' || c == '"' || c == '\'' || c >= 0x7f
}

// isWordRune reports runes that belong inside a word. '.', '-', '\”,
// '$', '@' and '_' join words ("e.g", "re-sent", "$100",
// "bob@example.org") and are trimmed off the ends.
func isWordRune(r rune) bool {
	if r < utf8.RuneSelf {
		return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' ||
			r == '.' || r == '-' || r == '\'' || r == '$' || r == '@' || r == '_'
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r)
}

// isCJK reports scripts written without spaces: each of their characters
// is a token of its own.
func isCJK(r rune) bool {
	return r >= 0x2e80 && (unicode.Is(unicode.Han, r) || unicode.Is(unicode.Hiragana, r) ||
		unicode.Is(unicode.Katakana, r) || unicode.Is(unicode.Hangul, r))
}

// eachWord calls fn with each normalised word of s until fn returns false
// or maxWords words were seen. Words are lower-cased, runs of digits
// become '#', words shorter than 2 bytes are dropped and words longer than
// maxWordBytes become "sk:" + their first 7 bytes.
func eachWord(s string, fn func(string) bool) {
	n := 0
	emit := func(w string) bool {
		w = trimJoiners(w)
		if len(w) < 2 {
			return true
		}
		n++
		if n > maxWords {
			return false
		}
		w = strings.ToLower(w)
		if len(w) > maxWordBytes {
			return fn("sk:" + collapseDigits(clip(w, 7)))
		}
		return fn(collapseDigits(w))
	}
	start := -1
	for i, r := range s {
		if r >= 0x2e80 && isCJK(r) {
			if start >= 0 {
				if !emit(s[start:i]) {
					return
				}
				start = -1
			}
			n++
			if n > maxWords || !fn(string(r)) {
				return
			}
			continue
		}
		if isWordRune(r) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			if !emit(s[start:i]) {
				return
			}
			start = -1
		}
	}
	if start >= 0 {
		emit(s[start:])
	}
}

// isJoiner reports the bytes that join words but do not end them.
func isJoiner(c byte) bool {
	return c == '.' || c == '-' || c == '\'' || c == '_' || c == '@'
}

// trimJoiners trims joiners off both ends of w (strings.Trim with a
// constant cutset, without building the set on every call).
func trimJoiners(w string) string {
	for len(w) > 0 && isJoiner(w[0]) {
		w = w[1:]
	}
	for len(w) > 0 && isJoiner(w[len(w)-1]) {
		w = w[:len(w)-1]
	}
	return w
}

// collapseDigits replaces each run of ASCII digits with one '#'.
func collapseDigits(w string) string {
	if strings.IndexAny(w, "0123456789") < 0 {
		return w
	}
	var b strings.Builder
	b.Grow(len(w))
	prev := false
	for i := 0; i < len(w); i++ {
		c := w[i]
		if c >= '0' && c <= '9' {
			if !prev {
				b.WriteByte('#')
			}
			prev = true
			continue
		}
		prev = false
		b.WriteByte(c)
	}
	return b.String()
}
