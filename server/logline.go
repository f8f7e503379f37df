package server

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// plainLines writes the lines of records whose every part is plain (ASCII
// without spaces, quotes, backslashes or '=' in the message, keys and
// string values; integers) itself, byte for byte as the slog handler it
// wraps would (TestPlainLinesAsSlog), and hands every other record to that
// handler. One such line per request went through slog's general path,
// which asks of each key and value whether it needs quoting rune by rune:
// a request line cost more than a tenth of GET /v1/me.
type plainLines struct {
	slog.Handler // the text or JSON handler: everything else
	w            io.Writer
	json         bool
}

var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func (p plainLines) Handle(ctx context.Context, r slog.Record) error {
	bp := lineBufs.Get().(*[]byte)
	b, ok := p.appendLine((*bp)[:0], r)
	if !ok {
		lineBufs.Put(bp)
		return p.Handler.Handle(ctx, r)
	}
	_, err := p.w.Write(b)
	if cap(b) <= 16<<10 {
		*bp = b
		lineBufs.Put(bp)
	}
	return err
}

// WithAttrs and WithGroup are the wrapped handler's: their records carry
// preformatted attributes, which only it writes.
func (p plainLines) WithAttrs(as []slog.Attr) slog.Handler { return p.Handler.WithAttrs(as) }
func (p plainLines) WithGroup(name string) slog.Handler    { return p.Handler.WithGroup(name) }

// appendLine appends r's line; false when some part of it is not plain.
func (p plainLines) appendLine(b []byte, r slog.Record) ([]byte, bool) {
	level, msg := r.Level.String(), r.Message
	if !plain(level) || !plain(msg) {
		return b, false
	}
	if p.json {
		b = append(b, '{')
	}
	sep := false
	if !r.Time.IsZero() {
		t := r.Time.Round(0)
		if p.json {
			if y := t.Year(); y < 0 || y >= 10000 {
				return b, false
			}
			b = p.key(b, "time", false)
			b = append(b, '"')
			b = t.AppendFormat(b, time.RFC3339Nano)
			b = append(b, '"')
		} else {
			b = p.key(b, "time", false)
			b = appendRFC3339Millis(b, t)
		}
		sep = true
	}
	b = p.str(p.key(b, "level", sep), level)
	b = p.str(p.key(b, "msg", true), msg)
	ok := true
	r.Attrs(func(a slog.Attr) bool {
		if !plain(a.Key) {
			ok = false
			return false
		}
		switch a.Value.Kind() {
		case slog.KindString:
			s := a.Value.String()
			if s != "" && !plain(s) {
				ok = false
				return false
			}
			b = p.str(p.key(b, a.Key, true), s)
		case slog.KindInt64:
			b = strconv.AppendInt(p.key(b, a.Key, true), a.Value.Int64(), 10)
		default:
			ok = false
		}
		return ok
	})
	if !ok {
		return b, false
	}
	if p.json {
		b = append(b, '}')
	}
	return append(b, '\n'), true
}

func (p plainLines) key(b []byte, k string, sep bool) []byte {
	switch {
	case p.json && sep:
		b = append(b, ',')
	case sep:
		b = append(b, ' ')
	}
	b = p.str(b, k)
	if p.json {
		return append(b, ':')
	}
	return append(b, '=')
}

// str appends a plain or empty string as slog writes it: quoted in JSON,
// and in text only when empty.
func (p plainLines) str(b []byte, s string) []byte {
	if p.json || s == "" {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	return append(b, s...)
}

// plain: non-empty, and every byte printable ASCII that neither format
// quotes or escapes.
func plain(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !plainByte[s[i]] {
			return false
		}
	}
	return true
}

var plainByte = func() (t [256]bool) {
	for c := '!'; c <= '~'; c++ {
		t[c] = c != '"' && c != '\\' && c != '='
	}
	return t
}()

// appendRFC3339Millis is slog's text time: RFC 3339 with milliseconds.
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(b)
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10)
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefixLen], b[n+prefixLen+1:]...) // drop the 4th digit
}
