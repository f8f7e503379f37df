package users_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/users"
)

// An admin's search: names starting with what was typed, in any case, page
// by page forward and back, every account once.
func TestSearchByPrefix(t *testing.T) {
	t.Parallel()
	s := newStore(t, users.Options{})
	var want []string
	for i := range 7 {
		name := fmt.Sprintf("Ann%02d", i)
		if _, err := s.Create(ctx, name, "password123", "", audit.Actor{}); err != nil {
			t.Fatal(err)
		}
		want = append(want, name)
	}
	for _, name := range []string{"an", "anna-b", "bob", "annz", "zed"} {
		if _, err := s.Create(ctx, name, "password123", "", audit.Actor{}); err != nil {
			t.Fatal(err)
		}
	}
	want = append(want, "annz")
	names := func(p users.Page) []string {
		var out []string
		for _, u := range p.Users {
			out = append(out, u.Username)
		}
		return out
	}
	// Forward, three at a time.
	var got []string
	var pages []users.Page
	q := users.Query{Prefix: "aNn", Limit: 3}
	for {
		p, err := s.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, p)
		got = append(got, names(p)...)
		if len(pages) == 1 && p.Prev != "" {
			t.Fatal("the first page has a previous page")
		}
		if p.Next == "" {
			break
		}
		if len(pages) > 5 {
			t.Fatal("too many pages")
		}
		q = users.Query{Prefix: "ann", After: p.Next, Limit: 3}
	}
	// In lowercased byte order, as the listing sorts them.
	wantAll := append([]string{"anna-b"}, want...)
	slices.SortFunc(wantAll, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	if strings.Join(got, ",") != strings.Join(wantAll, ",") {
		t.Fatalf("searching ann: %v, want %v", got, wantAll)
	}
	// Back from the last page, to the first.
	last := pages[len(pages)-1]
	if last.Prev == "" {
		t.Fatal("the last page has no previous page")
	}
	q = users.Query{Prefix: "ann", Before: last.Prev, Limit: 3}
	for i := len(pages) - 2; i >= 0; i-- {
		p, err := s.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(names(p), ",") != strings.Join(names(pages[i]), ",") {
			t.Fatalf("page %d going back: %v, want %v", i, names(p), names(pages[i]))
		}
		if p.Next == "" {
			t.Fatalf("page %d going back has no next page", i)
		}
		if i == 0 {
			if p.Prev != "" {
				t.Fatal("the first page, reached going back, has a previous page")
			}
			break
		}
		q = users.Query{Prefix: "ann", Before: p.Prev, Limit: 3}
	}
	// Exact names and no match.
	for prefix, want := range map[string]string{"BOB": "bob", "an": "an,Ann00,Ann01", "zz": "", "x y": "", "{": ""} {
		p, err := s.Search(ctx, users.Query{Prefix: prefix, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(names(p), ",") != want {
			t.Fatalf("searching %q: %v, want %q", prefix, names(p), want)
		}
	}
	// All accounts, no prefix.
	p, err := s.Search(ctx, users.Query{Limit: 100})
	if err != nil || len(p.Users) != 12 || p.Next != "" || p.Prev != "" {
		t.Fatalf("all accounts: %d, %+v, %v", len(p.Users), p, err)
	}
	// A cursor of another prefix, or garbage, is refused.
	for _, c := range []string{pages[0].Next + "x", "garbage!", "Ym9i"} {
		if _, err := s.Search(ctx, users.Query{Prefix: "zed", After: c, Limit: 3}); !errors.Is(err, errcode.ErrInvalidCursor) {
			t.Fatalf("cursor %q: %v, want invalid cursor", c, err)
		}
	}
}
