package rules

import (
	"context"
	"net"
	"testing"

	"moat/internal/dnstest"
	"moat/policy"
	"moat/policy/dmarc"
)

// txtOnly answers TXT lookups from a map; everything else is unsupported.
type txtOnly struct {
	dnstest.Unsupported
	txt map[string][]string
}

func (r txtOnly) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := r.txt[name]; ok {
		return v, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// TestDMARCPctLoweredOnce runs a DMARC fail through policy/dmarc and the
// default authentication policy: with p=reject; pct=50, a message not
// sampled gets quarantine (RFC 7489 §6.6.4: the next policy down, once),
// a sampled one is rejected; with p=quarantine, a message not sampled is
// delivered.
func TestDMARCPctLoweredOnce(t *testing.T) {
	r := txtOnly{txt: map[string][]string{
		"_dmarc.half.example":  {"v=DMARC1; p=reject; pct=50"},
		"_dmarc.halfq.example": {"v=DMARC1; p=quarantine; pct=50"},
	}}
	tests := []struct {
		from string
		rnd  float64
		want Action
	}{
		{"a@half.example", 0.2, Reject},
		{"a@half.example", 0.7, Quarantine},
		{"a@halfq.example", 0.2, Quarantine},
		{"a@halfq.example", 0.7, ""},
	}
	s, err := Load(writeSet(t, map[string]string{"a.yaml": "rules: []\n"}), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		f := baseFacts()
		f.DMARC = dmarc.Evaluate(context.Background(), r, dmarc.Input{
			From: []string{tt.from},
			SPF:  policy.SPF{Result: policy.ResultPass, Domain: "evil.example", Identity: "mailfrom"},
			Rand: func() float64 { return tt.rnd },
		})
		v := NewEngine(s, EngineOptions{}).Evaluate(context.Background(), StageData, f)
		if v.Action != tt.want {
			t.Errorf("%s rand=%v: dmarc %+v → action %q, want %q", tt.from, tt.rnd, f.DMARC, v.Action, tt.want)
		}
	}
}

// TestDKIMUnsignedFact: dkim.unsigned is the number of body octets an l=
// signature leaves unsigned (RFC 6376 §8.2), for rules to score.
func TestDKIMUnsignedFact(t *testing.T) {
	s := mustLoad(t, map[string]string{"a.yaml": `rules:
  - {name: appended, stage: data, action: score, score: 3, when: 'dkim.unsigned > 0 && dkim.result == "policy"'}
`})
	f := baseFacts()
	f.DKIM = policy.DKIM{Result: policy.ResultPolicy, Signatures: []policy.DKIMSignature{{Result: policy.ResultPolicy, Domain: "example.com", UnsignedBytes: 120}}}
	if v := NewEngine(s, EngineOptions{}).Evaluate(context.Background(), StageData, f); v.Score != 3 {
		t.Fatalf("unsigned content not seen: %+v", v)
	}
	f.DKIM = policy.DKIM{Result: policy.ResultPass, Signatures: []policy.DKIMSignature{{Result: policy.ResultPass, Domain: "example.com"}}}
	if v := NewEngine(s, EngineOptions{}).Evaluate(context.Background(), StageData, f); v.Score != 0 {
		t.Fatalf("scored a whole-body signature: %+v", v)
	}
}
