package rules

import (
	"fmt"
	"math"
	"strings"
)

// SpamReport is what the X-Spam-* fields tell the next hop about one
// message.
type SpamReport struct {
	Junk     bool     // the message was marked junk (junk action or rules.score.tag)
	Score    float64  // the final score
	Required float64  // rules.score.tag
	Tests    []string // the score and junk rules that hit (Verdict.Tests)
}

// SpamHeaderPrefix starts every field SpamHeaders writes; incoming fields
// with this prefix (any case) are removed from inbound mail, so that a
// backend reading them reads only ours.
const SpamHeaderPrefix = "X-Spam-"

// maxLevel bounds the stars of X-Spam-Level (SpamAssassin's own limit).
const maxLevel = 50

// foldAt is the line length SpamHeaders folds at (RFC 5322 §2.1.1: lines
// SHOULD be at most 78 characters).
const foldAt = 78

// SpamHeaders returns the fields that SpamAssassin writes and that mail
// servers, Sieve scripts and procmail recipes already read:
//
//	X-Spam-Flag: YES                        (junk only)
//	X-Spam-Score: 7.3
//	X-Spam-Level: *******                   (one star a point; none below 1)
//	X-Spam-Status: Yes, score=7.3 required=5.0 tests=RULE_A,RULE_B
//
// X-Spam-Flag is written only for junk, as SpamAssassin does: a script
// that tests only for the field's presence then still works, and as
// incoming X-Spam-* fields are removed, its absence means "not junk".
// The tests list is folded after a comma when a line would pass 78
// columns (RFC 5322 §2.2.3: folding inserts CRLF before white space; the
// tab after the comma is that white space, as in SpamAssassin's own
// output); "none" when no test hit. Values hold only characters of rule
// names ([A-Za-z0-9_.:-], checked at load), digits and punctuation.
func SpamHeaders(r SpamReport) []Header {
	score := r.Score
	if math.Abs(score) < 0.05 || math.IsNaN(score) {
		score = 0 // no "-0.0"
	}
	yes := "No"
	var out []Header
	if r.Junk {
		yes = "Yes"
		out = append(out, Header{Name: "X-Spam-Flag", Value: "YES"})
	}
	out = append(out, Header{Name: "X-Spam-Score", Value: fmt.Sprintf("%.1f", score)})
	if stars := int(min(score, maxLevel)); stars >= 1 {
		out = append(out, Header{Name: "X-Spam-Level", Value: strings.Repeat("*", stars)})
	}
	out = append(out, Header{Name: "X-Spam-Status", Value: spamStatus(yes, score, r.Required, r.Tests)})
	return out
}

// spamStatus builds the (folded) value of X-Spam-Status.
func spamStatus(yes string, score, required float64, tests []string) string {
	var b strings.Builder
	b.WriteString(yes)
	fmt.Fprintf(&b, ", score=%.1f required=%.1f tests=", score, required)
	if len(tests) == 0 {
		b.WriteString("none")
		return b.String()
	}
	col := len("X-Spam-Status: ") + b.Len() // the column the current line has reached
	for i, t := range tests {
		if i > 0 {
			b.WriteByte(',')
			col++
			if col+len(t) > foldAt {
				b.WriteString("\r\n\t")
				col = 1 // the tab
			}
		}
		b.WriteString(t)
		col += len(t)
	}
	return b.String()
}
