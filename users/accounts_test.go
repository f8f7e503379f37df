package users_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/users"
)

var srv *redistest.Server

func TestMain(m *testing.M) { redistest.Main(m, &srv) }

func newStore(t *testing.T, o users.Options) *users.Store {
	t.Helper()
	s, _ := newStoreKeys(t, o)
	return s
}

// newStoreKeys is newStore that also returns the store's key layout.
func newStoreKeys(t *testing.T, o users.Options) (*users.Store, keys.Layout) {
	t.Helper()
	// Test values; the service's defaults are its configuration's (server/).
	o.Keys, o.BcryptCost, o.Timeout = keys.New(redistest.Prefix(t)), 4, 2*time.Second
	if o.FailureWindow == 0 {
		o.FailureWindow = 15 * time.Minute
	}
	c := srv.Client(t)
	o.Audit = audit.New(c, o.Keys, o.Timeout, o.Now)
	s, err := users.New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	return s, o.Keys
}

var ctx = context.Background()

// hset changes an account as the session store's scripts do.
func hset(t *testing.T, k keys.Layout, id string, fieldValues ...string) {
	t.Helper()
	if err := srv.Do(t, append([]string{"HSET", k.User(id)}, fieldValues...)...).Error(); err != nil {
		t.Fatal(err)
	}
}

func TestCreateAndFind(t *testing.T) {
	t.Parallel()
	s := newStore(t, users.Options{})
	u, err := s.Create(ctx, "Alice", "password123", "", audit.Actor{})
	if err != nil {
		t.Fatal(err)
	}
	if u.Role != users.RoleUser || u.Disabled || u.ID == "" || u.CreatedAt.IsZero() {
		t.Fatalf("created %+v", u)
	}
	for _, name := range []string{"alice", "ALICE", "Alice"} {
		got, err := s.FindByUsername(ctx, name)
		if err != nil || got.ID != u.ID || got.Username != "Alice" {
			t.Fatalf("find %q: %+v, %v", name, got, err)
		}
	}
	byID, err := s.Get(ctx, u.ID)
	cached, err2 := s.GetCached(ctx, u.ID)
	if err != nil || err2 != nil || byID.Username != "Alice" || cached.Username != "Alice" || cached.Role != byID.Role ||
		!cached.CreatedAt.Equal(byID.CreatedAt) || cached.CredentialVersion != byID.CredentialVersion {
		t.Fatalf("get %+v (%v) vs cached %+v (%v)", byID, err, cached, err2)
	}
	if _, err := s.Create(ctx, "aLiCe", "password123", "", audit.Actor{}); !errors.Is(err, users.ErrUsernameTaken) {
		t.Fatalf("same name, other case: %v", err)
	}
	if _, err := s.Get(ctx, "no-such-id"); !errors.Is(err, errcode.ErrUserNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	if _, err := s.FindByUsername(ctx, "bob"); !errors.Is(err, errcode.ErrUserNotFound) {
		t.Fatalf("find missing: %v", err)
	}
}

func TestCreateValidates(t *testing.T) {
	t.Parallel()
	s := newStore(t, users.Options{})
	for _, c := range []struct {
		name, password, role string
		want                 error
	}{
		{"", "password123", "", users.ErrInvalidUsername},
		{strings.Repeat("a", 65), "password123", "", users.ErrInvalidUsername},
		{"has space", "password123", "", users.ErrInvalidUsername},
		{"a{b}", "password123", "", users.ErrInvalidUsername},
		{"jürgen", "password123", "", users.ErrInvalidUsername},
		{"ok1", "seven77", "", users.ErrPasswordTooShort},
		{"ok2", strings.Repeat("x", 73), "", users.ErrPasswordTooLong},
		{"ok3", "password123", "root", users.ErrInvalidRole},
	} {
		if _, err := s.Create(ctx, c.name, c.password, c.role, audit.Actor{}); !errors.Is(err, c.want) {
			t.Errorf("Create(%q, %d-byte password, %q) = %v, want %v", c.name, len(c.password), c.role, err, c.want)
		}
	}
	// Eight characters count, not bytes: eight multi-byte characters are fine.
	if _, err := s.Create(ctx, "mb.user-1@x", "éééééééé", users.RoleAdmin, audit.Actor{}); err != nil {
		t.Fatalf("8 two-byte characters: %v", err)
	}
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	s, k := newStoreKeys(t, users.Options{})
	long := strings.Repeat("k", 72)
	u, _ := s.Create(ctx, "alice", long, "", audit.Actor{})
	if got, err := s.Authenticate(ctx, "ALICE", long, audit.Actor{IP: "1.2.3.4"}); err != nil || got.ID != u.ID {
		t.Fatalf("right password: %+v, %v", got, err)
	}
	for name, c := range map[string][2]string{
		"wrong password":   {"alice", "nope-nope"},
		"unknown user":     {"bob", long},
		"72 bytes + more":  {"alice", long + "!"},
		"invalid username": {"a b", long},
	} {
		if _, err := s.Authenticate(ctx, c[0], c[1], audit.Actor{IP: "1.2.3.4"}); !errors.Is(err, users.ErrInvalidCredentials) {
			t.Errorf("%s: %v, want ErrInvalidCredentials", name, err)
		}
	}
	hset(t, k, u.ID, keys.UserDisabled, "1")
	if _, err := s.Authenticate(ctx, "alice", long, audit.Actor{IP: "1.2.3.4"}); !errors.Is(err, errcode.ErrAccountDisabled) {
		t.Fatalf("disabled, right password: %v", err)
	}
	if _, err := s.Authenticate(ctx, "alice", "nope-nope", audit.Actor{IP: "1.2.3.4"}); !errors.Is(err, users.ErrInvalidCredentials) {
		t.Fatalf("disabled, wrong password: %v (must not reveal the account state)", err)
	}
}

func TestFailedLoginLimit(t *testing.T) {
	t.Parallel()
	window := time.Minute
	s := newStore(t, users.Options{MaxFailures: 3, FailureWindow: window})
	s.Create(ctx, "alice", "password123", "", audit.Actor{})
	fail := func(ip string) error {
		_, err := s.Authenticate(ctx, "alice", "wrong-pass", audit.Actor{IP: ip})
		return err
	}

	fail("1.1.1.1")
	fail("1.1.1.1")
	if _, err := s.Authenticate(ctx, "alice", "password123", audit.Actor{IP: "1.1.1.1"}); err != nil {
		t.Fatalf("below the limit: %v", err)
	}
	for range 3 { // reset by the success: three more fit
		if err := fail("1.1.1.1"); !errors.Is(err, users.ErrInvalidCredentials) {
			t.Fatalf("failure: %v", err)
		}
	}
	_, err := s.Authenticate(ctx, "alice", "password123", audit.Actor{IP: "1.1.1.1"})
	var tooMany *users.TooManyAttemptsError
	if !errors.As(err, &tooMany) || tooMany.Wait <= 0 || tooMany.Wait > window {
		t.Fatalf("4th attempt: %v; want TooManyAttemptsError with 0 < RetryAfter <= %s", err, window)
	}
	if _, err := s.Authenticate(ctx, "alice", "password123", audit.Actor{IP: "2.2.2.2"}); err != nil {
		t.Fatalf("another IP was locked out: %v", err)
	}
	// Unknown names are counted too, so the limit reveals nothing.
	for range 3 {
		s.Authenticate(ctx, "nobody", "x-x-x-x-x", audit.Actor{IP: "3.3.3.3"})
	}
	if _, err := s.Authenticate(ctx, "nobody", "x-x-x-x-x", audit.Actor{IP: "3.3.3.3"}); !errors.As(err, &tooMany) {
		t.Fatalf("unknown user past the limit: %v", err)
	}
}

func TestListPages(t *testing.T) {
	t.Parallel()
	s := newStore(t, users.Options{})
	names := []string{"delta", "Alpha", "charlie", "Echo", "bravo", "foxtrot", "golf"}
	for _, n := range names {
		if _, err := s.Create(ctx, n, "password123", "", audit.Actor{}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	cursor := ""
	for range 5 {
		page, next, err := s.List(ctx, cursor, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range page {
			got = append(got, u.Username)
		}
		if cursor = next; cursor == "" {
			break
		}
	}
	if want := "Alpha bravo charlie delta Echo foxtrot golf"; strings.Join(got, " ") != want {
		t.Fatalf("pages: %v, want %s", got, want)
	}
	if _, _, err := s.List(ctx, "garbage!", 3); !errors.Is(err, errcode.ErrInvalidCursor) {
		t.Fatalf("bad cursor: %v", err)
	}
	if page, next, err := s.List(ctx, "", 10); err != nil || len(page) != 7 || next != "" {
		t.Fatalf("one page of all: %d, %q, %v", len(page), next, err)
	}
	if page, next, err := s.List(ctx, "", 0); err != nil || len(page) != 1 || next == "" {
		t.Fatalf("limit 0: %d users, next %q, %v; want one user and a next page", len(page), next, err)
	}
}

func TestChangesAndPasswordChecks(t *testing.T) {
	t.Parallel()
	s := newStore(t, users.Options{})
	u, _ := s.Create(ctx, "alice", "password123", "", audit.Actor{})
	admin, user, yes, no, pw := users.RoleAdmin, "owner", true, false, "new-password"
	for _, c := range []struct {
		ch     users.Change
		revoke bool
		err    error
	}{
		{users.Change{Role: &admin}, false, nil},
		{users.Change{Disabled: &no}, false, nil},
		{users.Change{Disabled: &yes}, true, nil},
		{users.Change{Password: &pw}, true, nil},
		{users.Change{Role: &user}, false, users.ErrInvalidRole},
	} {
		u, err := s.CheckChange(c.ch)
		if !errors.Is(err, c.err) || (err == nil && u.EndsSessions() != c.revoke) {
			t.Errorf("CheckChange(%+v) = %+v (ends sessions: %v), %v", c.ch, u, u.EndsSessions(), err)
		}
	}
	if _, err := s.CheckPassword(ctx, u.ID, "password123", audit.Actor{IP: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckPassword(ctx, u.ID, "password124", audit.Actor{IP: "192.0.2.1"}); !errors.Is(err, users.ErrInvalidCredentials) {
		t.Fatalf("wrong current password: %v", err)
	}
}

// A change made through one client reaches another client's cached read.
func TestGetCachedSeesChanges(t *testing.T) {
	t.Parallel()
	s, k := newStoreKeys(t, users.Options{})
	u, _ := s.Create(ctx, "alice", "password123", "", audit.Actor{})
	if got, _ := s.GetCached(ctx, u.ID); got.Role != users.RoleUser {
		t.Fatal(got.Role)
	}
	hset(t, k, u.ID, keys.UserRole, users.RoleAdmin)
	deadline := time.Now().Add(time.Second)
	for {
		got, err := s.GetCached(ctx, u.ID)
		if err == nil && got.Role == users.RoleAdmin {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cached read still %q a second after the change (%v)", got.Role, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ExampleValidUsername() {
	for _, n := range []string{"alice", "bob.smith+tag@example.com", "no spaces", ""} {
		fmt.Println(n, users.ValidUsername(n))
	}
	// Output:
	// alice true
	// bob.smith+tag@example.com true
	// no spaces false
	//  false
}

// A burst of concurrent guesses gets no more password checks than a limit
// allows: each limit counts attempts as they start, not as they finish.
func TestFailedLoginLimitHoldsUnderConcurrency(t *testing.T) {
	t.Parallel()
	const limit, burst = 3, 30
	for _, tc := range []struct {
		name string
		o    users.Options
		ip   func(i int) string
	}{
		{"per username and IP", users.Options{MaxFailures: limit}, func(int) string { return "192.0.2.1" }},
		{"per IP", users.Options{MaxFailuresPerIP: limit}, func(int) string { return "192.0.2.1" }},
		{"per account", users.Options{MaxFailuresPerAccount: limit}, func(i int) string { return fmt.Sprintf("192.0.2.%d", i+1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.o.FailureWindow = time.Minute
			s := newStore(t, tc.o)
			if _, err := s.Create(ctx, "alice", "password123", "", audit.Actor{}); err != nil {
				t.Fatal(err)
			}
			var checked, locked atomic.Int32
			var wg sync.WaitGroup
			for i := range burst {
				wg.Go(func() {
					_, err := s.Authenticate(ctx, "alice", "wrong-pass", audit.Actor{IP: tc.ip(i)})
					var tooMany *users.TooManyAttemptsError
					switch {
					case errors.Is(err, users.ErrInvalidCredentials):
						checked.Add(1)
					case errors.As(err, &tooMany):
						locked.Add(1)
					default:
						t.Errorf("guess: %v", err)
					}
				})
			}
			wg.Wait()
			if checked.Load() != limit || locked.Load() != burst-limit {
				t.Fatalf("%d concurrent guesses: %d checked, %d refused; want %d checked", burst, checked.Load(), locked.Load(), limit)
			}
		})
	}
}

// An attempt refused by one limit is not counted by the others, and a
// success gives back what it took from the limit it does not clear.
func TestLoginLimitsCountOnlyFailures(t *testing.T) {
	t.Parallel()
	s := newStore(t, users.Options{MaxFailures: 2, MaxFailuresPerIP: 3, FailureWindow: time.Minute})
	for _, name := range []string{"alice", "bob"} {
		if _, err := s.Create(ctx, name, "password123", "", audit.Actor{}); err != nil {
			t.Fatal(err)
		}
	}
	var tooMany *users.TooManyAttemptsError
	// Many correct logins from one IP never reach its failure limit.
	for range 5 {
		if _, err := s.Authenticate(ctx, "alice", "password123", audit.Actor{IP: "1.1.1.1"}); err != nil {
			t.Fatalf("correct password: %v", err)
		}
	}
	// Two failures lock (alice, IP); the refused third is no failure of the IP's.
	for range 2 {
		s.Authenticate(ctx, "alice", "wrong-pass", audit.Actor{IP: "1.1.1.1"})
	}
	for range 3 {
		if _, err := s.Authenticate(ctx, "alice", "wrong-pass", audit.Actor{IP: "1.1.1.1"}); !errors.As(err, &tooMany) {
			t.Fatalf("past the pair limit: %v", err)
		}
	}
	// The IP has 2 failures of 3: one more guess at bob is checked, the next is refused.
	if _, err := s.Authenticate(ctx, "bob", "wrong-pass", audit.Actor{IP: "1.1.1.1"}); !errors.Is(err, users.ErrInvalidCredentials) {
		t.Fatalf("third failure from the IP: %v; want it checked", err)
	}
	if _, err := s.Authenticate(ctx, "bob", "password123", audit.Actor{IP: "1.1.1.1"}); !errors.As(err, &tooMany) {
		t.Fatalf("past the IP limit: %v", err)
	}
}

// A name that is no account is limited exactly as an account is, by each
// limit, so a refusal never tells whether a username exists.
func TestUnknownNamesAreLimitedAsAccounts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		o    users.Options
		ip   func(i int) string
	}{
		{"per username and IP", users.Options{MaxFailures: 4}, func(int) string { return "192.0.2.1" }},
		{"per account", users.Options{MaxFailuresPerAccount: 4}, func(i int) string { return fmt.Sprintf("192.0.2.%d", i+1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t, tc.o)
			if _, err := s.Create(ctx, "alice", "password123", "", audit.Actor{}); err != nil {
				t.Fatal(err)
			}
			refusals := func(name string) string {
				var out []string
				for i := range 7 {
					_, err := s.Authenticate(ctx, name, "wrong-pass", audit.Actor{IP: tc.ip(i)})
					var tooMany *users.TooManyAttemptsError
					switch {
					case errors.Is(err, users.ErrInvalidCredentials):
						out = append(out, "401")
					case errors.As(err, &tooMany):
						out = append(out, "429")
					default:
						t.Fatalf("%s: %v", name, err)
					}
				}
				return strings.Join(out, " ")
			}
			known, unknown := refusals("alice"), refusals("nobody")
			if known != unknown || known != "401 401 401 401 429 429 429" {
				t.Fatalf("an account: %s; a name that is no account: %s; want both 4 checks, then 429", known, unknown)
			}
		})
	}
}

// One address trying many names keeps a bounded, compact limiter: at most
// a hundred (name, address) counts in one small hash. Evicting one to make
// room never gives back its failures: a name the hash no longer holds counts
// from the most an evicted one had, so the victim still gets no more than
// its limit of guesses from that address, however many names it tried.
func TestAddressLimiterIsBounded(t *testing.T) {
	t.Parallel()
	s, k := newStoreKeys(t, users.Options{MaxFailures: 3, MaxFailuresPerIP: 1000, FailureWindow: time.Minute})
	if _, err := s.Create(ctx, "victim", "password123", "", audit.Actor{}); err != nil {
		t.Fatal(err)
	}
	checked := 0
	guess := func(name, ip string) bool {
		_, err := s.Authenticate(ctx, name, "wrong-pass", audit.Actor{IP: ip})
		var tooMany *users.TooManyAttemptsError
		if !errors.Is(err, users.ErrInvalidCredentials) && !errors.As(err, &tooMany) {
			t.Fatal(err)
		}
		return err == users.ErrInvalidCredentials
	}
	for range 2 {
		if guess("victim", "192.0.2.7") {
			checked++
		}
	}
	// 300 other names, each tried twice: the victim's count is evicted.
	for i := range 300 {
		for range 2 {
			guess(fmt.Sprintf("name%d", i), "192.0.2.7")
		}
	}
	for range 5 {
		if guess("victim", "192.0.2.7") {
			checked++
		}
	}
	if checked > 3 {
		t.Fatalf("the victim's password was checked %d times from one address; want at most its limit, 3", checked)
	}
	if !guess("victim", "192.0.2.8") {
		t.Fatal("another address was refused too")
	}
	c := srv.Client(t)
	n, _ := c.Do(ctx, c.B().Hlen().Key(k.FailIP("192.0.2.7")).Build()).AsInt64()
	enc, _ := c.Do(ctx, c.B().ObjectEncoding().Key(k.FailIP("192.0.2.7")).Build()).ToString()
	if n > 102 || enc != "listpack" {
		t.Fatalf("the address's limiter: %d fields, %s; want at most 100 pairs, its own count and the floor, as a listpack", n, enc)
	}
}

// A limit's window starts when its first failed attempt did, not when its
// password check ended (bcrypt takes a while, more on a busy machine).
func TestFailureWindowStartsWithTheAttempt(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	s := newStore(t, users.Options{MaxFailures: 1, MaxFailuresPerAccount: 1, FailureWindow: time.Minute, Now: now})
	slow := func() (bool, error) {
		offset.Add(int64(30 * time.Second)) // a check that takes half the window
		return false, nil
	}
	if err := s.Guard(ctx, "alice", "192.0.2.1", slow); !errors.Is(err, users.ErrInvalidCredentials) {
		t.Fatalf("the failure: %v", err)
	}
	offset.Add(int64(31 * time.Second)) // a minute and a second after the attempt started
	if err := s.Guard(ctx, "alice", "192.0.2.1", func() (bool, error) { return true, nil }); err != nil {
		t.Fatalf("a minute after the failed attempt started: %v; want its window over", err)
	}
}
