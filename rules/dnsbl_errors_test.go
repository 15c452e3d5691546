package rules

import (
	"context"
	"testing"
)

// Issue 27 item 9: the connect-stage fact dnsbl.errors names the DNS
// lists that failed, so a rule can act on a list that gave no answer.
func TestDNSBLErrorsFact(t *testing.T) {
	s := mustLoad(t, map[string]string{"a.yaml": `rules:
  - {name: blind, stage: connect, action: tempfail, when: '"zen.example" in dnsbl.errors'}
`})
	e := NewEngine(s, EngineOptions{})
	f := baseFacts()
	if v := e.Evaluate(context.Background(), StageConnect, f); v.Rule == "blind" {
		t.Fatalf("no error, yet %+v", v)
	}
	f = baseFacts()
	f.DNSBL.Errors = []string{"zen.example"}
	if v := e.Evaluate(context.Background(), StageConnect, f); v.Rule != "blind" || v.Action != Tempfail {
		t.Fatalf("list error: %+v", v)
	}
}
