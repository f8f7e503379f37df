package users

import (
	"context"
	"encoding/base64"
	"slices"
	"strings"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/internal/redisx"
)

// Search: accounts whose name starts with what an admin typed, page by page
// both ways, from the listing (Users(): "lowercased name \0 id", one sorted
// set, so one slot on a cluster), read with ZRANGE BYLEX: a prefix of
// lowercased names is a range of members.

// Query selects a page of accounts in username order.
type Query struct {
	// Prefix keeps the names that start with it, case-insensitively ("": all).
	Prefix string
	// After is a Page's Next: the page after it. Before is a Page's Prev: the
	// page before it. At most one is set; neither is the first page.
	After, Before string
	Limit         int
}

// Page is a page of accounts and the cursors of its neighbours ("" when
// there is none).
type Page struct {
	Users      []User
	Prev, Next string
}

// Search returns a page of the accounts whose names start with q.Prefix.
// A cursor it did not issue for that prefix is errcode.ErrInvalidCursor.
func (s *Store) Search(ctx context.Context, q Query) (Page, error) {
	limit := max(q.Limit, 1)
	prefix := strings.ToLower(q.Prefix)
	if prefix != "" && !ValidUsername(prefix) {
		// No name has a character no name may have.
		return Page{Users: []User{}}, nil
	}
	// The prefix's range: every member from the prefix itself up to, not
	// including, the prefix followed by a byte no name holds.
	lo, hi := "-", "+"
	if prefix != "" {
		lo, hi = "["+prefix, "("+prefix+"\xff"
	}
	after, err := searchCursor(q.After, prefix)
	if err != nil {
		return Page{}, err
	}
	before, err := searchCursor(q.Before, prefix)
	if err != nil {
		return Page{}, err
	}
	ctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	key := s.k.Users()
	// The page, one more to tell whether another follows it, and a probe
	// for anything on the side it came from.
	var page, probe rueidis.Completed
	switch {
	case before != "":
		page = s.c.B().Zrange().Key(key).Min("("+before).Max(lo).Bylex().Rev().Limit(0, int64(limit)+1).Build()
		probe = s.c.B().Zrange().Key(key).Min("["+before).Max(hi).Bylex().Limit(0, 1).Build()
	case after != "":
		page = s.c.B().Zrange().Key(key).Min("("+after).Max(hi).Bylex().Limit(0, int64(limit)+1).Build()
		probe = s.c.B().Zrange().Key(key).Min("["+after).Max(lo).Bylex().Rev().Limit(0, 1).Build()
	default:
		page = s.c.B().Zrange().Key(key).Min(lo).Max(hi).Bylex().Limit(0, int64(limit)+1).Build()
	}
	cmds := rueidis.Commands{page}
	if probe != (rueidis.Completed{}) {
		cmds = append(cmds, probe)
	}
	res := s.c.DoMulti(ctx, cmds...)
	members, err := res[0].AsStrSlice()
	if err != nil {
		return Page{}, redisx.Unavailable("search users", err)
	}
	back := false
	if len(res) > 1 {
		m, err := res[1].AsStrSlice()
		if err != nil {
			return Page{}, redisx.Unavailable("search users", err)
		}
		back = len(m) > 0
	}
	more := len(members) > limit
	members = members[:min(len(members), limit)]
	if before != "" {
		slices.Reverse(members)
	}
	var p Page
	if len(members) > 0 {
		first, last := encodeCursor(members[0]), encodeCursor(members[len(members)-1])
		switch {
		case before != "":
			p.Prev, p.Next = cursorIf(more, first), cursorIf(back, last)
		case after != "":
			p.Prev, p.Next = cursorIf(back, first), cursorIf(more, last)
		default:
			p.Next = cursorIf(more, last)
		}
	}
	p.Users, err = s.loadMembers(ctx, members, "search users")
	return p, err
}

func encodeCursor(member string) string { return base64.RawURLEncoding.EncodeToString([]byte(member)) }

func cursorIf(ok bool, c string) string {
	if ok {
		return c
	}
	return ""
}

// searchCursor reads a cursor of a search for prefix: a member of the
// listing within the prefix's range.
func searchCursor(c, prefix string) (string, error) {
	if c == "" {
		return "", nil
	}
	m, err := base64.RawURLEncoding.DecodeString(c)
	name, id, ok := strings.Cut(string(m), "\x00")
	if err != nil || !ok || id == "" || !strings.HasPrefix(name, prefix) || (name != "" && !ValidUsername(name)) {
		return "", errcode.ErrInvalidCursor
	}
	return string(m), nil
}

// loadMembers reads the accounts of listing members, in their order,
// leaving out any that is no account (yet, or any more).
func (s *Store) loadMembers(ctx context.Context, members []string, what string) ([]User, error) {
	out := make([]User, 0, len(members))
	if len(members) == 0 {
		return out, nil
	}
	cmds := make(rueidis.Commands, len(members))
	for i, m := range members {
		cmds[i] = s.c.B().Hgetall().Key(s.k.User(m[strings.IndexByte(m, 0)+1:])).Build()
	}
	for _, r := range s.c.DoMulti(ctx, cmds...) {
		h, err := r.AsStrMap()
		if err != nil {
			return nil, redisx.Unavailable(what, err)
		}
		if u, err := decode(h); err == nil {
			out = append(out, u)
		}
	}
	return out, nil
}
