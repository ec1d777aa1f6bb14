package bench

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// Target is one of issue 14's goals with what this run measured for it.
type Target struct {
	Goal     string
	Measured string
	Met      bool
}

// Targets checks the report against the goals; the bench reports
// them, no test asserts them.
func (r *Report) Targets() []Target {
	var ts []Target
	for _, c := range r.Cells {
		want := 0.95
		if strings.HasPrefix(c.Shape, "POST") {
			want = 0.90
		}
		if c.Concurrency >= 16 {
			ts = append(ts, Target{
				Goal:     fmt.Sprintf("%s, c=%d: throughput ≥ %.2f× baseline", c.Shape, c.Concurrency, want),
				Measured: fmt.Sprintf("%.2f×", c.Ratio()),
				Met:      c.Ratio() >= want,
			})
		}
		if c.Concurrency == 1 {
			ts = append(ts, Target{
				Goal:     fmt.Sprintf("%s, c=1: added p50 ≤ 50 µs", c.Shape),
				Measured: micros(c.AddedP50()),
				Met:      c.AddedP50() <= 50*time.Microsecond,
			})
		}
	}
	st := r.Stampede
	ts = append(ts,
		Target{fmt.Sprintf("stampede of %d: exactly one refresh", st.Requests), fmt.Sprint(st.Refreshes), st.Refreshes == 1},
		Target{"stampede: zero failed requests", fmt.Sprint(st.Failures), st.Failures == 0},
		Target{"stampede: p99 ≤ 2 s", seconds(st.P99), st.P99 <= 2*time.Second},
		Target{"stampede: peak RSS ≤ 256 MiB", mib(st.PeakRSS), st.PeakRSS <= 256<<20},
		Target{"idle RSS ≤ 20 MiB, 1 credential", mib(r.Idle.Proxy1), r.Idle.Proxy1 <= 20<<20},
		Target{"idle RSS ≤ 20 MiB, 50 credentials", mib(r.Idle.Proxy50), r.Idle.Proxy50 <= 20<<20},
		Target{fmt.Sprintf("streaming %s: RSS flat (±8 MiB)", mib(r.Stream.Bytes)),
			"+" + mib(r.Stream.RSSGrowth()), r.Stream.Error == "" && r.Stream.RSSGrowth() <= 8<<20},
		Target{"streaming: throughput ≥ 0.95× baseline", fmt.Sprintf("%.2f×", r.Stream.Ratio()),
			r.Stream.Error == "" && r.Stream.Ratio() >= 0.95},
		Target{fmt.Sprintf("burst beyond `ulimit -n %d`: breaker stays closed", r.FDBurst.Limit),
			breakerName(r.FDBurst.BreakerState), r.FDBurst.BreakerState == 0},
	)
	return ts
}

// Markdown is the report as the tables BENCHMARKS.md shows.
func (r *Report) Markdown() string {
	var b bytes.Buffer
	mode := ""
	if r.Quick {
		mode = " (quick smoke run: numbers are indicative only)"
	}
	fmt.Fprintf(&b, "`%s`, run of %s, %s, %d CPUs, %d alternating rounds of %v per target and cell, %s in all%s.\n\n",
		r.Proxy, r.Date.Format("2006-01-02 15:04 UTC"), r.GoVersion, r.CPUs, r.Rounds, r.Round, r.Elapsed.Round(time.Second), mode)

	b.WriteString("#### Throughput, latency and CPU: proxy vs tuned baseline\n\n")
	b.WriteString("| shape | c | proxy req/s | baseline req/s | ratio | proxy p50 / p99 / p99.9 | baseline p50 / p99 / p99.9 | added p50 | CPU-s per 1k proxy / baseline | CPU ratio | errors |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, c := range r.Cells {
		fmt.Fprintf(&b, "| %s | %d | %.0f | %.0f | **%.2f×** | %s | %s | %s | %.3f / %.3f | %.2f× | %d |\n",
			c.Shape, c.Concurrency, c.Proxy.RPS, c.Baseline.RPS, c.Ratio(), pcts(c.Proxy), pcts(c.Baseline),
			micros(c.AddedP50()), c.Proxy.CPUPer1k, c.Baseline.CPUPer1k, c.CPURatio(), c.Proxy.Errors+c.Baseline.Errors)
	}
	for _, c := range r.Cells {
		if c.FirstError != "" {
			fmt.Fprintf(&b, "\nFirst error (%s, c=%d): `%s`\n", c.Shape, c.Concurrency, oneLine(c.FirstError))
		}
	}

	b.WriteString("\n#### Allocations per request, in process (handler only, canned upstream; the proxy package tapbench was built with)\n\n")
	b.WriteString("| shape | handler | allocs/req | bytes/req | ns/req |\n|---|---|--:|--:|--:|\n")
	for _, a := range r.Allocs {
		fmt.Fprintf(&b, "| %s | %s | %.1f | %.0f | %.0f |\n", a.Shape, a.Handler, a.AllocsPerRequest, a.BytesPerRequest, a.NsPerRequest)
	}

	s := r.Stream
	b.WriteString("\n#### Memory and streaming\n\n| measure | proxy | baseline |\n|---|--:|--:|\n")
	fmt.Fprintf(&b, "| idle RSS, 1 credential | %s | %s |\n", mib(r.Idle.Proxy1), mib(r.Idle.Baseline))
	fmt.Fprintf(&b, "| idle RSS, 50 credentials | %s | |\n", mib(r.Idle.Proxy50))
	fmt.Fprintf(&b, "| streaming %s: throughput | %.0f MiB/s (%.2f×) | %.0f MiB/s |\n", mib(s.Bytes), s.ProxyMBps, s.Ratio(), s.BaselineMBps)
	fmt.Fprintf(&b, "| streaming: RSS before → peak | %s → %s | %s → %s |\n", mib(s.ProxyRSSStart), mib(s.ProxyRSSMax),
		mib(s.BaselineRSSStart), mib(s.BaselineRSSMax))
	if s.Error != "" {
		fmt.Fprintf(&b, "\nStreaming error: `%s`\n", oneLine(s.Error))
	}

	st := r.Stampede
	b.WriteString("\n#### Stampede at token expiry\n\n")
	b.WriteString("| requests | written before the refresh answered | refresh calls | failed | sent with the expired token | p50 | p99 | max | peak RSS (VmHWM) | proxy CPU | SYNs dropped, accept queue full | baseline, same burst: failed, p50, p99 |\n")
	b.WriteString("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	fmt.Fprintf(&b, "| %d | %d | %d | %d | %d | %s | %s | %s | %s | %s | %d | %d, %s, %s |\n", st.Requests, st.ConnectedAtGate, st.Refreshes,
		st.Failures, st.Stale, seconds(st.P50), seconds(st.P99), seconds(st.Max), mib(st.PeakRSS), seconds(st.CPU), st.ListenOverflows,
		st.BaselineFailures, seconds(st.BaselineP50), seconds(st.BaselineP99))
	if st.FirstError != "" {
		fmt.Fprintf(&b, "\nFirst stampede error: `%s`\n", oneLine(st.FirstError))
	}

	fb := r.FDBurst
	fmt.Fprintf(&b, "\n#### Burst beyond the file-descriptor limit\n\n%d requests at once, each on its own connection, at a proxy whose `ulimit -n` is %d:\n\n",
		fb.Requests, fb.Limit)
	b.WriteString("| answers | p50 | p99 | circuit breaker after |\n|---|--:|--:|--:|\n")
	var answers []string
	for _, k := range slices.Sorted(maps.Keys(fb.Answers)) {
		answers = append(answers, fmt.Sprintf("%s: %d", k, fb.Answers[k]))
	}
	fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", strings.Join(answers, ", "), seconds(fb.P50), seconds(fb.P99), breakerName(fb.BreakerState))

	b.WriteString("\n#### Targets (issue 14)\n\n| target | measured | met |\n|---|--:|:-:|\n")
	for _, t := range r.Targets() {
		met := "no"
		if t.Met {
			met = "yes"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.Goal, t.Measured, met)
	}
	return b.String()
}

// The markers between which UpdateMarkdown writes the report.
const (
	beginMarker = "<!-- tapbench:begin -->"
	endMarker   = "<!-- tapbench:end -->"
)

// UpdateMarkdown replaces what lies between the tapbench markers of the
// file at path with the report.
func (r *Report) UpdateMarkdown(path string) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	i, j := bytes.Index(old, []byte(beginMarker)), bytes.Index(old, []byte(endMarker))
	if i < 0 || j < i {
		return fmt.Errorf("bench: %s has no %s … %s section", path, beginMarker, endMarker)
	}
	var b bytes.Buffer
	b.Write(old[:i+len(beginMarker)])
	b.WriteString("\n")
	b.WriteString(r.Markdown())
	b.Write(old[j:])
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// breakerName is a circuit_breaker_state value's name.
func breakerName(v float64) string {
	switch v {
	case 0:
		return "closed"
	case 1:
		return "half-open"
	case 2:
		return "open"
	}
	return fmt.Sprint(v)
}

func pcts(s Side) string {
	return fmt.Sprintf("%s / %s / %s", micros(s.P50), micros(s.P99), micros(s.P999))
}

// micros shows a latency in µs below 10 ms, else in ms.
func micros(d time.Duration) string {
	if d < 10*time.Millisecond && d > -10*time.Millisecond {
		return fmt.Sprintf("%d µs", d.Microseconds())
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// oneLine keeps an error message to one table-safe line.
func oneLine(s string) string {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "\n", " "), "`", "'")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
