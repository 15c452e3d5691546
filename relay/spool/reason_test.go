package spool

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// A quarantine reason is stored and read back; records without one (as
// every record written before the field) read as nil; over-long reasons
// are cut when written and refused when read.
func TestReason(t *testing.T) {
	sp, err := Open(t.TempDir(), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	facts := make([]string, MaxReasonFacts+3)
	for i := range facts {
		facts[i] = fmt.Sprintf("rule: fact%d=%s", i, strings.Repeat("x", i))
	}
	facts[0] = strings.Repeat("y", maxField+10)
	env := &Envelope{ID: sp.NewID(), Recipients: []Recipient{{Address: "a@b.example", Status: StatusPending}}, Received: time.Now(),
		Quarantine: &Reason{Rule: "hold", Score: 6.5, Incident: "inc1", Facts: facts}}
	if err := sp.Put(context.Background(), env, strings.NewReader("Subject: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	got, err := sp.Get(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	r := got.Quarantine
	if r == nil || r.Rule != "hold" || r.Score != 6.5 || r.Incident != "inc1" || len(r.Facts) != MaxReasonFacts ||
		len(r.Facts[0]) != maxField || r.Facts[1] != facts[1] || r.Facts[MaxReasonFacts-1] != facts[MaxReasonFacts-1] {
		t.Errorf("read back %+v", r)
	}
	if len(env.Quarantine.Facts) != MaxReasonFacts+3 {
		t.Error("the caller's envelope was changed")
	}

	old := `{"v":1,"id":"abc","recipients":[{"address":"a@b","status":"pending"}]}`
	if e, err := ParseEnvelope([]byte(old)); err != nil || e.Quarantine != nil {
		t.Errorf("record without a reason: %v %+v", err, e)
	}
	many := `{"v":1,"id":"abc","recipients":[{"address":"a@b","status":"pending"}],"quarantine":{"rule":"r","score":1,"facts":[` +
		strings.TrimSuffix(strings.Repeat(`"f",`, MaxReasonFacts+1), ",") + `]}}`
	if _, err := ParseEnvelope([]byte(many)); err == nil {
		t.Error("a reason with too many facts was accepted")
	}
	long := `{"v":1,"id":"abc","recipients":[{"address":"a@b","status":"pending"}],"quarantine":{"rule":"` + strings.Repeat("r", maxField+1) + `","score":1}}`
	if _, err := ParseEnvelope([]byte(long)); err == nil {
		t.Error("a reason with a too long rule was accepted")
	}
	// Clone copies the reason deeply.
	c := got.Clone()
	c.Quarantine.Facts[0] = "changed"
	if got.Quarantine.Facts[0] == "changed" {
		t.Error("Clone shares the facts")
	}
}
