package server

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"
)

// plainLines writes byte for byte what slog's handlers write, for records
// of every kind of part: plain ones it writes itself, the others it hands
// over.
func TestPlainLinesAsSlog(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	pick := []string{"request", "GET", "/v1/me", "6f1c7a2e-1111-4222-8333-444444444444", "192.0.2.1", "::1", "", "a b", "a=b",
		`a"b`, `a\b`, "a\nb", "\x7f", "é", "\xff", "<&>", "\u2028", "x:y", "-", "INFO"}
	levels := []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError, slog.LevelInfo + 2}
	for _, json := range []bool{false, true} {
		var got, want bytes.Buffer
		o := &slog.HandlerOptions{Level: slog.LevelDebug}
		ref, mine := slog.Handler(slog.NewTextHandler(&want, o)), slog.Handler(slog.NewTextHandler(&got, o))
		if json {
			ref, mine = slog.NewJSONHandler(&want, o), slog.NewJSONHandler(&got, o)
		}
		mine = plainLines{mine, &got, json}
		for i := range 20000 {
			at := time.Unix(r.Int64N(1<<34), r.Int64N(1e9))
			switch i % 7 {
			case 0:
				at = time.Time{}
			case 1:
				at = at.UTC()
			case 2:
				at = time.Date(10000+r.IntN(3), 1, 1, 0, 0, 0, 0, time.UTC)
			}
			rec := slog.NewRecord(at, levels[r.IntN(len(levels))], pick[r.IntN(len(pick))], 0)
			for range r.IntN(8) {
				key := pick[r.IntN(len(pick))]
				switch r.IntN(4) {
				case 0:
					rec.AddAttrs(slog.Int64(key, r.Int64N(1<<40)-1<<39))
				case 1:
					rec.AddAttrs(slog.Bool(key, true))
				default:
					rec.AddAttrs(slog.String(key, pick[r.IntN(len(pick))]))
				}
			}
			got.Reset()
			want.Reset()
			_ = ref.Handle(context.Background(), rec)
			_ = mine.Handle(context.Background(), rec)
			if got.String() != want.String() {
				t.Fatalf("json %v: got\n%q\nwant\n%q", json, got.String(), want.String())
			}
		}
	}
}

// The request line is one plainLines writes itself, in both formats.
func TestPlainLinesWriteTheRequestLine(t *testing.T) {
	rec := slog.NewRecord(time.Now(), slog.LevelInfo, "request", 0)
	rec.AddAttrs(slog.String("request_id", "6f1c7a2e-1111-4222-8333-444444444444"), slog.String("method", "GET"),
		slog.String("path", "/v1/sessions/6f1c7a2e-1111-4222-8333-444444444444"), slog.Int("status", 200),
		slog.Int64("duration_us", 42), slog.String("ip", "2001:db8::1"), slog.String("user_id", ""))
	for _, json := range []bool{false, true} {
		if _, ok := (plainLines{json: json}).appendLine(nil, rec); !ok {
			t.Errorf("json %v: the request line goes to slog", json)
		}
	}
}
