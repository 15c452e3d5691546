package main

import (
	"bytes"
	"strings"
	"testing"
)

// Three rounds in the script's order (Postfix, moat, the sink); the
// machine was slower in the second. Each ratio is taken within its round.
const sample = `case,messages,sessions,size,rate,accept_rate,p50_ms,p99_ms,cpu_per_1000,peak_mb,smtp_source_rate,smtp_source_cpu_per_1000,round
postfix,100,20,2048,200,300,15,80,4,100,400,4.5,1
moat,100,20,2048,400,500,20,50,2,30,300,2.5,1
smtp-sink,100,20,2048,8000,9000,0.3,1,0.05,9,5000,0.1,1
postfix,100,20,2048,100,200,25,90,5,110,300,5.5,2
moat,100,20,2048,300,400,30,70,3,32,200,3.5,2
smtp-sink,100,20,2048,4000,5000,0.5,2,0.07,9,4000,0.12,2
postfix,100,20,2048,140,250,20,85,4.5,105,350,5,3
moat,100,20,2048,350,450,25,60,2.5,31,250,3,3
moat-scan,100,20,2048,175,200,50,120,3,40,125,3.5,3
`

func TestReport(t *testing.T) {
	rows, err := read(strings.NewReader(sample))
	if err != nil || len(rows) != 9 {
		t.Fatalf("read: %v, %d rows", err, len(rows))
	}
	var table, svg bytes.Buffer
	writeTable(&table, rows)
	writeSVG(&svg, rows)
	for _, want := range []string{
		"medians of 3 round(s)",
		"| moat | 350 | 450 | 25.00 | 60.00 | 2.500 | 31.0 | 250 | 3.000 |",
		"| smtp-sink | 6000 |",
		"moat/Postfix throughput: 2.50× (rounds: 2.00, 3.00, 2.50); CPU per message: 0.56×",
		// Round 3 ran no sink: its moat has nothing to be compared with.
		"moat/ceiling (smtp-sink alone) throughput: 0.06× (rounds: 0.05, 0.07)",
		"smtp-source, moat/Postfix throughput: 0.71× (rounds: 0.75, 0.67, 0.71)",
		"smtp-source, moat/ceiling throughput: 0.06× (rounds: 0.06, 0.05)",
		// moat-scan is its own case, not counted as moat.
		"| moat-scan | 175 |",
		"moat with scanners/moat throughput: 0.50× (rounds: 0.50); moat's CPU per message: 1.20×",
	} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	// The table lists moat first, whatever order the cases ran in.
	m, p, k := strings.Index(table.String(), "| moat |"), strings.Index(table.String(), "| postfix |"), strings.Index(table.String(), "| smtp-sink |")
	if m < 0 || m > p || p > k {
		t.Errorf("table rows out of order (moat %d, postfix %d, smtp-sink %d):\n%s", m, p, k, table.String())
	}
	if !strings.HasPrefix(svg.String(), "<svg") || !strings.Contains(svg.String(), "postfix p99") || strings.Count(svg.String(), "moat p50") != 1 {
		t.Errorf("svg:\n%s", svg.String())
	}
	for _, bad := range []string{"", "a,b\n1,2\n"} {
		if _, err := read(strings.NewReader(bad)); err == nil {
			t.Errorf("read(%q) accepted", bad)
		}
	}
}
