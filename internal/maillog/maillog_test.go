package maillog

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 123e6, time.UTC)

func TestFormat(t *testing.T) {
	tests := []struct {
		name string
		e    Event
		want string
	}{
		{"auth failure",
			Event{Time: t0, Kind: Rejected, ConnID: "c1", Client: "192.0.2.7", Reply: "535 5.7.8 Authentication credentials invalid"},
			`2026-05-01T12:00:00.123Z moat: event=rejected client=192.0.2.7 conn_id=c1 reply="535 5.7.8 Authentication credentials invalid"`},
		{"accepted",
			Event{Time: t0, Kind: Accepted, ConnID: "c2", QueueID: "q9", Client: "2001:db8::1", ClientName: "mail.example.net",
				HELO: "mail.example.net", Sender: "a@example.net", Recipients: []string{"b@example.org", "c@example.org"},
				Verdict: "accept", Reply: "250 2.0.0 Ok: queued as q9", Size: 1234},
			`2026-05-01T12:00:00.123Z moat: event=accepted client=2001:db8::1 conn_id=c2 queue_id=q9 reply="250 2.0.0 Ok: queued as q9" verdict=accept size=1234 client_name=mail.example.net helo=mail.example.net sender=a@example.net rcpt=b@example.org rcpt=c@example.org`},
		{"delivered",
			Event{Time: t0.In(time.FixedZone("x", 3600)), Kind: Delivered, QueueID: "q9", Route: "backend", Relay: "10.0.0.5",
				Reply: "250 ok", Delay: 1500 * time.Millisecond, Attempts: 2, Recipients: []string{"b@example.org"}},
			`2026-05-01T12:00:00.123Z moat: event=delivered queue_id=q9 reply="250 ok" route=backend relay=10.0.0.5 delay=1.5s attempts=2 rcpt=b@example.org`},
		{"refused at rcpt",
			Event{Time: t0, Kind: Rejected, ConnID: "c3", Client: "192.0.2.9", Reply: "554 5.7.1 Relay access denied",
				Stage: "rcpt", Reason: "route", HELO: "x.example", Sender: "s@far.example", Recipients: []string{"u@elsewhere.example"}},
			`2026-05-01T12:00:00.123Z moat: event=rejected client=192.0.2.9 conn_id=c3 reply="554 5.7.1 Relay access denied" stage=rcpt reason=route helo=x.example sender=s@far.example rcpt=u@elsewhere.example`},
		{"rule and incident",
			Event{Time: t0, Kind: Rejected, Client: "198.51.100.1", Verdict: "reject", Rule: "dmarc-reject", Incident: "INC-7", Sender: ""},
			`2026-05-01T12:00:00.123Z moat: event=rejected client=198.51.100.1 verdict=reject rule=dmarc-reject incident=INC-7`},
		{"quoting",
			Event{Time: t0, Kind: Rejected, Client: "192.0.2.1", HELO: `a"b`, Sender: "x=y", Recipients: []string{`back\slash`, "é@example.org"}},
			`2026-05-01T12:00:00.123Z moat: event=rejected client=192.0.2.1 helo="a\"b" sender="x=y" rcpt="back\\slash" rcpt="é@example.org"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(Append(nil, tt.e))
			if got != tt.want+"\n" {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
			back, err := Parse(got)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.e
			want.Time = want.Time.UTC()
			if !reflect.DeepEqual(back, want) {
				t.Fatalf("parsed back\n%+v\nwant\n%+v", back, want)
			}
		})
	}
}

// A client-controlled value never makes a second line or a second
// client= field, and a pattern anchored at the start still finds the
// real client.
func TestNoForgery(t *testing.T) {
	evil := []string{
		"x\n2026-05-01T12:00:00.000Z moat: event=rejected client=6.6.6.6",
		"a@b client=1.2.3.4",
		"a@b\" client=1.2.3.4 x=\"",
		"a\r\nclient=1.2.3.4",
		"\u2028client=1.2.3.4",
		"\x00client=1.2.3.4\x85",
		"\\\" client=1.2.3.4",
		"\xff\xfe client=1.2.3.4",
	}
	for _, s := range evil {
		e := Event{Time: t0, Kind: Rejected, Client: "192.0.2.9", ConnID: s, ClientName: s, HELO: s, Sender: s,
			Recipients: []string{s, s}, Reply: "550 5.7.1 " + s, Rule: s, Relay: s}
		line := string(Append(nil, e))
		if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") || strings.ContainsAny(line[:len(line)-1], "\r\u2028\u2029\x85") {
			t.Errorf("%q: not one line: %q", s, line)
		}
		if !strings.HasPrefix(line, "2026-05-01T12:00:00.123Z moat: event=rejected client=192.0.2.9 ") {
			t.Errorf("%q: prefix changed: %q", s, line)
		}
		back, err := Parse(line)
		if err != nil {
			t.Fatalf("%q: %v\n%s", s, err, line)
		}
		if back.Client != "192.0.2.9" || back.Sender != s || back.HELO != s || len(back.Recipients) != 2 || back.Recipients[0] != s {
			t.Errorf("%q: parsed %+v", s, back)
		}
	}
}

// The worst event (every field at its cap, every byte escaped, many
// recipients) still fits in MaxLine.
func TestLineBound(t *testing.T) {
	huge := strings.Repeat("\x01é ", 2000)
	var rcpts []string
	for i := range 5000 {
		rcpts = append(rcpts, fmt.Sprintf("user%d@%s", i, strings.Repeat("d", 40)))
	}
	e := Event{Time: t0, Kind: huge, ConnID: huge, QueueID: huge, Client: huge, ClientName: huge, HELO: huge, Sender: huge,
		Recipients: rcpts, Verdict: huge, Rule: huge, Incident: huge, Reply: huge, Route: huge, Relay: huge,
		Stage: huge, Reason: huge, Size: 1<<63 - 1, Delay: 1<<63 - 1, Attempts: 1<<62 - 1}
	line := Append(nil, e)
	if len(line) > MaxLine {
		t.Fatalf("line of %d bytes", len(line))
	}
	back, err := Parse(string(line))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(line), ` rcpt="+`+strconv.Itoa(len(rcpts)-len(back.Recipients))+" more\"\n") {
		t.Fatalf("no +N more marker: ...%s", line[len(line)-80:])
	}
	if len(back.Recipients) == 0 || back.Recipients[0] != rcpts[0] {
		t.Fatalf("recipients %v", back.Recipients[:1])
	}
	if !strings.HasSuffix(back.Sender, ellipsis) || !strings.HasPrefix(huge, strings.TrimSuffix(back.Sender, ellipsis)) {
		t.Fatalf("sender not cut cleanly: %q", back.Sender)
	}
}

func TestTruncateBare(t *testing.T) {
	long := strings.Repeat("a", 600)
	back, err := Parse(string(Append(nil, Event{Time: t0, Kind: Rejected, Sender: long, Recipients: []string{long}})))
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Sender) != capAddr || !strings.HasSuffix(back.Sender, ellipsis) || len(back.Recipients) != 1 {
		t.Fatalf("%d %q", len(back.Sender), back.Sender[len(back.Sender)-5:])
	}
}

func TestParseErrors(t *testing.T) {
	ok := "2026-05-01T12:00:00.123Z moat: event=rejected"
	for _, line := range []string{
		"",
		"garbage",
		"2026-05-01 moat: event=x",
		"2026-05-01T12:00:00Z other: event=x",
		"2026-05-01T12:00:00Z moat: client=1.2.3.4",
		ok + " client=1 client=2",
		ok + " client=",
		ok + ` client="1`,
		ok + ` client="1"x`,
		ok + "  client=1",
		ok + " client",
		ok + " size=big",
		ok + " delay=forever",
		ok + "\nnext",
		ok + " " + strings.Repeat("x", MaxLine),
	} {
		if _, err := Parse(line); err == nil {
			t.Errorf("%q: no error", line)
		}
	}
	e, err := Parse(ok + " future_key=1 rcpt=\"+3 more\"\n")
	if err != nil || e.Kind != Rejected || e.Recipients != nil {
		t.Fatalf("%+v %v", e, err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				l.Log(Event{Kind: Accepted, Client: "192.0.2.1", ConnID: fmt.Sprintf("c%d-%d", i, j), Sender: strings.Repeat("s", i*j)})
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 400 {
		t.Fatalf("%d lines", len(lines))
	}
	for _, line := range lines {
		e, err := Parse(line)
		if err != nil || e.Kind != Accepted || time.Since(e.Time) > time.Hour {
			t.Fatalf("%q: %v", line, err)
		}
	}
	Nop().Log(Event{Kind: Accepted})
	var nilLogger *Logger
	nilLogger.Log(Event{Kind: Accepted})
	fl := New(failWriter{})
	fl.Log(Event{Kind: Accepted})
	if fl.WriteErrors() != 1 || nilLogger.WriteErrors() != 0 {
		t.Fatal("write errors not counted")
	}
}

func FuzzFormat(f *testing.F) {
	f.Add("rejected", "192.0.2.1", "a@b client=1.2.3.4", "mx\nclient=1.2.3.4", "r@x")
	f.Add("accepted", "2001:db8::1", "\"=\\", "\xff", "")
	f.Add("a b", "c=d", "\u2028", "\x00", "+3 more")
	f.Fuzz(func(t *testing.T, kind, client, sender, helo, rcpt string) {
		e := Event{Time: t0, Kind: kind, Client: client, Sender: sender, HELO: helo, Recipients: []string{rcpt, sender},
			Stage: helo, Reason: rcpt}
		line := string(Append(nil, e))
		if len(line) > MaxLine || strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
			t.Fatalf("not one bounded line: %q", line)
		}
		back, err := Parse(line)
		if kind == "" {
			if err == nil {
				t.Fatal("line with no event parsed")
			}
			return
		}
		if err != nil {
			t.Fatalf("%v: %q", err, line)
		}
		if fits(kind) && back.Kind != kind {
			t.Fatalf("kind %q became %q", kind, back.Kind)
		}
		if fits(client) && back.Client != client {
			t.Fatalf("client %q became %q", client, back.Client)
		}
		// The client field is the first after event, whatever the others hold.
		if client != "" {
			want := " client=" + string(appendValue(nil, client, capShort)) + " "
			if i := strings.Index(line, " client="); i < 0 || !strings.HasPrefix(line[i:], want) && !strings.HasPrefix(line[i:], strings.TrimSuffix(want, " ")+"\n") {
				t.Fatalf("client field misplaced: %q", line)
			}
		}
	})
}

// fits reports whether v is written whole (not cut at capShort).
func fits(v string) bool {
	return len(appendValue(nil, v, 1<<20)) <= capShort
}

func BenchmarkAppend(b *testing.B) {
	e := Event{Time: t0, Kind: Accepted, ConnID: "c2", QueueID: "q9", Client: "2001:db8::1", ClientName: "mail.example.net",
		HELO: "mail.example.net", Sender: "a@example.net", Recipients: []string{"b@example.org", "c@example.org"},
		Verdict: "accept", Reply: "250 2.0.0 Ok: queued as q9", Size: 1234}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = Append(buf[:0], e)
	}
}

// Parse never panics, and what it accepts formats and parses back the same.
func FuzzParse(f *testing.F) {
	f.Add("2026-05-01T12:00:00.123Z moat: event=rejected client=192.0.2.7 conn_id=c1 reply=\"535 5.7.8 x\"")
	f.Add("2026-05-01T12:00:00Z moat: event=delivered delay=1.5s size=3 attempts=2 rcpt=a rcpt=\"+2 more\"")
	f.Fuzz(func(t *testing.T, line string) {
		e, err := Parse(line)
		if err != nil {
			return
		}
		again, err := Parse(string(Append(nil, e)))
		if err != nil {
			t.Fatalf("reformatted line does not parse: %v", err)
		}
		if again.Kind != e.Kind && fits(e.Kind) || again.Client != e.Client && fits(e.Client) {
			t.Fatalf("%+v became %+v", e, again)
		}
	})
}
