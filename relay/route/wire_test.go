package route

import "testing"

// TestWireDomain: a domain as received with SMTPUTF8 is taken only in
// its final form (issue 27 item 4); what is taken normalizes as routing
// does.
func TestWireDomain(t *testing.T) {
	good := map[string]string{
		"example.org":                 "example.org",
		"Example.ORG.":                "example.org",
		"b\u00fccher.example":         "xn--bcher-kva.example",
		"xn--bcher-kva.example":       "xn--bcher-kva.example",
		"XN--BCHER-KVA.example":       "xn--bcher-kva.example",
		"fa\u00df.de":                 "xn--fa-hia.de", // IDNA2008: ß is kept (RFC 5892)
		"r3---sn-abc.googlevideo.com": "r3---sn-abc.googlevideo.com",
	}
	for in, want := range good {
		got, err := WireDomain(in)
		if err != nil || got != want {
			t.Errorf("WireDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
		if n, err := NormalizeDomain(in); err != nil || n != got {
			t.Errorf("NormalizeDomain(%q) = %q, %v; routing and the wire disagree", in, n, err)
		}
	}
	for _, in := range []string{
		"\uff50\uff46.test",    // fullwidth letters
		"pf\uff0etest",         // fullwidth full stop
		"pf\u3002test",         // ideographic full stop
		"p\u00adf.test",        // soft hyphen
		"B\u00dcCHER.example",  // upper case U-label: not a U-label
		"bu\u0308cher.example", // not NFC
		"p\xfff.test",          // not UTF-8
		"xn--ab.example",       // an A-label that does not decode
		"a\u200db.example",     // a joiner out of context
		"exa_mple.org", "-a.example", "a..example", "",
	} {
		if got, err := WireDomain(in); err == nil {
			t.Errorf("WireDomain(%q) = %q, want an error", in, got)
		}
	}
	// Routing never takes stray octets for U+FFFD.
	if got, err := NormalizeDomain("p\xfff.test"); err == nil {
		t.Errorf("NormalizeDomain of invalid UTF-8 = %q", got)
	}
}

// TestWireAddress: the form of an address in a command to a next hop.
func TestWireAddress(t *testing.T) {
	tests := []struct {
		in, want string
		ascii    bool
	}{
		{"u@b\u00fccher.example", "u@xn--bcher-kva.example", true},
		{"u@B\u00dcCHER.example", "u@xn--bcher-kva.example", true}, // as routing maps it
		{"\u00fc@b\u00fccher.example", "\u00fc@xn--bcher-kva.example", false},
		{"\u00fc@example.org", "\u00fc@example.org", false},
		{"U@Example.ORG", "U@Example.ORG", true},
		{"", "", true},
		{"u@[192.0.2.1]", "u@[192.0.2.1]", true},
	}
	for _, tt := range tests {
		got, ascii := WireAddress(tt.in)
		if got != tt.want || ascii != tt.ascii {
			t.Errorf("WireAddress(%q) = %q, %v; want %q, %v", tt.in, got, ascii, tt.want, tt.ascii)
		}
	}
}

// FuzzWireDomain: what WireDomain takes is what routing uses, and the
// wire form of an address is ASCII exactly when its local part is.
func FuzzWireDomain(f *testing.F) {
	for _, s := range []string{"example.org", "b\u00fccher.example", "\uff50\uff46.test", "pf\uff0etest", "pf\u3002test",
		"p\u00adf.test", "p\xfff.test", "xn--ab.example", "B\u00dcCHER.example", "fa\u00df.de", "a\u200db.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, d string) {
		w, err := WireDomain(d)
		if err != nil {
			return
		}
		n, err := NormalizeDomain(d)
		if err != nil || n != w {
			t.Fatalf("WireDomain(%q) = %q, NormalizeDomain: %q, %v", d, w, n, err)
		}
		if !isASCII(w) {
			t.Fatalf("WireDomain(%q) = %q, not ASCII", d, w)
		}
		// An ASCII address goes as it is; another gets the A-label form.
		want := "u@" + w
		if isASCII(d) {
			want = "u@" + d
		}
		if wire, ascii := WireAddress("u@" + d); !ascii || wire != want {
			t.Fatalf("WireAddress(u@%q) = %q, %v; want %q", d, wire, ascii, want)
		}
	})
}
