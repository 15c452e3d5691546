package bayes

import (
	"slices"
	"strings"
	"testing"
)

func TestTokenize(t *testing.T) {
	tests := []struct {
		name    string
		in      Input
		want    []string // must be present
		notWant []string // must be absent
	}{
		{
			name:    "words lower-cased, digits collapsed, short dropped",
			in:      Input{Text: "Buy CHEAP Viagra now for $100 a 2x pack!"},
			want:    []string{"buy", "cheap", "viagra", "now", "for", "$#", "#x", "pack"},
			notWant: []string{"a", "Buy", "$100"},
		},
		{
			name:    "long words are skipped to a prefix",
			in:      Input{Text: "aaaaaaaaaabbbbbbbbbbccccccccccdddddddddd ok"},
			want:    []string{"sk:aaaaaaa", "ok"},
			notWant: []string{"aaaaaaaaaabbbbbbbbbbccccccccccdddddddddd"},
		},
		{
			name: "punctuation trimmed, inner kept",
			in:   Input{Text: "re-sent ...e.g. 'quoted' bob@example.org."},
			want: []string{"re-sent", "e.g", "quoted", "bob@example.org"},
		},
		{
			name: "subject words are prefixed",
			in:   Input{Subject: "Your Invoice 12345"},
			want: []string{"s:your", "s:invoice", "s:#"},
		},
		{
			name: "no subject",
			in:   Input{},
			want: []string{"s:none"},
		},
		{
			name: "header tokens",
			in: Input{Headers: []Field{
				{Name: "From", Value: `"Big Deals" <promo@mail.deals.example.com>`},
				{Name: "Reply-To", Value: "x@other.example"},
				{Name: "Message-ID", Value: "<abc@mta.example.net>"},
				{Name: "X-Mailer", Value: "PHPMailer 6.1"},
				{Name: "Content-Type", Value: `text/html; charset="windows-1251"`},
				{Name: "Received", Value: "from relay.bad.example.co.uk (relay.bad.example.co.uk [192.0.2.1]) by mx.example.org with ESMTP id 1"},
				{Name: "To", Value: "a@x, b@x, c@x"},
				{Name: "X-Anything"},
			}},
			want: []string{
				"h:from", "from:mail.deals.example.com", "fromname:big", "fromname:deals",
				"replyto:other.example", "mid:mta.example.net", "xm:phpmailer", "xm:#.#",
				"ct:text/html", "cs:windows-1251", "rcvd:example.co.uk", "rcvd:example.org",
				"rcvd:with:esmtp", "tocount:4", "h:x-anything",
			},
			notWant: []string{"rcvd:192.0.2.1"},
		},
		{
			name: "url tokens",
			in:   Input{URLs: []string{"https://Login.Bank.example.co.uk:8443/x?y", "http://192.0.2.7/p", "user@www.example.com"}},
			want: []string{"uscheme:https", "u:login.bank.example.co.uk", "ud:example.co.uk", "u:ip", "uscheme:http", "u:userinfo", "ud:example.com"},
		},
		{
			name: "mime parts",
			in:   Input{Parts: []string{"top:multipart/mixed", "att:application/zip", "ext:zip"}},
			want: []string{"p:top:multipart/mixed", "p:att:application/zip", "p:ext:zip"},
		},
		{
			name: "cjk characters are tokens of their own",
			in:   Input{Text: "お得な情報 sale"},
			want: []string{"お", "得", "情", "sale"},
		},
		{
			name:    "duplicates once",
			in:      Input{Text: "spam spam spam"},
			want:    []string{"spam"},
			notWant: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Tokenize(tt.in, TokenOptions{})
			for _, w := range tt.want {
				if !slices.Contains(got, w) {
					t.Errorf("token %q missing from %q", w, got)
				}
			}
			for _, w := range tt.notWant {
				if slices.Contains(got, w) {
					t.Errorf("token %q present in %q", w, got)
				}
			}
			seen := map[string]bool{}
			for _, g := range got {
				if seen[g] {
					t.Errorf("token %q twice", g)
				}
				seen[g] = true
			}
		})
	}
}

func TestTokenizeBounds(t *testing.T) {
	text := strings.Repeat("word ", 10) + func() string {
		var b strings.Builder
		for i := range 5000 {
			b.WriteString("w")
			b.WriteString(strings.Repeat("x", i%20))
			b.WriteString(string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + " ")
		}
		return b.String()
	}()
	got := Tokenize(Input{Text: text}, TokenOptions{MaxTokens: 300})
	if len(got) != 300 {
		t.Fatalf("got %d tokens, want the bound 300", len(got))
	}
	pairs := Tokenize(Input{Text: "one two three"}, TokenOptions{Pairs: true})
	for _, w := range []string{"one two", "two three"} {
		if !slices.Contains(pairs, w) {
			t.Errorf("pair %q missing from %q", w, pairs)
		}
	}
}

func TestTextURLs(t *testing.T) {
	got := textURLs("see https://a.example/x, or www.b.example. Or HTTP://C.example/(y) and httpd.", 10)
	want := []string{"https://a.example/x", "www.b.example", "HTTP://C.example/(y"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestFieldNamesAndDigest(t *testing.T) {
	raw := []byte("Received: from a\r\n\tby b\r\nMessage-ID: <1@x>\r\nSubject: hi\r\n\r\nbody\r\n")
	if got := FieldNames(raw, 10); !slices.Equal(got, []string{"Received", "Message-ID", "Subject"}) {
		t.Errorf("FieldNames = %q", got)
	}
	// Another trace field and LF line endings: the same message.
	other := []byte("Received: from c\nReceived: from a\n\tby b\nMessage-ID: <1@x>\nSubject: hi\n\nbody\n")
	if DigestOf("<1@x>", raw) != DigestOf("<1@x>", other) {
		t.Error("digest changed with trace fields and line endings")
	}
	if DigestOf("<1@x>", raw) == DigestOf("<2@x>", raw) {
		t.Error("digest ignores the Message-ID")
	}
	if DigestOf("<1@x>", raw) == DigestOf("<1@x>", []byte("Subject: hi\r\n\r\nbody2\r\n")) {
		t.Error("digest ignores the body")
	}
}

func FuzzTokenize(f *testing.F) {
	f.Add("Subject words", "From: <a@b.example>", "Some text with http://x.example/y and 123 numbers", "https://u.example")
	f.Add("", "Received: from a.b.example ([192.0.2.1]) with esmtp", "お得な情報 ünïcødé \xff\xfe", "[::1]:25")
	f.Add("s", "Content-Type: text/plain; charset=", "www.", "@")
	f.Fuzz(func(t *testing.T, subject, header, text, url string) {
		name, value, _ := strings.Cut(header, ":")
		in := Input{Subject: subject, Text: text, URLs: []string{url}, Parts: []string{url},
			Headers: []Field{{Name: name, Value: value}, {Name: "Received", Value: value}, {Name: "From", Value: value}}}
		toks := Tokenize(in, TokenOptions{MaxTokens: 200, Pairs: true})
		if len(toks) > 200 {
			t.Fatalf("%d tokens over the bound", len(toks))
		}
		seen := map[string]bool{}
		for _, tok := range toks {
			if tok == "" || seen[tok] {
				t.Fatalf("empty or duplicate token %q", tok)
			}
			seen[tok] = true
		}
		if _, _, err := Parse([]byte(header + "\r\n\r\n" + text)); err != nil && len(header) < 1000 {
			t.Fatalf("Parse: %v", err)
		}
	})
}
