// Package jsonlog is serve's JSON log handler: slog.JSONHandler's output,
// with every duration written as "<key>_seconds", a float, which log
// pipelines compare and sum. The access log writes a line per request, and
// slog's general machinery (attribute replacement called for each field,
// json.Marshal for each float and list) cost more than the rest of the
// line's work together; so the records the proxy logs most — flat
// attributes of scalar kinds, plain strings and lists of them — are written
// here directly, and any other record is handed to slog.JSONHandler. The
// output is the same byte for byte either way (the tests compare them).
package jsonlog

import (
	"context"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"
)

// Handler is a slog.Handler writing JSON lines to a writer. Safe for
// concurrent use.
type Handler struct {
	w     io.Writer
	mu    *sync.Mutex // one Write at a time, whichever path made the line
	level slog.Leveler
	slow  slog.Handler // slog.JSONHandler, for every record the fast path does not write
}

// New returns a Handler writing lines at level and above (INFO when nil)
// to w.
func New(w io.Writer, level slog.Leveler) *Handler {
	if level == nil {
		level = slog.LevelInfo
	}
	mu := &sync.Mutex{}
	return &Handler{w: w, mu: mu, level: level,
		slow: slog.NewJSONHandler(lockedWriter{mu, w}, &slog.HandlerOptions{Level: level, ReplaceAttr: DurationSeconds})}
}

// DurationSeconds is the slog.HandlerOptions.ReplaceAttr of the handler:
// a duration becomes seconds, a float, under the key <key>_seconds.
func DurationSeconds(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() != slog.KindDuration {
		return a
	}
	return slog.Float64(secondsKey(a.Key), a.Value.Duration().Seconds())
}

// secondsKey is key + "_seconds", the access log's without building it
// per line.
func secondsKey(key string) string {
	if key == "duration" {
		return "duration_seconds"
	}
	return key + "_seconds"
}

// Enabled reports whether the handler writes records at l.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

// WithAttrs and WithGroup return slog.JSONHandler's: the derived loggers
// (start-up, the token store) log rarely.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler { return h.slow.WithAttrs(as) }

// WithGroup is slog.JSONHandler's; see WithAttrs.
func (h *Handler) WithGroup(name string) slog.Handler { return h.slow.WithGroup(name) }

var lines = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Handle writes r as one line.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	written, err := h.write(func(buf []byte) ([]byte, bool) { return appendRecord(buf, r) })
	if !written {
		return h.slow.Handle(ctx, r)
	}
	return err
}

// LogAttrs writes a record of attrs at level with message msg, as
// slog.Logger.LogAttrs would through h, without building a slog.Record when
// the fast path writes it (the access log's line).
func (h *Handler) LogAttrs(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	if !h.Enabled(ctx, level) {
		return
	}
	now := time.Now()
	written, _ := h.write(func(buf []byte) (_ []byte, ok bool) {
		buf, ok = appendHead(buf, now, level, msg)
		for i := 0; ok && i < len(attrs); i++ {
			buf, ok = appendAttr(buf, attrs[i])
		}
		return append(buf, '}', '\n'), ok
	})
	if !written {
		r := slog.NewRecord(now, level, msg, 0)
		r.AddAttrs(attrs...)
		_ = h.slow.Handle(ctx, r)
	}
}

// write builds a line with fill in a pooled buffer and writes it, unless
// fill reports the record is slog's to write (written false).
func (h *Handler) write(fill func([]byte) ([]byte, bool)) (written bool, err error) {
	bp := lines.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 64<<10 {
			lines.Put(bp)
		}
	}()
	buf, ok := fill((*bp)[:0])
	*bp = buf
	if !ok {
		return false, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err = h.w.Write(buf)
	return true, err
}

// appendRecord appends r as slog.JSONHandler with DurationSeconds writes
// it; ok is false for a record it leaves to slog: an attribute that is a
// group or a value to resolve, of a kind other than string, integer,
// float, bool, duration, time or list of strings, a string that would need
// escaping, a float JSON cannot hold or a time beyond year 9999.
func appendRecord(buf []byte, r slog.Record) (_ []byte, ok bool) {
	if buf, ok = appendHead(buf, r.Time, r.Level, r.Message); !ok {
		return buf, false
	}
	r.Attrs(func(a slog.Attr) bool {
		buf, ok = appendAttr(buf, a)
		return ok
	})
	return append(buf, '}', '\n'), ok
}

// appendHead appends the opening of a line: time (unless zero), level and
// message.
func appendHead(buf []byte, t time.Time, level slog.Level, msg string) (_ []byte, ok bool) {
	buf = append(buf, '{')
	if !t.IsZero() {
		if buf, ok = appendTime(append(buf, `"time":`...), t.Round(0)); !ok {
			return buf, false
		}
		buf = append(buf, ',')
	}
	if buf, ok = appendString(append(buf, `"level":`...), level.String()); !ok {
		return buf, false
	}
	return appendString(append(buf, `,"msg":`...), msg)
}

func appendAttr(buf []byte, a slog.Attr) ([]byte, bool) {
	v := a.Value
	if a.Key == "" && v.Kind() == slog.KindAny && v.Any() == nil {
		return buf, true // slog elides an empty attribute
	}
	key := a.Key
	if v.Kind() == slog.KindDuration {
		key = secondsKey(key)
	}
	buf, ok := appendString(append(buf, ','), key)
	if !ok {
		return buf, false
	}
	buf = append(buf, ':')
	switch v.Kind() {
	case slog.KindString:
		return appendString(buf, v.String())
	case slog.KindInt64:
		return strconv.AppendInt(buf, v.Int64(), 10), true
	case slog.KindUint64:
		return strconv.AppendUint(buf, v.Uint64(), 10), true
	case slog.KindBool:
		return strconv.AppendBool(buf, v.Bool()), true
	case slog.KindFloat64:
		return appendFloat(buf, v.Float64())
	case slog.KindDuration:
		return appendFloat(buf, v.Duration().Seconds())
	case slog.KindTime:
		return appendTime(buf, v.Time())
	case slog.KindAny:
		list, isList := v.Any().([]string)
		if !isList {
			return buf, false
		}
		if list == nil {
			return append(buf, "null"...), true
		}
		buf = append(buf, '[')
		for i, s := range list {
			if i > 0 {
				buf = append(buf, ',')
			}
			if buf, ok = appendString(buf, s); !ok {
				return buf, false
			}
		}
		return append(buf, ']'), true
	}
	return buf, false
}

// appendString appends s quoted when it needs no escaping (printable
// ASCII but '"' and '\'), which is written the same by slog and
// encoding/json.
func appendString(buf []byte, s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return buf, false
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"'), true
}

// appendTime is slog's: RFC 3339 with nanoseconds, years 0 to 9999.
func appendTime(buf []byte, t time.Time) ([]byte, bool) {
	if y := t.Year(); y < 0 || y >= 10000 {
		return buf, false
	}
	buf = append(buf, '"')
	buf = t.AppendFormat(buf, time.RFC3339Nano)
	return append(buf, '"'), true
}

// appendFloat writes f as encoding/json does, which slog calls for it:
// the shortest decimal that reads back as f, in exponent form below 1e-6
// and from 1e21 on, with the exponent's leading zero dropped ("1e-7").
func appendFloat(buf []byte, f float64) ([]byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return buf, false
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	buf = strconv.AppendFloat(buf, f, format, -1, 64)
	if format == 'e' {
		if n := len(buf); n >= 4 && buf[n-4] == 'e' && buf[n-3] == '-' && buf[n-2] == '0' {
			buf[n-2] = buf[n-1]
			buf = buf[:n-1]
		}
	}
	return buf, true
}

// lockedWriter serialises slog's writes with the fast path's.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
