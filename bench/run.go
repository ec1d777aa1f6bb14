// Package bench measures what tiktok-auth-proxy costs against the best a Go
// proxy can be at the same job, and whether it survives a burst.
//
// Run starts three processes besides itself: a fast fake TikTok (the
// upstream role), the real tiktok-auth-proxy binary wired to it with a
// seeded token store, and the tuned baseline (httputil.ReverseProxy with
// a BufferPool, no forced flushes, a warm transport, GOGC=400, setting one
// fixed header). The roles are this program started again (see Child), so
// the CPU time and RSS read from /proc belong to one process each. A
// closed-loop load generator drives the proxy and the baseline in short
// alternating rounds; the stampede, streaming, idle and in-process
// allocation measurements follow. `make bench` runs cmd/tapbench.
package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Options says what Run measures and for how long. Zero fields take the
// values of Defaults(false).
type Options struct {
	// Binary is the tiktok-auth-proxy executable (make build's bin/...).
	Binary string
	// Quick marks the report as a smoke run.
	Quick bool
	// Concurrency lists the closed-loop worker counts.
	Concurrency []int
	// Rounds per target and cell; Round is each round's length, Warmup
	// the unmeasured run of each target before a cell's rounds.
	Rounds        int
	Round, Warmup time.Duration
	// MaxPerRound bounds the requests of one round besides its length.
	MaxPerRound int
	// StreamBytes is how much one streamed download carries.
	StreamBytes int64
	// Stampede is how many requests arrive at once at token expiry;
	// TikTok answers the refresh StampedeHold after the first of them
	// reached the proxy, or once all have if that is sooner.
	Stampede     int
	StampedeHold time.Duration
	// FDBurst requests arrive at once at a proxy limited to FDLimit file
	// descriptors.
	FDBurst, FDLimit int
	// AllocRequests is how many sequential requests the in-process
	// allocation count averages over.
	AllocRequests int
	// Settle is how long a started process idles before its RSS is read.
	Settle time.Duration
	// Progress receives one line per step; nil discards.
	Progress io.Writer
}

// Defaults returns the full run (about four minutes on two cores) or, with
// quick, a smoke run of about half a minute.
func Defaults(quick bool) Options {
	if quick {
		return Options{
			Quick: true, Concurrency: []int{1, 16, 64}, Rounds: 2, Round: 300 * time.Millisecond,
			Warmup: 100 * time.Millisecond, MaxPerRound: 200_000, StreamBytes: 64 << 20,
			Stampede: 1000, StampedeHold: 300 * time.Millisecond, FDBurst: 600, FDLimit: 256, AllocRequests: 2000, Settle: 300 * time.Millisecond,
		}
	}
	return Options{
		Concurrency: []int{1, 16, 64}, Rounds: 4, Round: 1500 * time.Millisecond,
		Warmup: 500 * time.Millisecond, MaxPerRound: 2_000_000, StreamBytes: 1 << 30,
		Stampede: 10_000, StampedeHold: 300 * time.Millisecond, FDBurst: 3000, FDLimit: 1024, AllocRequests: 20_000, Settle: 2 * time.Second,
	}
}

func (o Options) withDefaults() Options {
	d := Defaults(o.Quick)
	if o.Concurrency == nil {
		o.Concurrency = d.Concurrency
	}
	o.Rounds = cmp.Or(o.Rounds, d.Rounds)
	o.Round = cmp.Or(o.Round, d.Round)
	o.Warmup = cmp.Or(o.Warmup, d.Warmup)
	o.MaxPerRound = cmp.Or(o.MaxPerRound, d.MaxPerRound)
	o.StreamBytes = cmp.Or(o.StreamBytes, d.StreamBytes)
	o.Stampede = cmp.Or(o.Stampede, d.Stampede)
	o.StampedeHold = cmp.Or(o.StampedeHold, d.StampedeHold)
	o.FDBurst = cmp.Or(o.FDBurst, d.FDBurst)
	o.FDLimit = cmp.Or(o.FDLimit, d.FDLimit)
	o.AllocRequests = cmp.Or(o.AllocRequests, d.AllocRequests)
	o.Settle = cmp.Or(o.Settle, d.Settle)
	o.Progress = cmp.Or(o.Progress, io.Discard)
	return o
}

// Side is what one target (the proxy or the baseline) did in a cell,
// summed over its rounds.
type Side struct {
	Requests int
	Errors   int
	// RPS is requests per second of round time.
	RPS            float64
	P50, P99, P999 time.Duration
	// CPUPer1k is the target process's CPU-seconds (user+system) per
	// 1,000 requests.
	CPUPer1k float64
}

// Cell is one shape at one concurrency.
type Cell struct {
	Shape       string
	Concurrency int
	Proxy       Side
	Baseline    Side
	// FirstError is the first failed request's error, if any.
	FirstError string `json:",omitempty"`
}

// Ratio is the proxy's throughput over the baseline's.
func (c Cell) Ratio() float64 { return ratio(c.Proxy.RPS, c.Baseline.RPS) }

// CPURatio is the proxy's CPU per request over the baseline's.
func (c Cell) CPURatio() float64 { return ratio(c.Proxy.CPUPer1k, c.Baseline.CPUPer1k) }

// AddedP50 is the median latency the proxy adds over the baseline.
func (c Cell) AddedP50() time.Duration { return c.Proxy.P50 - c.Baseline.P50 }

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Idle is the resident memory of freshly started, idle processes.
type Idle struct {
	Proxy1, Proxy50, Baseline int64 // bytes
}

// Stream is four downloads of Bytes through each target.
type Stream struct {
	Bytes                            int64
	ProxyMBps, BaselineMBps          float64 // MiB/s
	ProxyRSSStart, ProxyRSSMax       int64
	BaselineRSSStart, BaselineRSSMax int64
	Error                            string `json:",omitempty"`
}

// Ratio is the proxy's streaming throughput over the baseline's.
func (s Stream) Ratio() float64 { return ratio(s.ProxyMBps, s.BaselineMBps) }

// RSSGrowth is how far the proxy's RSS rose above its start while streaming.
func (s Stream) RSSGrowth() int64 { return s.ProxyRSSMax - s.ProxyRSSStart }

// Stampede is Stampede requests arriving at once while the only
// credential's token has expired and its refresh is held at TikTok.
type Stampede struct {
	Requests  int
	Refreshes int64 // calls at the fake token endpoint
	Failures  int   // answers other than HTTP 200 with code 0
	// Stale counts requests forwarded with the expired token.
	Stale         int64
	P50, P99, Max time.Duration
	PeakRSS       int64 // the proxy's VmHWM
	// CPU is the proxy's CPU time (user+system) from the release of the
	// burst to its last answer.
	CPU time.Duration
	// ListenOverflows is how many connections the kernel dropped meanwhile
	// because an accept queue was full (the whole machine's count; each
	// such client sends its SYN again a second later).
	ListenOverflows int64
	// The same burst through the baseline (no token to wait for).
	BaselineFailures         int
	BaselineP50, BaselineP99 time.Duration
	FirstError               string `json:",omitempty"`
	ConnectedAtGate          int    // requests written before the refresh answered
}

// FDBurst is a burst of more requests than the proxy has file
// descriptors for.
type FDBurst struct {
	Limit, Requests int
	// Answers counts the answers by kind: "ok", "HTTP 503 90013", ...
	Answers  map[string]int
	P50, P99 time.Duration
	// BreakerState is circuit_breaker_state of the credential after the
	// burst: 0 closed, 1 half-open, 2 open.
	BreakerState float64
}

// Report is everything one Run measured.
type Report struct {
	// Proxy is what the measured binary's version command printed.
	Proxy     string
	Date      time.Time
	GoVersion string
	CPUs      int
	Quick     bool
	Rounds    int
	Round     time.Duration
	Cells     []Cell
	Allocs    []Allocs
	Idle      Idle
	Stream    Stream
	Stampede  Stampede
	FDBurst   FDBurst
	Elapsed   time.Duration
}

// Run measures everything Options asks for. It stops every process it
// started before returning.
func Run(ctx context.Context, o Options) (*Report, error) {
	o = o.withDefaults()
	if o.Binary == "" {
		return nil, errors.New("bench: no tiktok-auth-proxy binary given")
	}
	if _, err := os.Stat(o.Binary); err != nil {
		return nil, fmt.Errorf("bench: %w (run make build)", err)
	}
	version, err := exec.CommandContext(ctx, o.Binary, "version").Output()
	if err != nil {
		return nil, fmt.Errorf("bench: %s version: %w", o.Binary, err)
	}
	start := time.Now()
	rep := &Report{Proxy: strings.TrimSpace(string(version)), Date: start.UTC(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Quick: o.Quick,
		Rounds: o.Rounds, Round: o.Round}
	step := func(format string, a ...any) {
		fmt.Fprintf(o.Progress, "[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
	}

	step("in-process allocations, %d requests per shape", o.AllocRequests)
	if rep.Allocs, err = measureAllocs(o.AllocRequests); err != nil {
		return nil, err
	}

	up, upAddr, err := startRole(ctx, "upstream")
	if err != nil {
		return nil, err
	}
	defer up.stop()
	upURL := "http://" + upAddr
	base, baseAddr, err := startRole(ctx, "baseline", upstreamEnv+"="+upURL, "GOGC=400")
	if err != nil {
		return nil, err
	}
	defer base.stop()
	baseURL := "http://" + baseAddr

	dir, err := os.MkdirTemp("", "tapbench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)

	step("idle RSS")
	px, err := startProxy(ctx, o.Binary, mkdir(dir, "load"), upURL, proxySetup{credentials: 1})
	if err != nil {
		return nil, err
	}
	defer px.stop()
	if rep.Idle, err = idle(ctx, o, dir, upURL, px.pid(), base.pid()); err != nil {
		return nil, err
	}

	for _, sh := range shapes {
		for _, c := range o.Concurrency {
			step("%s, c=%d: %d rounds of %v each", sh.Name, c, o.Rounds, o.Round)
			cell, err := measureCell(ctx, o, sh, c, target{px.url, px.pid()}, target{baseURL, base.pid()})
			if err != nil {
				return nil, err
			}
			rep.Cells = append(rep.Cells, cell)
		}
	}

	step("streaming %d MiB through each", o.StreamBytes>>20)
	rep.Stream = stream(ctx, o.StreamBytes, target{px.url, px.pid()}, target{baseURL, base.pid()})
	px.stop()

	step("stampede of %d at token expiry", o.Stampede)
	if rep.Stampede, err = stampede(ctx, o, mkdir(dir, "stampede"), upURL, baseURL); err != nil {
		return nil, err
	}
	step("burst of %d at a proxy limited to %d file descriptors", o.FDBurst, o.FDLimit)
	if rep.FDBurst, err = fdBurst(ctx, o, mkdir(dir, "fd"), upURL); err != nil {
		return nil, err
	}
	rep.Elapsed = time.Since(start)
	step("done")
	return rep, nil
}

// mkdir makes dir/name, ignoring an error that the next file write shows.
func mkdir(dir, name string) string {
	p := dir + "/" + name
	_ = os.Mkdir(p, 0o700)
	return p
}

// target is a process the load generator drives.
type target struct {
	url string
	pid int
}

// idle reads the RSS of the started proxy and baseline after Settle, and
// of a proxy with 50 credentials.
func idle(ctx context.Context, o Options, dir, upURL string, proxyPID, basePID int) (Idle, error) {
	var id Idle
	px50, err := startProxy(ctx, o.Binary, mkdir(dir, "idle50"), upURL, proxySetup{credentials: 50})
	if err != nil {
		return id, err
	}
	defer px50.stop()
	time.Sleep(o.Settle)
	for _, m := range []struct {
		pid int
		to  *int64
	}{{proxyPID, &id.Proxy1}, {px50.pid(), &id.Proxy50}, {basePID, &id.Baseline}} {
		if *m.to, err = memory(m.pid, "VmRSS"); err != nil {
			return id, err
		}
	}
	return id, nil
}

// measureCell warms both targets, then runs Rounds rounds of each,
// alternating which goes first.
func measureCell(ctx context.Context, o Options, sh Shape, conc int, proxy, base target) (Cell, error) {
	cell := Cell{Shape: sh.Name, Concurrency: conc}
	clients := [2]*http.Client{newClient(conc), newClient(conc)}
	defer clients[0].CloseIdleConnections()
	defer clients[1].CloseIdleConnections()
	targets := [2]target{proxy, base}
	sides := [2]*Side{&cell.Proxy, &cell.Baseline}
	var lat [2][]time.Duration
	var cpu [2]time.Duration
	var elapsed [2]time.Duration
	for i, t := range targets {
		if out := drive(ctx, clients[i], t.url, sh, conc, o.Warmup, o.MaxPerRound); out.firstErr != nil && cell.FirstError == "" {
			cell.FirstError = out.firstErr.Error()
		}
	}
	for r := range o.Rounds {
		for k := range 2 {
			i := (r + k) % 2
			t := targets[i]
			c0, err := cpuTime(t.pid)
			if err != nil {
				return cell, err
			}
			out := drive(ctx, clients[i], t.url, sh, conc, o.Round, o.MaxPerRound)
			c1, err := cpuTime(t.pid)
			if err != nil {
				return cell, err
			}
			cpu[i] += c1 - c0
			elapsed[i] += out.elapsed
			lat[i] = append(lat[i], out.lat...)
			sides[i].Errors += out.errors
			if out.firstErr != nil && cell.FirstError == "" {
				cell.FirstError = out.firstErr.Error()
			}
			if err := ctx.Err(); err != nil {
				return cell, fmt.Errorf("bench: %w", err)
			}
		}
	}
	for i, s := range sides {
		s.Requests = len(lat[i])
		s.RPS = float64(s.Requests) / elapsed[i].Seconds()
		s.P50, s.P99, s.P999 = latencies(lat[i])
		if s.Requests > 0 {
			s.CPUPer1k = cpu[i].Seconds() * 1000 / float64(s.Requests)
		}
	}
	return cell, nil
}

// stream downloads n bytes through each target four times, alternating
// which goes first (ABBA twice: one download's ±15 % on this kind of
// machine would decide the ratio), sampling its RSS.
func stream(ctx context.Context, n int64, proxy, base target) Stream {
	s := Stream{Bytes: n}
	path := fmt.Sprintf("%s?advertiser_id=%s&bytes=%d", streamPath, advertiserID, n)
	sides := [2]struct {
		t                target
		mbps             *float64
		rssStart, rssMax *int64
		took             time.Duration
		got              int64
	}{
		{t: proxy, mbps: &s.ProxyMBps, rssStart: &s.ProxyRSSStart, rssMax: &s.ProxyRSSMax},
		{t: base, mbps: &s.BaselineMBps, rssStart: &s.BaselineRSSStart, rssMax: &s.BaselineRSSMax},
	}
	for i := range sides {
		*sides[i].rssStart, _ = memory(sides[i].t.pid, "VmRSS")
		*sides[i].rssMax = *sides[i].rssStart
	}
	for _, i := range []int{0, 1, 1, 0, 0, 1, 1, 0} {
		m := &sides[i]
		done := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
					if rss, err := memory(m.t.pid, "VmRSS"); err == nil {
						*m.rssMax = max(*m.rssMax, rss)
					}
				}
			}
		}()
		t0 := time.Now()
		got, err := download(ctx, m.t.url+path)
		m.took += time.Since(t0)
		m.got += got
		close(done)
		<-sampled
		if err == nil && got != n {
			err = fmt.Errorf("bench: streamed %d of %d bytes", got, n)
		}
		if err != nil && s.Error == "" {
			s.Error = err.Error()
		}
	}
	for _, m := range sides {
		*m.mbps = float64(m.got) / (1 << 20) / m.took.Seconds()
	}
	return s
}

// download GETs url and counts the body's bytes.
func download(ctx context.Context, url string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	client := newClient(1)
	defer client.CloseIdleConnections()
	client.Timeout = 5 * time.Minute
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("bench: stream: HTTP %d", resp.StatusCode)
	}
	return io.Copy(io.Discard, resp.Body)
}

// stampede starts a proxy whose only token has expired, closes the gate
// so its refresh is held at the fake TikTok, sends Stampede requests at
// once, and opens the gate StampedeHold after the first is written (a
// token endpoint's answer time), or when all are if sooner: requests that
// arrive before then wait for that one refresh, later ones find the fresh
// token. The same burst then goes through the baseline for reference.
func stampede(ctx context.Context, o Options, dir, upURL, baseURL string) (Stampede, error) {
	st := Stampede{Requests: o.Stampede}
	if err := controlUpstream(ctx, upURL+gatePath+"?open=0", nil); err != nil {
		return st, err
	}
	before, err := upstreamCounts(ctx, upURL)
	if err != nil {
		return st, err
	}
	px, err := startProxy(ctx, o.Binary, dir, upURL, proxySetup{credentials: 1, expired: true})
	if err != nil {
		return st, err
	}
	defer px.stop()
	// The background refresh of the expired token is what the stampede
	// lands on; wait until TikTok holds it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		now, err := upstreamCounts(ctx, upURL)
		if err != nil {
			return st, err
		}
		if now.Refreshes > before.Refreshes {
			break
		}
		if time.Now().After(deadline) {
			return st, errors.New("bench: stampede: the proxy did not start a refresh within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The proxy's CPU time and the kernel's dropped SYNs, before and
	// after the burst.
	sample := func() (time.Duration, int64, error) {
		cpu, err := cpuTime(px.pid())
		if err != nil {
			return 0, 0, err
		}
		ovf, err := listenOverflows()
		return cpu, ovf, err
	}
	cpu0, ovf0, err := sample()
	if err != nil {
		return st, err
	}
	var gateErr error
	out := burst(ctx, px.url, shapes[0], o.Stampede, o.StampedeHold, func() {
		gateErr = controlUpstream(ctx, upURL+gatePath+"?open=1", nil)
	})
	if gateErr != nil {
		return st, gateErr
	}
	cpu1, ovf1, err := sample()
	if err != nil {
		return st, err
	}
	st.CPU, st.ListenOverflows = cpu1-cpu0, ovf1-ovf0
	after, err := upstreamCounts(ctx, upURL)
	if err != nil {
		return st, err
	}
	st.Refreshes = after.Refreshes - before.Refreshes
	st.Stale = after.Stale - before.Stale
	st.Failures = out.errors
	st.ConnectedAtGate = out.wroteAtGate
	if out.firstErr != nil {
		st.FirstError = out.firstErr.Error()
	}
	st.P50, st.P99, _ = latencies(out.lat)
	if len(out.lat) > 0 {
		st.Max = out.lat[len(out.lat)-1]
	}
	if st.PeakRSS, err = memory(px.pid(), "VmHWM"); err != nil {
		return st, err
	}
	// The same burst through the baseline, which has no token to wait
	// for: what opening this many connections at once costs by itself.
	base := burst(ctx, baseURL, shapes[0], o.Stampede, 0, func() {})
	st.BaselineFailures = base.errors
	st.BaselineP50, st.BaselineP99, _ = latencies(base.lat)
	return st, nil
}

// fdBurst sends FDBurst requests at once to a proxy whose RLIMIT_NOFILE
// is FDLimit, then reads its breaker state.
func fdBurst(ctx context.Context, o Options, dir, upURL string) (FDBurst, error) {
	fb := FDBurst{Limit: o.FDLimit, Requests: o.FDBurst}
	px, err := startProxy(ctx, o.Binary, dir, upURL, proxySetup{credentials: 1, fdLimit: o.FDLimit})
	if err != nil {
		return fb, err
	}
	defer px.stop()
	out := burst(ctx, px.url, shapes[0], o.FDBurst, 0, func() {})
	fb.Answers = out.answers
	fb.P50, fb.P99, _ = latencies(out.lat)
	fb.BreakerState, err = breakerState(ctx, px.adminURL)
	return fb, err
}

// breakerState scrapes the main credential's circuit_breaker_state.
func breakerState(ctx context.Context, adminURL string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, adminURL+"/metrics", nil)
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	resp, err := controlClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("bench: metrics: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("bench: metrics: %w", err)
	}
	const series = `tiktok_auth_proxy_circuit_breaker_state{credential="` + credentialName + `"} `
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("bench: metrics: no %s", strings.TrimSpace(series))
}

// controlUpstream GETs a control URL of the fake TikTok and decodes its
// JSON answer into v when v is not nil.
func controlUpstream(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	resp, err := controlClient.Do(req)
	if err != nil {
		return fmt.Errorf("bench: upstream control: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("bench: upstream control %s: HTTP %d", url, resp.StatusCode)
	}
	if v == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// controlClient talks to the fake TikTok's control endpoints.
var controlClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}

// upstreamCounts is the fake TikTok's counters.
func upstreamCounts(ctx context.Context, upURL string) (upstreamStats, error) {
	var s upstreamStats
	err := controlUpstream(ctx, upURL+statsPath, &s)
	return s, err
}
