package analysis

import (
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// URL is one link found in the message, its host normalised.
type URL struct {
	Raw          string `expr:"raw"`           // as found, cut at 2048 bytes
	Scheme       string `expr:"scheme"`        // lower-case; "" for a bare www. host
	Host         string `expr:"host"`          // lower-case A-label (RFC 5891 §5), no trailing dot; an IP in canonical form
	Domain       string `expr:"domain"`        // registered domain (public suffix + 1); the host itself for IPs
	Port         string `expr:"port"`          // "" when absent
	Source       string `expr:"source"`        // text (plain text or HTML text), href, src, action
	IsIP         bool   `expr:"is_ip"`         // the host is an IP literal
	ObfuscatedIP bool   `expr:"obfuscated_ip"` // an IPv4 written in decimal, hex, octal or short form
	Userinfo     bool   `expr:"userinfo"`      // user@ before the host (RFC 3986 §3.2.1)
	Punycode     bool   `expr:"punycode"`      // a label is an A-label (xn--, RFC 3492)
	MixedScript  bool   `expr:"mixed_script"`  // a label mixes letters of several scripts
	Shortener    bool   `expr:"shortener"`     // a known URL-shortening service
}

// URLFacts describe the URLs of the text and HTML parts. Rules read them
// as urls.<name>.
type URLFacts struct {
	Count        int      `expr:"count"`         // URL occurrences found (text and HTML), also past the kept bound
	List         []URL    `expr:"list"`          // distinct URLs (by their raw text), at most Options.MaxURLs
	Hosts        []string `expr:"hosts"`         // distinct hosts of List
	Domains      []string `expr:"domains"`       // distinct registered domains of List
	IP           bool     `expr:"ip"`            // a host is an IP literal
	ObfuscatedIP bool     `expr:"obfuscated_ip"` // an IPv4 host in decimal, hex or octal form
	Shorteners   int      `expr:"shorteners"`    // URLs on a shortening service
	Userinfo     bool     `expr:"userinfo"`      // http://bank.example@evil.example/
	OddPort      bool     `expr:"odd_port"`      // a port other than 80 and 443
	Punycode     bool     `expr:"punycode"`
	MixedScript  bool     `expr:"mixed_script"`
	TextMismatch bool     `expr:"text_mismatch"` // link text names another domain than the link goes to
	Truncated    bool     `expr:"truncated"`     // a bound was hit: more URLs than kept, or a part not read whole
}

func (r *Result) computeURLs() {
	r.HTML() // the HTML scan collects href, src and action values
	w := r.parts()
	f := &r.urls
	hosts := map[string]bool{}
	domains := map[string]bool{}
	raws := map[string]bool{}
	memo := map[string]string{}
	scanned := 0
	add := func(raw, source string) {
		u, ok := parseURLMemo(raw, source, memo)
		if !ok {
			return
		}
		f.Count++
		if raws[u.Raw] {
			return
		}
		if len(f.List) >= r.opt.MaxURLs {
			f.Truncated = true
			return
		}
		raws[u.Raw] = true
		f.List = append(f.List, u)
		if !hosts[u.Host] {
			hosts[u.Host] = true
			f.Hosts = append(f.Hosts, u.Host)
		}
		if !domains[u.Domain] {
			domains[u.Domain] = true
			f.Domains = append(f.Domains, u.Domain)
		}
		f.IP = f.IP || u.IsIP
		f.ObfuscatedIP = f.ObfuscatedIP || u.ObfuscatedIP
		f.Userinfo = f.Userinfo || u.Userinfo
		f.OddPort = f.OddPort || (u.Port != "" && u.Port != "80" && u.Port != "443")
		f.Punycode = f.Punycode || u.Punycode
		f.MixedScript = f.MixedScript || u.MixedScript
		if u.Shortener {
			f.Shorteners++
		}
	}
	for p := range w.plainTexts(&f.Truncated) {
		if !scanText(p.text, r.opt.MaxURLScan-scanned, func(s string) { scanned++; add(s, "text") }) {
			f.Truncated = true
		}
		if r.ctx.Err() != nil {
			f.Truncated = true
			return
		}
	}
	for _, u := range r.scan.urls {
		add(u.s, u.source)
	}
	// URLs written as text in HTML, not as links.
	if !scanText(string(r.scan.visible), r.opt.MaxURLScan-scanned, func(s string) { scanned++; add(s, "text") }) {
		f.Truncated = true
	}
	for _, a := range r.scan.anchors {
		if linkTextMismatch(a) {
			f.TextMismatch = true
			break
		}
	}
	if r.html.Truncated || len(r.scan.urls) >= r.opt.MaxURLScan {
		f.Truncated = true
	}
}

// scanText calls fn for each URL-looking run of text: http://, https://
// and bare www. hosts. It returns false when it stopped at the limit.
func scanText(s string, limit int, fn func(string)) bool {
	lower := asciiLower(s)
	n := 0
	// next offsets of "http" and "www.", found again only once passed,
	// so the scan stays linear however many URLs there are.
	h, w := -2, -2
	for i := 0; i < len(s); {
		if h != -1 && h < i {
			if h = strings.Index(lower[i:], "http"); h >= 0 {
				h += i
			}
		}
		if w != -1 && w < i {
			if w = strings.Index(lower[i:], "www."); w >= 0 {
				w += i
			}
		}
		j := h
		if j < 0 || (w >= 0 && w < j) {
			j = w
		}
		if j < 0 {
			return true
		}
		rest := lower[j:]
		ok := strings.HasPrefix(rest, "http://") || strings.HasPrefix(rest, "https://")
		if !ok && strings.HasPrefix(rest, "www.") {
			ok = j == 0 || !isHostByte(lower[j-1])
		}
		if !ok {
			i = j + 4
			continue
		}
		end := j
		for end < len(s) && end-j < 2048 && !urlStop(s[end]) {
			end++
		}
		raw := strings.TrimRight(s[j:end], ".,;:!?)]}*'")
		if n >= limit {
			return false
		}
		n++
		fn(raw)
		i = max(end, j+4)
	}
	return true
}

func isHostByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '/' || c == '@' || c == '_'
}

func urlStop(c byte) bool {
	return c <= ' ' || c == '<' || c == '>' || c == '"' || c == '`' || c == 0x7f
}

// parseURL reads the scheme and authority of an absolute http(s) URL, a
// protocol-relative one or a bare www. host (RFC 3986 §3). Other schemes
// (mailto, cid, data, javascript) and relative references are skipped.
func parseURL(raw, source string) (URL, bool) { return parseURLMemo(raw, source, nil) }

// parseURLMemo is parseURL with a memo of registered domains by host
// (nil for none): one message names the same few hosts again and again.
func parseURLMemo(raw, source string, memo map[string]string) (URL, bool) {
	s := strings.TrimSpace(raw)
	if len(s) > 2048 {
		s = s[:2048]
	}
	u := URL{Raw: s, Source: source}
	lower := asciiLower(s)
	var rest string
	switch {
	case strings.HasPrefix(lower, "http://"), strings.HasPrefix(lower, "https://"):
		k := strings.Index(s, "://")
		u.Scheme, rest = lower[:k], s[k+3:]
	case strings.HasPrefix(lower, "http:\\\\"), strings.HasPrefix(lower, "https:\\\\"):
		k := strings.Index(s, ":")
		u.Scheme, rest = lower[:k], s[k+3:]
	case strings.HasPrefix(lower, "//"):
		rest = s[2:]
	case strings.HasPrefix(lower, "www."):
		rest = s
	default:
		return u, false
	}
	// Browsers read a backslash in an http URL as a slash.
	auth := rest
	if k := strings.IndexAny(auth, "/\\?#"); k >= 0 {
		auth = auth[:k]
	}
	// RFC 3986 §3.2.1: userinfo ends at the last @ of the authority.
	if k := strings.LastIndexByte(auth, '@'); k >= 0 {
		u.Userinfo = true
		auth = auth[k+1:]
	}
	host := auth
	if strings.HasPrefix(host, "[") { // RFC 3986 §3.2.2: IP-literal
		k := strings.IndexByte(host, ']')
		if k < 0 {
			return u, false
		}
		if p := host[k+1:]; strings.HasPrefix(p, ":") {
			u.Port = p[1:]
		}
		host = host[1:k]
	} else if k := strings.LastIndexByte(host, ':'); k >= 0 {
		host, u.Port = host[:k], host[k+1:]
	}
	if u.Port != "" {
		if n, err := strconv.Atoi(u.Port); err != nil || n < 0 || n > 65535 {
			u.Port = "invalid"
		} else {
			u.Port = strconv.Itoa(n)
		}
	}
	if strings.IndexByte(host, '%') >= 0 {
		if h, err := url.PathUnescape(host); err == nil {
			host = h
		}
	}
	host = strings.TrimSuffix(asciiLower(host), ".")
	if host == "" || len(host) > 253 {
		return u, false
	}
	if !mayBeIP(host) {
		// a name: the common case, no IP parsing
	} else if ip, err := netip.ParseAddr(host); err == nil {
		u.Host, u.Domain, u.IsIP = ip.Unmap().String(), ip.Unmap().String(), true
		return u, true
	} else if ip, ok := inetAton(host); ok {
		u.Host, u.Domain, u.IsIP = ip.String(), ip.String(), true
		u.ObfuscatedIP = u.Host != host
		return u, true
	}
	u.Host = host
	if !isASCII(host) || strings.Contains(host, "xn--") {
		// RFC 5891 §5: the A-label form is what DNS and lists know.
		if a, err := idna.Lookup.ToASCII(host); err == nil && a != "" {
			u.Host = a
		}
		u.MixedScript = mixedScript(host)
	}
	u.Punycode = strings.HasPrefix(u.Host, "xn--") || strings.Contains(u.Host, ".xn--")
	if d, ok := memo[u.Host]; ok {
		u.Domain = d
	} else {
		u.Domain = registeredDomain(u.Host)
		if memo != nil && len(memo) < 1000 {
			memo[u.Host] = u.Domain
		}
	}
	u.Shortener = shorteners[u.Domain] || shorteners[u.Host]
	return u, true
}

// mayBeIP reports a host that could be an IP literal in some form: one
// with a colon, or whose last label starts with a digit (no top-level
// domain does).
func mayBeIP(host string) bool {
	if strings.IndexByte(host, ':') >= 0 {
		return true
	}
	last := host[strings.LastIndexByte(host, '.')+1:]
	return last != "" && '0' <= last[0] && last[0] <= '9'
}

func registeredDomain(host string) string {
	if d, err := publicsuffix.EffectiveTLDPlusOne(host); err == nil {
		return d
	}
	return host
}

func registeredDomainStrict(host string) (string, error) {
	return publicsuffix.EffectiveTLDPlusOne(host)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// inetAton reads the IPv4 forms that inet_aton(3) and browsers accept
// besides dotted decimal: 1 to 4 parts, each decimal, 0x hex or 0 octal,
// the last part filling the remaining bytes (http://0x7f000001/,
// http://2130706433/, http://0177.1/).
func inetAton(host string) (netip.Addr, bool) {
	parts := strings.Split(host, ".")
	if len(parts) > 4 || host == "" {
		return netip.Addr{}, false
	}
	var vals [4]uint64
	for i, p := range parts {
		base := 10
		switch {
		case strings.HasPrefix(p, "0x"):
			base, p = 16, p[2:]
			if p == "" {
				p = "0"
			}
		case len(p) > 1 && p[0] == '0':
			base, p = 8, p[1:]
		}
		v, err := strconv.ParseUint(p, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	n := len(parts)
	var ip uint64
	for i := 0; i < n-1; i++ {
		if vals[i] > 255 {
			return netip.Addr{}, false
		}
		ip |= vals[i] << (8 * (3 - i))
	}
	lastBits := 8 * (4 - (n - 1))
	if vals[n-1] >= 1<<lastBits {
		return netip.Addr{}, false
	}
	ip |= vals[n-1]
	return netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)}), true
}

var hostScripts = []*unicode.RangeTable{
	unicode.Latin, unicode.Cyrillic, unicode.Greek, unicode.Armenian, unicode.Georgian, unicode.Hebrew,
	unicode.Arabic, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul, unicode.Thai,
}

// mixedScript reports a label whose letters come from more than one
// script (the homograph trick: a Cyrillic "а" in a Latin name), taking the
// U-label form of A-labels. Han with kana or Hangul is normal Japanese or
// Korean and does not count.
func mixedScript(host string) bool {
	if u, err := idna.Display.ToUnicode(host); err == nil {
		host = u
	}
	for _, label := range strings.Split(host, ".") {
		seen := map[int]bool{}
		for _, c := range label {
			if !unicode.IsLetter(c) {
				continue
			}
			for i, t := range hostScripts {
				if unicode.Is(t, c) {
					seen[i] = true
					break
				}
			}
		}
		// Han (7) with Hiragana/Katakana (8, 9) or Hangul (10) is one writing system.
		if seen[7] && (seen[8] || seen[9] || seen[10]) {
			delete(seen, 7)
			if seen[8] && seen[9] {
				delete(seen, 9)
			}
		}
		if len(seen) > 1 {
			return true
		}
	}
	return false
}

// linkTextMismatch reports an anchor whose visible text names a domain
// other than the one its href goes to: <a href="http://evil.example">
// www.bank.example</a>.
func linkTextMismatch(a anchor) bool {
	target, ok := parseURL(a.href, "href")
	if !ok || target.Domain == "" {
		return false
	}
	text := strings.TrimSpace(a.text)
	if text == "" || len(text) > 256 {
		return false
	}
	var shown string
	scanText(text, 1, func(s string) { shown = s })
	if shown == "" {
		// A bare domain as the whole text: "paypal.com".
		word := strings.Trim(strings.ToLower(text), " .,;:!?()[]<>\"'")
		if strings.ContainsAny(word, " /@") || !strings.Contains(word, ".") || !utf8.ValidString(word) {
			return false
		}
		if _, icann := publicsuffix.PublicSuffix(word); !icann {
			return false
		}
		if _, err := publicsuffix.EffectiveTLDPlusOne(word); err != nil {
			return false
		}
		shown = "http://" + word
	}
	u, ok := parseURL(shown, "text")
	if !ok || u.Domain == "" || target.Domain == "" {
		return false
	}
	return u.Domain != target.Domain
}
