package smtpd

import (
	"testing"

	"moat/internal/reply"
)

func TestParseCommand(t *testing.T) {
	cases := []struct {
		line, verb, arg string
		bad             bool
	}{
		{"", "", "", false},
		{"EHLO client.example", "EHLO", "client.example", false},
		{"ehlo  client.example  ", "EHLO", "client.example", false},
		{"QUIT", "QUIT", "", false},
		{"noop", "NOOP", "", false},
		{"NOOP hello there", "NOOP", "hello there", false},
		{"MAIL FROM:<a@b.example> SIZE=10", "MAIL", "FROM:<a@b.example> SIZE=10", false},
		{"STARTTLS", "STARTTLS", "", false},
		{"starttls", "STARTTLS", "", false},
		{"STARTTLS now", "STARTTLS", "now", false},
		{"STARTTLSX", "", "", true},
		{"FOO bar", "", "", true},
		{"FOO", "", "", true},
		{"FOOOO", "", "", true},
		{"EHLO\tx", "", "", true},
		{"MA1L FROM:<a@b>", "", "", true},
		{" EHLO x", "", "", true},
		{"\x00\x00\x00\x00", "", "", true},
	}
	for _, tc := range cases {
		verb, arg, err := parseCommand(tc.line)
		if (err != nil) != tc.bad || verb != tc.verb || arg != tc.arg {
			t.Errorf("parseCommand(%q) = %q, %q, %v; want %q, %q, bad=%v", tc.line, verb, arg, err, tc.verb, tc.arg, tc.bad)
		}
	}
}

func TestPaths(t *testing.T) {
	cases := []struct {
		in         string
		reverse    bool
		postmaster bool
		want, rest string
		bad        bool
	}{
		{in: "<a@b.example>", want: "a@b.example"},
		{in: "<a@b.example> SIZE=1", want: "a@b.example", rest: " SIZE=1"},
		{in: "a@b.example", want: "a@b.example"},
		{in: "<>", reverse: true, want: ""},
		{in: "<> BODY=8BITMIME", reverse: true, want: "", rest: " BODY=8BITMIME"},
		{in: "<>", bad: true},
		{in: "<@relay.example,@r2.example:user@far.example>", want: "user@far.example"},
		{in: `<"john doe"@b.example>`, want: "john doe@b.example"},
		{in: `<"a\"b"@b.example>`, want: `a"b@b.example`},
		{in: "<Postmaster>", postmaster: true, want: "Postmaster"},
		{in: "<postmaster> NOTIFY=NEVER", postmaster: true, want: "postmaster", rest: " NOTIFY=NEVER"},
		{in: "<POSTMASTER>", postmaster: true, want: "POSTMASTER"}, // RFC 5321 §4.5.1: any case
		{in: "<pOsTmAsTeR>", postmaster: true, want: "pOsTmAsTeR"},
		{in: "<Postmaster>", bad: true},
		{in: "<postmaster@b.example>", postmaster: true, want: "postmaster@b.example"},
		{in: "<a@b.example", bad: true},
		{in: "<@b.example>", bad: true},
		{in: "<a@>", bad: true},
		{in: "<not an address>", bad: true},
		{in: "<a b@c>", bad: true},
		{in: `<"unterminated@b>`, bad: true},
		{in: "<@nocolon>", bad: true},
		{in: "<a@[192.0.2.1]>", want: "a@[192.0.2.1]"},
		{in: "<üser@exämple.org>", want: "üser@exämple.org"},
	}
	for _, tc := range cases {
		p := pathParser{s: tc.in}
		var got string
		var err error
		if tc.reverse {
			got, err = p.reversePath()
		} else {
			got, err = p.path(tc.postmaster)
		}
		if (err != nil) != tc.bad || (!tc.bad && (got != tc.want || p.s != tc.rest)) {
			t.Errorf("%q (reverse %v, postmaster %v) = %q rest %q err %v; want %q rest %q bad=%v",
				tc.in, tc.reverse, tc.postmaster, got, p.s, err, tc.want, tc.rest, tc.bad)
		}
	}
}

func TestMailParams(t *testing.T) {
	strp := func(s string) *string { return &s }
	cases := []struct {
		params string
		utf8   bool
		want   MailOptions
		code   int // 0: accepted
	}{
		{params: "", want: MailOptions{}},
		{params: " SIZE=1000 BODY=8BITMIME", want: MailOptions{Size: 1000, Body: Body8BitMIME}},
		{params: " size=1000 body=7bit", want: MailOptions{Size: 1000, Body: Body7Bit}},
		{params: " SIZE=100001", code: 552},
		{params: " SIZE=abc", code: 501},
		{params: " SIZE", code: 501},
		{params: " SIZE=-1", code: 501},
		{params: " SIZE=99999999999999999999999", code: 501},
		{params: " BODY=BINARYMIME", code: 504},
		{params: " BODY=9BIT", code: 501},
		{params: " SMTPUTF8", utf8: true, want: MailOptions{UTF8: true}},
		{params: " SMTPUTF8", code: 555},
		{params: " SMTPUTF8=yes", utf8: true, code: 501},
		{params: " AUTH=<>", want: MailOptions{Auth: strp("")}},
		{params: " AUTH=alice@example.org", want: MailOptions{Auth: strp("alice@example.org")}},
		{params: " AUTH=e+2Bx@example.org", want: MailOptions{Auth: strp("e+x@example.org")}},
		{params: " AUTH=a+4@example.org", code: 501},
		{params: " AUTH=a+zz@example.org", code: 501},
		{params: " RET=HDRS", code: 555},
		{params: " ENVID=QQ314159", code: 555},
		{params: " REQUIRETLS", code: 555},
		{params: " X-UNKNOWN=1", code: 555},
		{params: " SIZE=1 SIZE=2", code: 501},
		{params: " =1", code: 501},
		{params: " -X=1", code: 501},
		{params: " SIZE=1=2", code: 501},
		{params: " A B C D E F G H I J K L M N O P Q", code: 501},
	}
	for _, tc := range cases {
		ps, err := parseParams(tc.params)
		var opts *MailOptions
		code := 0
		if err != nil {
			code = 501
		} else {
			var r *reply.Reply
			if opts, r = mailOptions(ps, 100000, tc.utf8); r != nil {
				code = r.Code
			}
		}
		if code != tc.code {
			t.Errorf("%q: code %d, want %d", tc.params, code, tc.code)
			continue
		}
		if code != 0 {
			continue
		}
		if opts.Size != tc.want.Size || opts.Body != tc.want.Body || opts.UTF8 != tc.want.UTF8 ||
			(opts.Auth == nil) != (tc.want.Auth == nil) || (opts.Auth != nil && *opts.Auth != *tc.want.Auth) {
			t.Errorf("%q: %+v, want %+v", tc.params, *opts, tc.want)
		}
	}
}

func TestDecodeXtext(t *testing.T) {
	for in, want := range map[string]string{"abc": "abc", "a+2Bb": "a+b", "+3D": "=", "+20+20": "  "} {
		if got, ok := decodeXtext(in); !ok || got != want {
			t.Errorf("decodeXtext(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"+", "+2", "+2b", "a+GG"} {
		if _, ok := decodeXtext(in); ok {
			t.Errorf("decodeXtext(%q) accepted", in)
		}
	}
}
