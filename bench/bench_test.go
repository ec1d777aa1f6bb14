package bench

import (
	"context"
	"fmt"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	// Run starts this test binary again as the upstream and the baseline.
	Child()
	os.Exit(m.Run())
}

// buildBinary builds tiktok-auth-proxy into a temp dir.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tiktok-auth-proxy")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/tiktok-auth-proxy").CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// TestQuickRun runs the whole harness with tiny durations and checks the
// report is complete and consistent; it asserts no timing.
func TestQuickRun(t *testing.T) {
	o := Defaults(true)
	o.Binary = buildBinary(t)
	o.Concurrency = []int{1, 4}
	o.Rounds, o.Round, o.Warmup = 2, 50*time.Millisecond, 20*time.Millisecond
	o.StreamBytes, o.Stampede, o.AllocRequests, o.Settle = 1<<20, 50, 50, time.Millisecond
	o.FDBurst, o.FDLimit = 100, 64
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}

	if !strings.HasPrefix(rep.Proxy, "tiktok-auth-proxy ") {
		t.Errorf("proxy version %q", rep.Proxy)
	}
	if got, want := len(rep.Cells), len(shapes)*len(o.Concurrency); got != want {
		t.Fatalf("%d cells, want %d", got, want)
	}
	for i, c := range rep.Cells {
		if want := shapes[i/len(o.Concurrency)].Name; c.Shape != want || c.Concurrency != o.Concurrency[i%len(o.Concurrency)] {
			t.Errorf("cell %d is %s c=%d, want %s c=%d", i, c.Shape, c.Concurrency, want, o.Concurrency[i%len(o.Concurrency)])
		}
		if c.FirstError != "" {
			t.Errorf("%s c=%d: %s", c.Shape, c.Concurrency, c.FirstError)
		}
		for name, s := range map[string]Side{"proxy": c.Proxy, "baseline": c.Baseline} {
			if s.Requests == 0 || s.Errors != 0 || s.RPS <= 0 || s.CPUPer1k < 0 {
				t.Errorf("%s c=%d %s: %+v", c.Shape, c.Concurrency, name, s)
			}
			if !(0 < s.P50 && s.P50 <= s.P99 && s.P99 <= s.P999) {
				t.Errorf("%s c=%d %s: percentiles out of order: %v %v %v", c.Shape, c.Concurrency, name, s.P50, s.P99, s.P999)
			}
		}
		if r := c.Ratio(); r <= 0 || math.IsInf(r, 0) || math.IsNaN(r) {
			t.Errorf("%s c=%d: ratio %v", c.Shape, c.Concurrency, r)
		}
	}
	if got, want := len(rep.Allocs), 2*len(shapes); got != want {
		t.Errorf("%d allocation rows, want %d", got, want)
	}
	for _, a := range rep.Allocs {
		if a.AllocsPerRequest <= 0 || a.BytesPerRequest <= 0 {
			t.Errorf("allocations %+v", a)
		}
	}
	if rep.Idle.Proxy1 <= 0 || rep.Idle.Proxy50 <= 0 || rep.Idle.Baseline <= 0 {
		t.Errorf("idle RSS %+v", rep.Idle)
	}
	if s := rep.Stream; s.Error != "" || s.Bytes != o.StreamBytes || s.ProxyMBps <= 0 || s.BaselineMBps <= 0 ||
		s.ProxyRSSStart <= 0 || s.ProxyRSSMax < s.ProxyRSSStart {
		t.Errorf("stream %+v", s)
	}
	// The stampede's counts are facts about the proxy's behaviour (one
	// refresh shared by every waiting request), not timings.
	if st := rep.Stampede; st.Requests != o.Stampede || st.Refreshes != 1 || st.Failures != 0 || st.Stale != 0 || st.PeakRSS <= 0 ||
		st.CPU < 0 || st.ListenOverflows < 0 || st.BaselineFailures != 0 || st.BaselineP50 <= 0 {
		t.Errorf("stampede %+v", st)
	}

	if fb := rep.FDBurst; fb.Limit != o.FDLimit || fb.Requests != o.FDBurst || sum(fb.Answers) != o.FDBurst {
		t.Errorf("fd burst %+v", fb)
	}

	md := rep.Markdown()
	for _, want := range []string{"| GET advertiser_id | 1 |", "| POST 4 KiB JSON | 4 |", "| GET header | 4 |",
		"#### Allocations", "#### Memory and streaming", "#### Stampede", "#### Burst beyond", "#### Targets"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if n := strings.Count(md, "| yes |") + strings.Count(md, "| no |"); n != len(rep.Targets()) {
		t.Errorf("%d targets with a verdict in the markdown, want %d", n, len(rep.Targets()))
	}

	dir := t.TempDir()
	if err := rep.WritePlots(dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{LatencyPlot, ThroughputPlot} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if b := img.Bounds(); b.Dx() < 300 || b.Dy() < 200 {
			t.Errorf("%s is %v", name, b)
		}
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func TestUpdateMarkdown(t *testing.T) {
	rep := &Report{Date: time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC), GoVersion: "go1.26", CPUs: 2,
		Cells: []Cell{{Shape: shapes[0].Name, Concurrency: 1}}}
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	before, after := "# Benchmarks\n\nmethod\n\n", "\n\nafter the table\n"
	doc := before + beginMarker + "\nold table\n" + endMarker + after
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 { // a second update replaces the first
		if err := rep.UpdateMarkdown(path); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(path)
	want := before + beginMarker + "\n" + rep.Markdown() + endMarker + after
	if string(got) != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}

	if err := os.WriteFile(path, []byte("no markers"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rep.UpdateMarkdown(path); err == nil || !strings.Contains(err.Error(), beginMarker) {
		t.Errorf("without markers: %v", err)
	}
}

func TestPercentile(t *testing.T) {
	var lat []time.Duration
	for i := 1000; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Microsecond)
	}
	p50, p99, p999 := latencies(lat)
	if p50 != 500*time.Microsecond || p99 != 990*time.Microsecond || p999 != 999*time.Microsecond {
		t.Errorf("p50 %v p99 %v p99.9 %v", p50, p99, p999)
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("empty: %v", got)
	}
	if got := fmt.Sprint(percentile([]time.Duration{7}, 0.999)); got != "7ns" {
		t.Errorf("one sample: %v", got)
	}
}
