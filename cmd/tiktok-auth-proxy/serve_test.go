package main

import (
	"runtime/debug"
	"testing"
)

// TestTuneGC checks that serve's GOGC and memory limit defaults apply only
// where the environment sets nothing, and that an operator's GOGC or
// GOMEMLIMIT (even "off") is kept.
func TestTuneGC(t *testing.T) {
	// Sentinels, distinct from the defaults, show whether tuneGC set a value.
	const sentinelPercent, sentinelLimit = 123, int64(7 << 30)
	prevPercent, prevLimit := debug.SetGCPercent(sentinelPercent), debug.SetMemoryLimit(sentinelLimit)
	t.Cleanup(func() {
		debug.SetGCPercent(prevPercent)
		debug.SetMemoryLimit(prevLimit)
	})
	for _, tc := range []struct {
		name        string
		env         map[string]string
		wantPercent int
		wantLimit   int64
	}{
		{"nothing set", nil, defaultGCPercent, defaultMemoryLimit},
		{"GOGC set", map[string]string{"GOGC": "100"}, sentinelPercent, defaultMemoryLimit},
		{"GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "1GiB"}, defaultGCPercent, sentinelLimit},
		{"GOMEMLIMIT off", map[string]string{"GOMEMLIMIT": "off"}, defaultGCPercent, sentinelLimit},
		{"both set", map[string]string{"GOGC": "off", "GOMEMLIMIT": "512MiB"}, sentinelPercent, sentinelLimit},
	} {
		noContainer := func() (int64, bool) { return 0, false }
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(sentinelPercent)
			debug.SetMemoryLimit(sentinelLimit)
			tuneGC(func(k string) string { return tc.env[k] }, noContainer)
			// SetGCPercent returns the previous value; put the sentinel
			// back at once so the test binary keeps collecting normally.
			if got := debug.SetGCPercent(sentinelPercent); got != tc.wantPercent {
				t.Errorf("GC percent %d, want %d", got, tc.wantPercent)
			}
			if got := debug.SetMemoryLimit(-1); got != tc.wantLimit {
				t.Errorf("memory limit %d, want %d", got, tc.wantLimit)
			}
		})
	}
}

// In a container whose memory limit leaves less room than the default soft
// limit, the soft limit is 90 % of it; GOMEMLIMIT still wins.
func TestTuneGCInContainer(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	const mib = 1 << 20
	for _, tc := range []struct {
		container int64
		env       string
		want      int64
	}{
		{128 * mib, "", 128 * mib / 10 * 9},
		{200 * mib, "", 200 * mib / 10 * 9},
		{256 * mib, "", defaultMemoryLimit}, // 90 % of it, 230 MiB, is more than the default
		{128 * mib, "64MiB", 7 << 30},       // the operator's, kept (tuneGC sets none)
	} {
		debug.SetMemoryLimit(7 << 30)
		tuneGC(func(k string) string {
			if k == "GOMEMLIMIT" {
				return tc.env
			}
			return "100"
		}, func() (int64, bool) { return tc.container, true })
		if got := debug.SetMemoryLimit(-1); got != tc.want {
			t.Errorf("container %d MiB, GOMEMLIMIT %q: memory limit %d, want %d", tc.container/mib, tc.env, got, tc.want)
		}
	}
}
