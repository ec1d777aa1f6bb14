package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
)

// Durations read as people write them in text, and as seconds, a number,
// in JSON.
func TestLoggerDurations(t *testing.T) {
	log := func(format string) string {
		var buf bytes.Buffer
		newLogger(config.Log{Level: "info", Format: format}, &buf).LogAttrs(t.Context(), slog.LevelInfo, "request",
			slog.Duration("duration", 12345678*time.Nanosecond), slog.Duration("wait", 29612*time.Nanosecond),
			slog.Duration("long", 1234567890*time.Nanosecond), slog.Int("status", 200))
		return buf.String()
	}
	text := log("text")
	for _, want := range []string{"duration=12.3ms", "wait=29.6µs", "long=1.23s", "status=200"} {
		if !strings.Contains(text, want) {
			t.Errorf("text log lacks %s: %s", want, text)
		}
	}

	var line map[string]any
	if err := json.Unmarshal([]byte(log("json")), &line); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]float64{"duration_seconds": 0.012345678, "wait_seconds": 0.000029612, "long_seconds": 1.23456789, "status": 200} {
		if got, ok := line[key].(float64); !ok || math.Abs(got-want) > 1e-12 {
			t.Errorf("JSON %s = %#v, want %v", key, line[key], want)
		}
	}
	for _, key := range []string{"duration", "wait", "long"} {
		if _, ok := line[key]; ok {
			t.Errorf("JSON log keeps %s as well: %v", key, line)
		}
	}
}
