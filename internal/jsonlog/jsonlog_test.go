package jsonlog

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// slogLine is what slog.JSONHandler with DurationSeconds writes for r.
func slogLine(t testing.TB, r slog.Record) string {
	t.Helper()
	var b bytes.Buffer
	h := slog.NewJSONHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: DurationSeconds})
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// line is what Handler writes for r, and whether its fast path wrote it:
// the slog handler it falls back on writes to a buffer of its own here, so
// a record handed to it shows there.
func line(t testing.TB, r slog.Record) (string, bool) {
	t.Helper()
	var fast, slow bytes.Buffer
	h := New(&fast, slog.LevelDebug)
	h.slow = slog.NewJSONHandler(lockedWriter{h.mu, &slow}, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: DurationSeconds})
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return fast.String() + slow.String(), slow.Len() == 0
}

func record(msg string, attrs ...slog.Attr) slog.Record {
	r := slog.NewRecord(time.Date(2026, 12, 2, 3, 4, 5, 123456789, time.UTC), slog.LevelInfo, msg, 0)
	r.AddAttrs(attrs...)
	return r
}

// The access log's line takes the fast path, and reads as slog writes it.
func TestAccessLineFastAndSameAsSlog(t *testing.T) {
	r := record("request",
		slog.String("request_id", "3dc31630e7fbaea2d95f4ea33ac71789"),
		slog.String("method", "GET"),
		slog.String("path", "/open_api/v1.3/campaign/get/"),
		slog.Int("status", 200),
		slog.Duration("duration", 1234567*time.Nanosecond),
		slog.Int64("bytes", 175),
		slog.String("client", "etl"),
		slog.String("credential", "main"),
		slog.String("selected_by", "advertiser"),
		slog.Any("advertiser_ids", []string{"7012345678901234567", "7012345678901234568"}),
		slog.Int("advertiser_ids_more", 2),
		slog.Int("tiktok_code", 0),
		slog.String("tt_logid", "20261124000000ABCDEF"),
		slog.String("upstream_request_id", "20261124000000"),
		slog.Int("proxy_error", 90007),
		slog.Bool("retried", true),
		slog.Int("retries", 1),
	)
	got, fast := line(t, r)
	if !fast {
		t.Error("the access log line took slog's path, want the fast one")
	}
	if want := slogLine(t, r); got != want {
		t.Errorf("line\n %s\nwant slog's\n %s", got, want)
	}
}

// Every other record is written as slog writes it, by the fast path or by
// slog: strings needing escapes, every kind, groups, values to resolve,
// floats of every magnitude, levels with offsets, a record without time.
func TestSameAsSlog(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	strs := []string{"", "plain", "with \"quote\"", `back\slash`, "tab\there", "nl\n", "ctl\x01\x7f", "ünï", "bad\xff",
		"\u2028", "<html>&", " spaced ", "ok-_.~:/?=", "\b\f"}
	floats := []float64{0, -0, 1, -1, 0.5, 1e-6, 9.99e-7, 1e-7, 1.5e-10, 1e20, 1e21, 123456789.125, -3.3e-9, math.MaxFloat64,
		math.SmallestNonzeroFloat64, math.Inf(1), math.NaN()}
	plain := []string{"", "a", "request_id", "path", "/open_api/v1.3/x/", "7012345678901234567", "ok-_.~:/?=&<>"}
	// str is mostly plain, as the proxy's strings are: the fast path's
	// own output gets compared too, not only slog's against itself.
	str := func() string {
		if rng.IntN(4) == 0 {
			return strs[rng.IntN(len(strs))]
		}
		return plain[rng.IntN(len(plain))]
	}
	pick := func() slog.Attr {
		key := str()
		switch rng.IntN(16) {
		case 0, 12, 13:
			return slog.String(key, str())
		case 1:
			return slog.Int64(key, rng.Int64()-rng.Int64())
		case 2:
			return slog.Uint64(key, rng.Uint64())
		case 3:
			return slog.Bool(key, rng.IntN(2) == 0)
		case 4:
			return slog.Float64(key, floats[rng.IntN(len(floats))])
		case 5:
			return slog.Duration(key, time.Duration(rng.Int64N(int64(100*time.Hour)))*[]time.Duration{1, -1}[rng.IntN(2)])
		case 6:
			return slog.Time(key, time.Unix(rng.Int64N(1<<40), rng.Int64N(1e9)).In(time.FixedZone("x", 3600*rng.IntN(5))))
		case 7:
			var l []string
			for range rng.IntN(4) {
				l = append(l, str())
			}
			return slog.Any(key, l)
		case 8:
			return slog.Group(key, slog.Int("a", 1), slog.String("b", "c"))
		case 9:
			return slog.Any(key, errors.New(str()))
		case 10:
			return slog.Any(key, map[string]int{"a": 1})
		case 11:
			return slog.Any(key, slog.StringValue("x")) // a Value, stored as is
		default:
			return slog.Attr{}
		}
	}
	fast := 0
	for i := range 20000 {
		r := slog.NewRecord(time.Unix(rng.Int64N(1<<38), rng.Int64N(1e9)), slog.Level(rng.IntN(16)-4), str(), 0)
		if i%50 == 0 {
			r.Time = time.Time{}
		}
		for range rng.IntN(6) {
			r.AddAttrs(pick())
		}
		got, f := line(t, r)
		if f {
			fast++
		}
		if want := slogLine(t, r); got != want {
			t.Fatalf("record %d (fast path %v):\n got %s\nwant %s", i, f, got, want)
		}
	}
	t.Logf("%d of 20000 records took the fast path", fast)
	if fast < 2000 {
		t.Errorf("only %d of 20000 random records took the fast path: the comparison barely tested it", fast)
	}
}

// Floats are written as encoding/json writes them, which slog calls.
func FuzzFloat(f *testing.F) {
	for _, v := range []float64{0, 1e-7, 1e21, 0.1, 123.456e-9} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v float64) {
		r := record("m", slog.Float64("f", v), slog.Duration("d", time.Duration(int64(v))))
		got, _ := line(t, r)
		if want := slogLine(t, r); got != want {
			t.Fatalf("got %s want %s", got, want)
		}
	})
}

// Strings either take the fast path unchanged or go to slog.
func FuzzString(f *testing.F) {
	for _, s := range []string{"a", "a\"b", "\x00", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := record(s, slog.String(s, s), slog.Any("l", []string{s, s}))
		got, _ := line(t, r)
		if want := slogLine(t, r); got != want {
			t.Fatalf("got %s want %s", got, want)
		}
	})
}

// Lines from both paths at once never interleave.
func TestConcurrentLinesWhole(t *testing.T) {
	var b bytes.Buffer
	h := New(&b, slog.LevelInfo)
	l := slog.New(h)
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 500 {
				if g%2 == 0 {
					l.Info("fast", "i", i)
				} else {
					l.Info("slow", "m", map[string]int{"i": i})
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	n := 0
	for ln := range bytes.Lines(b.Bytes()) {
		n++
		if !bytes.HasPrefix(ln, []byte(`{"time":`)) || !bytes.HasSuffix(ln, []byte("}\n")) {
			t.Fatalf("line %d is not whole: %q", n, ln)
		}
	}
	if n != 2000 {
		t.Fatalf("%d lines, want 2000", n)
	}
}

// Below the level nothing is written.
func TestLevel(t *testing.T) {
	var b bytes.Buffer
	l := slog.New(New(&b, slog.LevelWarn))
	l.Info("no")
	l.Warn("yes")
	if got := b.String(); !bytes.Contains([]byte(got), []byte(`"msg":"yes"`)) || bytes.Contains([]byte(got), []byte(`"no"`)) {
		t.Fatalf("wrote %q, want only the WARN line", got)
	}
}

// LogAttrs writes the line slog.Logger.LogAttrs writes through the handler,
// time aside (each takes its own).
func TestLogAttrsSameAsLogger(t *testing.T) {
	cases := [][]slog.Attr{
		{slog.String("path", "/open_api/v1.3/campaign/get/"), slog.Int("status", 200), slog.Duration("duration", 1500*time.Microsecond),
			slog.Any("advertiser_ids", []string{"7012345678901234567"})},
		{slog.String("odd", "needs \"escaping\"\n"), slog.Any("m", map[string]int{"a": 1})}, // slog's path
		{},
	}
	stripTime := func(s string) string {
		i := strings.Index(s, `"level":`)
		if i < 0 {
			t.Fatalf("no level in %q", s)
		}
		return s[i:]
	}
	for _, attrs := range cases {
		var direct, logger bytes.Buffer
		New(&direct, slog.LevelInfo).LogAttrs(context.Background(), slog.LevelWarn, "request", attrs...)
		slog.New(New(&logger, slog.LevelInfo)).LogAttrs(context.Background(), slog.LevelWarn, "request", attrs...)
		if got, want := stripTime(direct.String()), stripTime(logger.String()); got != want {
			t.Errorf("LogAttrs wrote\n %s\nslog.Logger\n %s", got, want)
		}
	}
	var b bytes.Buffer
	New(&b, slog.LevelWarn).LogAttrs(context.Background(), slog.LevelInfo, "below")
	if b.Len() != 0 {
		t.Errorf("LogAttrs below the level wrote %q", b.String())
	}
}
