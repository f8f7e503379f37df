package audit

import (
	"context"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/internal/redisx"
)

// Filter selects events: of one user (their own history, authoritative) or
// of everyone (the feed), of one type or all, newest first.
type Filter struct {
	UserID string
	Type   string
	Limit  int
	// Cursor is the next_cursor of the previous page ("" for the first).
	Cursor string
}

// maxScan bounds how many entries one page may read past while filtering by
// type; the page then ends early, with a cursor to go on.
const maxScan = 5000

// A view merges two sources, each newest first: the history (a user's
// stream, or the feed) and the refusal records (a user's hash of them, or
// the refusal feed). Every event has a position, and its id is that
// position: "<ms>-<seq>" for the history, where it is the stream id, and
// "r<ms>-<seq>" for a refusal record (its id in the user's hash, or its
// entry's in the refusal feed). Positions order the view: newer time first;
// at the same millisecond the history before refusals; then by sequence. A
// page's next_cursor is the position of its last event (or, when filtering
// read maxScan entries, of the last entry read), and the next page is what
// lies strictly after it. A position never changes (a record counts in
// place; it stays where it started), so paging neither repeats nor skips an
// event; events recorded meanwhile are newer than any cursor and show on a
// first page.
type pos struct {
	ms, seq uint64
	refusal bool
}

// newer reports whether p comes before q in a view.
func (p pos) newer(q pos) bool {
	switch {
	case p.ms != q.ms:
		return p.ms > q.ms
	case p.refusal != q.refusal:
		return !p.refusal
	}
	return p.seq > q.seq
}

func (p pos) String() string {
	s := strconv.FormatUint(p.ms, 10) + "-" + strconv.FormatUint(p.seq, 10)
	if p.refusal {
		return "r" + s
	}
	return s
}

// parsePos reads a position, as String writes it: digits only, so no
// client text reaches Redis.
func parsePos(s string) (pos, bool) {
	var p pos
	if rest, ok := strings.CutPrefix(s, "r"); ok {
		p.refusal, s = true, rest
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok || !digits(a) || !digits(b) {
		return pos{}, false
	}
	var err1, err2 error
	p.ms, err1 = strconv.ParseUint(a, 10, 64)
	p.seq, err2 = strconv.ParseUint(b, 10, 64)
	return p, err1 == nil && err2 == nil
}

func digits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// streamPos is a stream id as a position of a source.
func streamPos(id string, refusal bool) pos {
	p, _ := parsePos(id)
	p.refusal = refusal
	return p
}

// before is the newest stream id of a source (refusal or not) that comes
// after c in the view, inclusive, for XREVRANGE; false when there is none.
// Never "(" and the cursor: Redis refuses an exclusive 0-0.
func before(c pos, refusal bool) (string, bool) {
	ms, seq := c.ms, c.seq
	switch {
	case refusal != c.refusal && refusal:
		// The history's c is newer than the refusals at its millisecond.
		seq = math.MaxUint64
	case refusal != c.refusal:
		// The refusal c is older than the history at its millisecond.
		if ms == 0 {
			return "", false
		}
		ms, seq = ms-1, math.MaxUint64
	case seq > 0:
		seq--
	case ms > 0:
		ms, seq = ms-1, math.MaxUint64
	default:
		return "", false
	}
	return strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq, 10), true
}

// item is an entry of a source: an event, or (keep false) an entry that
// only moves the position (a refusal whose record is gone, or of another
// type).
type item struct {
	p    pos
	e    Event
	keep bool
}

// source is one of a view's sources, read newest first in batches.
type source struct {
	refusal bool
	// fetch reads up to n entries from end (inclusive, "+" for the newest)
	// down; nil when buf holds all there is.
	fetch func(ctx context.Context, end string, n int) ([]item, error)
	n     int
	end   string
	buf   []item
	done  bool
}

// head is the source's next entry, or nil.
func (s *source) head(ctx context.Context) (*item, error) {
	if len(s.buf) == 0 && !s.done && s.fetch != nil {
		items, err := s.fetch(ctx, s.end, s.n)
		if err != nil {
			return nil, err
		}
		s.buf = items
		if len(items) < s.n {
			s.done = true
		} else {
			end, ok := before(items[len(items)-1].p, s.refusal)
			s.end, s.done = end, !ok
		}
	}
	if len(s.buf) == 0 {
		return nil, nil
	}
	return &s.buf[0], nil
}

// List returns a page of events, newest first, and the cursor of the next
// page ("" on the last). A cursor it did not issue is errcode.ErrInvalidCursor.
func (l *Log) List(ctx context.Context, f Filter) ([]Event, string, error) {
	f.Limit = max(f.Limit, 1)
	var cur *pos
	if f.Cursor != "" {
		c, ok := parsePos(f.Cursor)
		if !ok {
			return nil, "", errcode.ErrInvalidCursor
		}
		cur = &c
	}
	ctx, cancel := redisx.Timeout(ctx, l.timeout)
	defer cancel()
	n := f.Limit + 1
	if f.Type != "" {
		n = 500
	}
	key := l.k.EventFeed()
	if f.UserID != "" {
		key = l.k.Events(f.UserID)
	}
	srcs := []*source{l.streamSource(key, false, cur, n, func(x rueidis.XRangeEntry, p pos) item {
		return item{p: p, e: decode(x, f.UserID), keep: true}
	})}
	if f.Type == "" || f.Type == LoginFailed || f.Type == LoginThrottled {
		if f.UserID != "" {
			s, err := l.userRefusals(ctx, f.UserID, cur)
			if err != nil {
				return nil, "", err
			}
			srcs = append(srcs, s)
		} else {
			srcs = append(srcs, l.feedRefusals(f.Type, cur, n))
		}
	}
	return merge(ctx, f, srcs)
}

// merge takes a page from the sources, newest first.
func merge(ctx context.Context, f Filter, srcs []*source) ([]Event, string, error) {
	out := []Event{}
	var last, lastOut pos
	for scanned := 1; ; scanned++ {
		var best *source
		var head *item
		for _, s := range srcs {
			h, err := s.head(ctx)
			if err != nil {
				return nil, "", err
			}
			if h != nil && (head == nil || h.p.newer(head.p)) {
				best, head = s, h
			}
		}
		if best == nil {
			return out, "", nil
		}
		it := *head
		best.buf = best.buf[1:]
		last = it.p
		if it.keep && (f.Type == "" || it.e.Type == f.Type) {
			if len(out) == f.Limit {
				// One more exists: the page ends before it.
				return out, lastOut.String(), nil
			}
			it.e.ID = it.p.String()
			out, lastOut = append(out, it.e), it.p
		}
		if scanned >= maxScan {
			// Filtering read enough for one request: go on from here next time.
			return out, last.String(), nil
		}
	}
}

// streamSource reads a stream below the cursor.
func (l *Log) streamSource(key string, refusal bool, cur *pos, n int, conv func(rueidis.XRangeEntry, pos) item) *source {
	s := &source{refusal: refusal, n: n, end: "+"}
	if cur != nil {
		var ok bool
		if s.end, ok = before(*cur, refusal); !ok {
			s.done = true
		}
	}
	s.fetch = func(ctx context.Context, end string, n int) ([]item, error) {
		entries, err := l.c.Do(ctx, l.c.B().Xrevrange().Key(key).End(end).Start("-").Count(int64(n)).Build()).AsXRange()
		if err != nil {
			return nil, redisx.Unavailable("read events", err)
		}
		out := make([]item, len(entries))
		for i, x := range entries {
			out[i] = conv(x, streamPos(x.ID, refusal))
		}
		return out, nil
	}
	return s
}

// userRefusals are a user's refusal records after the cursor, all at once
// (there are at most RefusalsPerUser).
func (l *Log) userRefusals(ctx context.Context, uid string, cur *pos) (*source, error) {
	h, err := l.c.Do(ctx, l.c.B().Hgetall().Key(l.k.Refusals(uid)).Build()).AsStrMap()
	if err != nil {
		return nil, redisx.Unavailable("read refusals", err)
	}
	now := l.now()
	s := &source{refusal: true, done: true}
	for id, body := range h {
		p, ok := parsePos(id)
		p.refusal = true
		if !ok || (cur != nil && !cur.newer(p)) {
			continue // not a record, or not after the cursor
		}
		if r, ok := decodeRecord(body, now); ok {
			s.buf = append(s.buf, item{p: p, e: r.event(uid), keep: true})
		}
	}
	slices.SortFunc(s.buf, func(a, b item) int {
		if a.p.newer(b.p) {
			return -1
		}
		return 1
	})
	return s, nil
}

// feedRefusals reads the refusal feed below the cursor, and the records its
// entries stand for (of type typ, or all).
func (l *Log) feedRefusals(typ string, cur *pos, n int) *source {
	s := l.streamSource(l.k.RefusalFeed(), true, cur, n, func(x rueidis.XRangeEntry, p pos) item {
		return item{p: p, e: Event{Type: x.FieldValues[fType], UserID: x.FieldValues[fUser], ID: x.FieldValues[fRecord]}}
	})
	entries := s.fetch
	s.fetch = func(ctx context.Context, end string, n int) ([]item, error) {
		items, err := entries(ctx, end, n)
		if err != nil {
			return nil, err
		}
		var cmds rueidis.Commands
		var want []int
		for i, it := range items {
			if typ != "" && it.e.Type != typ {
				continue
			}
			key := l.k.AnonRefusals()
			if it.e.UserID != "" {
				key = l.k.Refusals(it.e.UserID)
			}
			cmds = append(cmds, l.c.B().Hget().Key(key).Field(it.e.ID).Build())
			want = append(want, i)
		}
		if len(cmds) == 0 {
			return items, nil
		}
		now := l.now()
		for j, r := range l.c.DoMulti(ctx, cmds...) {
			body, err := r.ToString()
			if rueidis.IsRedisNil(err) {
				continue // the record is gone (its user kept newer ones, or it aged out)
			}
			if err != nil {
				return nil, redisx.Unavailable("read refusals", err)
			}
			it := &items[want[j]]
			if rec, ok := decodeRecord(body, now); ok {
				it.e, it.keep = rec.event(it.e.UserID), true
			}
		}
		return items, nil
	}
	return s
}

func decode(x rueidis.XRangeEntry, uid string) Event {
	ms, _, _ := strings.Cut(x.ID, "-")
	at, _ := strconv.ParseInt(ms, 10, 64)
	e := Event{ID: x.ID, At: time.UnixMilli(at).UTC(), Type: x.FieldValues[fType], UserID: x.FieldValues[fUser],
		ActorID: x.FieldValues[fActor], SessionID: x.FieldValues[fSession], IP: x.FieldValues[fIP],
		UserAgent: x.FieldValues[fUA], Detail: x.FieldValues[fDetail]}
	if e.UserID == "" {
		e.UserID = uid // a user's own history does not repeat the id
	}
	return e
}
