package main

import (
	"bytes"
	"strings"
	"testing"
)

const sample = `case,messages,sessions,size,rate,accept_rate,p50_ms,p99_ms,cpu_per_1000,peak_mb,smtp_source_rate
moat,100,20,2048,400,500,20,50,2,30,450
postfix,100,20,2048,200,300,15,80,4,100,400
smtp-sink,100,20,2048,8000,9000,0.3,1,0.05,9,5000
`

func TestReport(t *testing.T) {
	rows, err := read(strings.NewReader(sample))
	if err != nil || len(rows) != 3 {
		t.Fatalf("read: %v, %d rows", err, len(rows))
	}
	var table, svg bytes.Buffer
	writeTable(&table, rows)
	writeSVG(&svg, rows)
	for _, want := range []string{"| moat | 400 |", "moat/Postfix throughput: 2.00×; CPU per message: 0.50×", "moat/ceiling (smtp-sink alone) throughput: 0.05×"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if !strings.HasPrefix(svg.String(), "<svg") || !strings.Contains(svg.String(), "postfix p99") {
		t.Errorf("svg:\n%s", svg.String())
	}
	for _, bad := range []string{"", "a,b\n1,2\n"} {
		if _, err := read(strings.NewReader(bad)); err == nil {
			t.Errorf("read(%q) accepted", bad)
		}
	}
}
