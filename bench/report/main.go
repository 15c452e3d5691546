// Command report turns the benchmark's CSV (written by scripts/bench.sh)
// into an SVG bar chart and a Markdown table for bench/RESULTS.md, with the
// ratios moat/Postfix and moat/ceiling. The script runs the cases in
// rounds (Postfix, moat, the sink, then again), because the machine's
// speed drifts: the table shows each case's median over the rounds, and
// each ratio is taken within a round, between runs made one after the
// other, then its median reported with every round's value. No external
// tools: the SVG is written by hand.
//
//	report -csv bench/results/bench.csv -svg bench/results/bench.svg
package main

import (
	"encoding/csv"
	"flag"
	"fmt"
	"html"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// row is one benchmark case.
type row struct {
	Case       string
	Messages   int
	Sessions   int
	Size       int
	Rate       float64 // messages/s, first byte sent to last message at the sink
	AcceptRate float64 // messages/s as the client saw 250s
	P50, P99   float64 // ms, end of DATA to reply
	CPUPer1000 float64 // CPU seconds of the server's processes per 1,000 messages
	PeakMB     float64 // peak memory of the server's processes, MiB
	SourceRate float64 // smtp-source cross-check, messages/s to the sink
	SourceCPU  float64 // its CPU seconds per 1,000 messages
	Round      int     // 1, 2, ...: the cases of one round ran one after the other
}

var header = []string{"case", "messages", "sessions", "size", "rate", "accept_rate",
	"p50_ms", "p99_ms", "cpu_per_1000", "peak_mb", "smtp_source_rate", "smtp_source_cpu_per_1000", "round"}

func main() {
	in := flag.String("csv", "bench/results/bench.csv", "CSV written by scripts/bench.sh")
	svg := flag.String("svg", "bench/results/bench.svg", "SVG chart to write")
	flag.Parse()
	f, err := os.Open(*in)
	if err != nil {
		fail(err)
	}
	rows, err := read(f)
	f.Close()
	if err != nil {
		fail(err)
	}
	out, err := os.Create(*svg)
	if err != nil {
		fail(err)
	}
	writeSVG(out, rows)
	if err := out.Close(); err != nil {
		fail(err)
	}
	writeTable(os.Stdout, rows)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "report:", err)
	os.Exit(1)
}

func read(r io.Reader) ([]row, error) {
	recs, err := csv.NewReader(r).ReadAll()
	if err != nil {
		return nil, err
	}
	if len(recs) < 2 || strings.Join(recs[0], ",") != strings.Join(header, ",") {
		return nil, fmt.Errorf("want a header %q and at least one row", strings.Join(header, ","))
	}
	var rows []row
	for _, rec := range recs[1:] {
		num := func(i int) float64 { v, _ := strconv.ParseFloat(rec[i], 64); return v }
		rows = append(rows, row{
			Case: rec[0], Messages: int(num(1)), Sessions: int(num(2)), Size: int(num(3)),
			Rate: num(4), AcceptRate: num(5), P50: num(6), P99: num(7),
			CPUPer1000: num(8), PeakMB: num(9), SourceRate: num(10), SourceCPU: num(11), Round: int(num(12)),
		})
	}
	return rows, nil
}

// summarize returns one row per case, each field the median of that
// case's rounds: moat, Postfix and the sink first, whatever order they
// ran in, then any other case in first-seen order.
func summarize(rows []row) []row {
	var order []string
	by := map[string][]row{}
	for _, r := range rows {
		if by[r.Case] == nil {
			order = append(order, r.Case)
		}
		by[r.Case] = append(by[r.Case], r)
	}
	rank := func(c string) int {
		if i := slices.Index([]string{"moat", "postfix", "smtp-sink"}, c); i >= 0 {
			return i
		}
		return 3
	}
	slices.SortStableFunc(order, func(a, b string) int { return rank(a) - rank(b) })
	var out []row
	for _, c := range order {
		rs := by[c]
		med := func(f func(row) float64) float64 {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = f(r)
			}
			return median(v)
		}
		out = append(out, row{
			Case: c, Messages: rs[0].Messages, Sessions: rs[0].Sessions, Size: rs[0].Size,
			Rate:       med(func(r row) float64 { return r.Rate }),
			AcceptRate: med(func(r row) float64 { return r.AcceptRate }),
			P50:        med(func(r row) float64 { return r.P50 }),
			P99:        med(func(r row) float64 { return r.P99 }),
			CPUPer1000: med(func(r row) float64 { return r.CPUPer1000 }),
			PeakMB:     med(func(r row) float64 { return r.PeakMB }),
			SourceRate: med(func(r row) float64 { return r.SourceRate }),
			SourceCPU:  med(func(r row) float64 { return r.SourceCPU }),
			Round:      len(rs),
		})
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

// roundRatios returns f(a)/f(b) of each round that ran both cases, in
// round order.
func roundRatios(rows []row, a, b string, f func(row) float64) []float64 {
	num, den := map[int]float64{}, map[int]float64{}
	var rounds []int
	for _, r := range rows {
		switch {
		case r.Case == a:
			num[r.Round] = f(r)
			rounds = append(rounds, r.Round)
		case r.Case == b:
			den[r.Round] = f(r)
		}
	}
	var out []float64
	for _, k := range rounds {
		if d, ok := den[k]; ok && d > 0 {
			out = append(out, num[k]/d)
		}
	}
	return out
}

func writeTable(w io.Writer, rows []row) {
	sum := summarize(rows)
	if len(sum) > 0 {
		r := sum[0]
		fmt.Fprintf(w, "%d messages of %d bytes, %d concurrent sessions, loopback; medians of %d round(s).\n\n", r.Messages, r.Size, r.Sessions, r.Round)
	}
	fmt.Fprintln(w, "| case | messages/s (to sink) | accepted/s | p50 ms | p99 ms | CPU s / 1000 msgs | peak memory MiB | smtp-source: messages/s (to sink) | smtp-source: CPU s / 1000 msgs |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range sum {
		fmt.Fprintf(w, "| %s | %.0f | %.0f | %.2f | %.2f | %.3f | %.1f | %.0f | %.3f |\n",
			r.Case, r.Rate, r.AcceptRate, r.P50, r.P99, r.CPUPer1000, r.PeakMB, r.SourceRate, r.SourceCPU)
	}
	fmt.Fprintln(w)
	rate := func(r row) float64 { return r.Rate }
	cpu := func(r row) float64 { return r.CPUPer1000 }
	if v := roundRatios(rows, "moat", "postfix", rate); len(v) > 0 {
		fmt.Fprintf(w, "moat/Postfix throughput: %.2f× (rounds: %s); CPU per message: %.2f×\n",
			median(v), list(v), median(roundRatios(rows, "moat", "postfix", cpu)))
	}
	if v := roundRatios(rows, "moat", "smtp-sink", rate); len(v) > 0 {
		fmt.Fprintf(w, "moat/ceiling (smtp-sink alone) throughput: %.2f× (rounds: %s)\n", median(v), list(v))
	}
	if v := roundRatios(rows, "moat", "moat-base", rate); len(v) > 0 {
		fmt.Fprintf(w, "moat (content pack)/moat-base (baseline rules) throughput: %.2f× (rounds: %s); CPU per message: %.2f×\n",
			median(v), list(v), median(roundRatios(rows, "moat", "moat-base", cpu)))
	}
	// The cross-check: the same signed message from smtp-source, one
	// message per connection.
	src := func(r row) float64 { return r.SourceRate }
	if v := roundRatios(rows, "moat", "postfix", src); len(v) > 0 {
		fmt.Fprintf(w, "smtp-source, moat/Postfix throughput: %.2f× (rounds: %s)\n", median(v), list(v))
	}
	if v := roundRatios(rows, "moat", "smtp-sink", src); len(v) > 0 {
		fmt.Fprintf(w, "smtp-source, moat/ceiling throughput: %.2f× (rounds: %s)\n", median(v), list(v))
	}
	// Issue 22: moat with its four scanners against moat alone (the
	// scanners' own CPU is in bench-scanners.csv, not in this row's).
	if v := roundRatios(rows, "moat-scan", "moat", rate); len(v) > 0 {
		fmt.Fprintf(w, "moat with scanners/moat throughput: %.2f× (rounds: %s); moat's CPU per message: %.2f×\n",
			median(v), list(v), median(roundRatios(rows, "moat-scan", "moat", cpu)))
	}
}

func list(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(s, ", ")
}

// writeSVG draws two bar groups: throughput, and p50/p99 latency.
func writeSVG(w io.Writer, rows []row) {
	const width, left, barH, gap = 720, 170, 22, 8
	type bar struct {
		label string
		value float64
		unit  string
		color string
	}
	panels := []struct {
		title string
		bars  []bar
	}{
		{title: "Throughput, messages/s (client start to last message at the sink), median"},
		{title: "Latency, end of DATA to 250, ms (p50 / p99), median"},
	}
	for _, r := range summarize(rows) {
		panels[0].bars = append(panels[0].bars, bar{r.Case, r.Rate, "/s", "#3b6ea5"})
		panels[1].bars = append(panels[1].bars,
			bar{r.Case + " p50", r.P50, " ms", "#6a9f58"},
			bar{r.Case + " p99", r.P99, " ms", "#c0504d"})
	}
	total := 20
	for _, p := range panels {
		total += 40 + len(p.bars)*(barH+gap)
	}
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, total)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	y := 20
	for _, p := range panels {
		fmt.Fprintf(w, `<text x="10" y="%d" font-size="14" font-weight="bold">%s</text>`+"\n", y+14, html.EscapeString(p.title))
		y += 30
		max := 0.0
		for _, b := range p.bars {
			if b.value > max {
				max = b.value
			}
		}
		for _, b := range p.bars {
			l := 0.0
			if max > 0 {
				l = b.value / max * float64(width-left-110)
			}
			fmt.Fprintf(w, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-8, y+15, html.EscapeString(b.label))
			fmt.Fprintf(w, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", left, y, l, barH, b.color)
			fmt.Fprintf(w, `<text x="%.1f" y="%d">%s%s</text>`+"\n", float64(left)+l+6, y+15, strconv.FormatFloat(b.value, 'f', 1, 64), b.unit)
			y += barH + gap
		}
		y += 10
	}
	fmt.Fprintln(w, "</svg>")
}
