package sessions

import (
	"strconv"
	"testing"
	"time"
)

// Revoking one session each of 10,000 users one by one, as a script that
// disables many accounts does: each revocation is remembered for
// tombstoneTTL, and dropping what expired must not walk every user's
// tombstones on every revocation.
func BenchmarkRevokeManyUsersOneByOne(b *testing.B) {
	const n = 10_000
	uids, sids := make([]string, n), make([]string, n)
	for i := range n {
		uids[i], sids[i] = "u"+strconv.Itoa(i), "s"+strconv.Itoa(i)
	}
	b.ReportAllocs()
	for b.Loop() {
		s := &Store{}
		for i, uid := range uids {
			s.rememberRevoked(uid, sids[i:i+1])
		}
	}
}

// Users whose tombstones have all expired are dropped by a later
// revocation, at most once per pruneEvery.
func TestRevokedTombstonesArePruned(t *testing.T) {
	s := &Store{}
	s.rememberRevoked("old", []string{"a"})
	if !s.revokedHere("old", "a") {
		t.Fatal("a session just revoked here is not remembered")
	}
	v, _ := s.revoked.Load("old")
	ts := v.(*tombstones)
	ts.mu.Lock()
	ts.latest, ts.ids["a"] = time.Now().Add(-2*tombstoneTTL), time.Now().Add(-2*tombstoneTTL)
	ts.mu.Unlock()
	if s.revokedHere("old", "a") {
		t.Fatal("an expired tombstone still refuses its session")
	}

	// The first revocation pruned a moment ago: the next one does not walk.
	s.rememberRevoked("new", []string{"b"})
	if _, ok := s.revoked.Load("old"); !ok {
		t.Fatal("pruned again within pruneEvery")
	}
	s.pruned.Store(time.Now().Add(-2 * pruneEvery).UnixNano())
	s.rememberRevoked("newer", []string{"c"})
	if _, ok := s.revoked.Load("old"); ok {
		t.Fatal("a user whose tombstones all expired was not dropped")
	}
	for uid, sid := range map[string]string{"new": "b", "newer": "c"} {
		if !s.revokedHere(uid, sid) {
			t.Fatalf("pruning dropped %s's live tombstone", uid)
		}
	}
}
