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
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(sentinelPercent)
			debug.SetMemoryLimit(sentinelLimit)
			tuneGC(func(k string) string { return tc.env[k] })
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
