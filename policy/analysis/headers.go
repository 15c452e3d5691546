package analysis

import (
	"net/mail"
	"net/netip"
	"regexp"
	"strings"
	"time"
	"unicode"
)

// HeaderFacts are heuristics over the header section (RFC 5322). Rules
// read them as hdr.<name>.
type HeaderFacts struct {
	DateMissing        bool     `expr:"date_missing"`
	DateMalformed      bool     `expr:"date_malformed"`     // Date does not parse (RFC 5322 §3.3)
	DateFuture         bool     `expr:"date_future"`        // more than Options.MaxDateFuture ahead
	DatePast           bool     `expr:"date_past"`          // more than Options.MaxDateAge behind
	MessageIDMissing   bool     `expr:"msgid_missing"`      // RFC 5322 §3.6.4: SHOULD be present
	MessageIDMalformed bool     `expr:"msgid_malformed"`    // not "<" id-left "@" id-right ">"
	FromMissing        bool     `expr:"from_missing"`       // no parseable From address (RFC 5322 §3.6.2)
	FromDomain         string   `expr:"from_domain"`        // registered domain of From
	FromNameAddress    bool     `expr:"from_name_address"`  // the display name holds an address of another domain
	ReplyToDiffers     bool     `expr:"reply_to_differs"`   // Reply-To registered domain ≠ From's
	SenderDiffers      bool     `expr:"sender_differs"`     // From registered domain ≠ envelope sender's
	Freemail           bool     `expr:"freemail"`           // From is at a free mailbox provider
	ReplyToFreemail    bool     `expr:"reply_to_freemail"`  // Reply-To is at a free mailbox provider
	SubjectMissing     bool     `expr:"subject_missing"`    //
	SubjectCaps        bool     `expr:"subject_caps"`       // at least 10 letters, 80% of them capitals
	SubjectCapsRatio   float64  `expr:"subject_caps_ratio"` // capitals / cased letters
	SubjectNeedless    bool     `expr:"subject_needless_encoding"`
	Mailer             string   `expr:"mailer"`        // X-Mailer, else User-Agent
	MailerForged       bool     `expr:"mailer_forged"` // a mailer string no real mailer sends (see forgedMailer)
	Received           int      `expr:"received"`      // Received fields (hops)
	ReceivedBad        int      `expr:"received_bad"`  // hops that do not parse as RFC 5322 §3.6.7 trace fields
	ReceivedPrivate    int      `expr:"received_private"`
	ReceivedDateOrder  bool     `expr:"received_date_order"` // a lower (older) hop is dated after a newer one
	ToMissing          bool     `expr:"to_missing"`
	ToUndisclosed      bool     `expr:"to_undisclosed"` // To: undisclosed-recipients:; or similar
	ToCount            int      `expr:"to_count"`       // To and Cc addresses (at most 100 counted)
	Names              []string `expr:"names"`          // lower-case names of the fields present, distinct
	Malformed          bool     `expr:"malformed"`      // the header section did not parse whole, or had more fields than kept
	Truncated          bool     `expr:"truncated"`      // more than 100 Received fields: the rest were not read
}

func (r *Result) computeHeaders() {
	m, f := r.msg, &r.hdr
	now := r.in.Now
	f.Malformed = m.HeaderMalformed()

	// RFC 5322 §3.6.1: the origination date is required.
	if d := strings.TrimSpace(m.RawHeader("Date")); d == "" {
		f.DateMissing = true
	} else if t, ok := ParseDate(d); !ok {
		f.DateMalformed = true
	} else {
		f.DateFuture = t.Sub(now) > r.opt.MaxDateFuture
		f.DatePast = now.Sub(t) > r.opt.MaxDateAge
	}

	if !m.HasHeader("Message-ID") {
		f.MessageIDMissing = true
	} else if !validMessageID(m.RawHeader("Message-ID")) {
		f.MessageIDMalformed = true
	}

	from := m.From()
	fromDomain := ""
	if from == "" {
		f.FromMissing = true
	} else {
		fromDomain = registeredDomain(domainOf(from))
		f.FromDomain = fromDomain
		f.Freemail = freemail[domainOf(from)] || freemail[fromDomain]
	}
	if a, err := addressParser.Parse(m.RawHeader("From")); err == nil && fromDomain != "" {
		f.FromNameAddress = nameHoldsOtherAddress(a.Name, fromDomain)
	}
	if rt := m.Header("Reply-To"); rt != "" {
		if a, err := addressParser.Parse(m.RawHeader("Reply-To")); err == nil {
			d := domainOf(strings.ToLower(a.Address))
			f.ReplyToFreemail = freemail[d] || freemail[registeredDomain(d)]
			f.ReplyToDiffers = fromDomain != "" && d != "" && registeredDomain(d) != fromDomain
		}
	}
	if s := r.in.Sender; s != "" && fromDomain != "" {
		if d := domainOf(strings.ToLower(s)); d != "" {
			f.SenderDiffers = registeredDomain(d) != fromDomain
		}
	}

	subj := m.Subject()
	f.SubjectMissing = !m.HasHeader("Subject")
	upper, cased := 0, 0
	for _, c := range subj {
		if unicode.IsUpper(c) {
			upper++
			cased++
		} else if unicode.IsLower(c) {
			cased++
		}
	}
	if cased > 0 {
		f.SubjectCapsRatio = float64(upper) / float64(cased)
	}
	f.SubjectCaps = cased >= 10 && f.SubjectCapsRatio >= 0.8
	// RFC 2047 §1: encoded words are for text that is not plain ASCII.
	if raw := m.RawHeader("Subject"); strings.Contains(raw, "=?") && raw != subj && isASCII(subj) {
		f.SubjectNeedless = true
	}

	f.Mailer = m.Header("X-Mailer")
	if f.Mailer == "" {
		f.Mailer = m.Header("User-Agent")
	}
	if len(f.Mailer) > 256 {
		f.Mailer = f.Mailer[:256]
	}
	f.MailerForged = forgedMailer(f.Mailer, m.HasHeader("X-Mailer") || m.HasHeader("User-Agent"))

	r.received(m.HeaderValues("Received"))

	to := m.Header("To")
	f.ToMissing = strings.TrimSpace(to) == "" && !m.HasHeader("Cc")
	lt := strings.ToLower(to)
	f.ToUndisclosed = strings.Contains(lt, "undisclosed") && (strings.Contains(lt, "recipient") || strings.Contains(lt, ":;"))
	f.ToCount = len(m.To())

	seen := map[string]bool{}
	for _, fl := range m.Fields() {
		n := strings.ToLower(fl.Name)
		if !seen[n] && len(f.Names) < 200 {
			seen[n] = true
			f.Names = append(f.Names, n)
		}
	}
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.TrimSuffix(addr[i+1:], ".")
	}
	return ""
}

// ParseDate reads an RFC 5322 §3.3 date-time, obsolete forms included
// (§4.3), with the comments some mailers append. The usual form
// ("Thu, 3 Dec 2026 20:00:00 +0000") is tried first: net/mail tries a
// dozen layouts in turn, each failure an allocated error, and every
// message has a Date and a Received field or more.
func ParseDate(s string) (time.Time, bool) {
	if len(s) > 200 {
		return time.Time{}, false
	}
	for _, layout := range commonDates {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	t, err := mail.ParseDate(s)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

// commonDates are the date-time forms of RFC 5322 §3.3 with a numeric
// zone, the day of the week given or not.
var commonDates = [...]string{"Mon, 2 Jan 2006 15:04:05 -0700", "2 Jan 2006 15:04:05 -0700"}

// validMessageID checks the msg-id form of RFC 5322 §3.6.4:
// "<" id-left "@" id-right ">", with optional surrounding CFWS.
func validMessageID(v string) bool {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, '('); i > 0 { // a trailing comment (CFWS)
		v = strings.TrimSpace(v[:i])
	}
	if len(v) < 5 || len(v) > 998 || v[0] != '<' || v[len(v)-1] != '>' {
		return false
	}
	in := v[1 : len(v)-1]
	at := strings.LastIndexByte(in, '@')
	if at <= 0 || at == len(in)-1 {
		return false
	}
	left, right := in[:at], in[at+1:]
	// id-left is dot-atom-text; id-right is dot-atom-text or no-fold-literal.
	if !dotAtom(left) && !(strings.HasPrefix(left, `"`) && strings.HasSuffix(left, `"`) && len(left) > 1) {
		return false
	}
	if strings.HasPrefix(right, "[") && strings.HasSuffix(right, "]") {
		return !strings.ContainsAny(right[1:len(right)-1], "[]\\ \t")
	}
	return dotAtom(right)
}

// dotAtom checks RFC 5322 §3.2.3 dot-atom-text.
func dotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c >= 0x80 {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", rune(c)) {
			return false
		}
	}
	return true
}

var addressParser = &mail.AddressParser{WordDecoder: wordDecoder}

var nameAddress = regexp.MustCompile(`[A-Za-z0-9._%+-]+@([A-Za-z0-9-]+\.)+[A-Za-z]{2,}`)

// nameHoldsOtherAddress reports a display name that shows an address of
// another domain than the real one: "support@bank.example" <x@evil.example>.
func nameHoldsOtherAddress(name, fromDomain string) bool {
	if len(name) > 512 || !strings.Contains(name, "@") {
		return false
	}
	a := nameAddress.FindString(name)
	if a == "" {
		return false
	}
	return registeredDomain(strings.ToLower(domainOf(a))) != fromDomain
}

// forgedMailer reports mailer strings no real mail program sends. The list
// is short on purpose (be conservative):
//   - an empty X-Mailer or User-Agent field;
//   - unexpanded template macros of bulk-mail tools: %RND..., %CUSTOM...,
//     {%...%}, [RANDOM...], $random...;
//   - the string "X-Mailer:" repeated inside the value (a header written twice).
func forgedMailer(v string, present bool) bool {
	if !present {
		return false
	}
	t := strings.TrimSpace(v)
	if t == "" {
		return true
	}
	u := strings.ToUpper(t)
	for _, p := range []string{"%RND", "%CUSTOM", "{%", "%}", "[RANDOM", "$RANDOM", "X-MAILER:", "%MAILER"} {
		if strings.Contains(u, p) {
			return true
		}
	}
	return false
}

var receivedFrom = regexp.MustCompile(`(?i)^\s*from\s+(\S+)\s*(?:\(([^)]*)\))?`)

// received reads the trace fields (RFC 5322 §3.6.7, RFC 5321 §4.4), top
// (newest) first. It counts hops that do not parse (no ";" date or no
// "from"/"by" clause), hops whose claimed public name came from a private
// address, and dates that run backwards by more than Options.ReceivedSkew.
func (r *Result) received(vals []string) {
	f := &r.hdr
	f.Received = len(vals)
	var newer time.Time
	for i, v := range vals {
		if i >= 100 {
			f.Truncated = true
			break
		}
		lv := strings.ToLower(v)
		semi := strings.LastIndexByte(v, ';')
		if semi < 0 || (!strings.Contains(lv, "from ") && !strings.Contains(lv, "by ")) {
			f.ReceivedBad++
			continue
		}
		t, ok := ParseDate(strings.TrimSpace(v[semi+1:]))
		if !ok {
			f.ReceivedBad++
		} else {
			if !newer.IsZero() && t.Sub(newer) > r.opt.ReceivedSkew {
				f.ReceivedDateOrder = true
			}
			newer = t
		}
		if !privateBracket(v) {
			continue // no private address: the from clause cannot claim one
		}
		if sm := receivedFrom.FindStringSubmatch(v); sm != nil && privateClaimsPublic(sm[1], sm[2]) {
			f.ReceivedPrivate++
		}
	}
}

// privateClaimsPublic reports a "from" clause whose HELO name is a public
// domain while the address the receiver saw is private (RFC 1918, RFC
// 4193). Loopback is left out: a host handing mail to itself (content
// filters) is normal.
func privateClaimsPublic(helo, comment string) bool {
	helo = strings.Trim(strings.ToLower(helo), "[]")
	if _, err := netip.ParseAddr(helo); err == nil || !strings.Contains(helo, ".") {
		return false
	}
	if _, err := registeredDomainStrict(helo); err != nil {
		return false
	}
	ip := bracketIP(comment)
	return ip.IsValid() && ip.IsPrivate()
}

// privateBracket reports whether some [address] in s is private: what
// privateClaimsPublic needs of the comment, asked of the whole field
// before its from clause is parsed.
func privateBracket(s string) bool {
	for i := 0; i < maxBrackets; i++ {
		j := strings.IndexByte(s, '[')
		if j < 0 {
			return false
		}
		s = s[j:]
		if ip := bracketIP(s); ip.IsValid() && ip.IsPrivate() {
			return true
		}
		s = s[1:]
	}
	return true // too many to look at: let the parse decide
}

// maxBrackets bounds the brackets privateBracket reads in one field.
const maxBrackets = 16

func bracketIP(s string) netip.Addr {
	i := strings.IndexByte(s, '[')
	j := strings.IndexByte(s, ']')
	if i < 0 || j < i {
		return netip.Addr{}
	}
	a := strings.TrimPrefix(strings.ToLower(s[i+1:j]), "ipv6:")
	ip, err := netip.ParseAddr(a)
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap()
}
