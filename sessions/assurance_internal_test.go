package sessions

import (
	"testing"
	"time"
)

// A step-up is remembered for raisedTTL, then forgotten: reading a session
// after that (the hot path) and the pruning of later step-ups must drop the
// old entry, not fail on it. (sync.Map compares the values it deletes: an
// entry holding a slice by value panicked there, and every later read of
// that session then hung on the map's lock.)
func TestStepUpsAreForgotten(t *testing.T) {
	s := &Store{}
	at := time.Unix(1_800_000_000, 0)
	raised := Assurance{AAL: 2, AMR: []string{"pwd", "otp", "mfa"}, AuthTime: at}
	stored := Assurance{AAL: 1, AMR: passwordOnly, AuthTime: at.Add(-time.Hour)}
	age := func(sid string) {
		v, ok := s.raised.m.Load(sid)
		if !ok {
			t.Fatalf("no step-up remembered for %s", sid)
		}
		v.(*raise).at = time.Now().Add(-raisedTTL - time.Second)
	}

	s.raised.remember("a", raised)
	if got := s.raisedHere("u", "a", stored); got.AAL != 2 {
		t.Fatalf("within raisedTTL: aal %d, want the step-up's 2", got.AAL)
	}
	age("a")
	if got := s.raisedHere("u", "a", stored); got.AAL != 1 {
		t.Fatalf("after raisedTTL: aal %d, want what the read found, 1", got.AAL)
	}
	if n := s.raised.n.Load(); n != 0 {
		t.Fatalf("%d step-ups remembered after the only one expired", n)
	}

	// Pruned by a later step-up when nothing reads it.
	s.raised.remember("b", raised)
	age("b")
	s.raised.pruned.Store(0)
	s.raised.remember("c", raised)
	if _, ok := s.raised.m.Load("b"); ok {
		t.Fatal("an expired step-up was not pruned")
	}
	if n := s.raised.n.Load(); n != 1 {
		t.Fatalf("%d step-ups remembered, want 1 (c)", n)
	}
}
