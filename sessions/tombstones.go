package sessions

import (
	"sync"
	"time"
)

// Tombstones: the sessions this process revoked, refused here for a few
// seconds, because the client-side cache's invalidation for a write can
// arrive after the write's reply.

// pruneEvery is how often, at most, revocations walk the tombstones to drop
// users whose tombstones have all expired. The map then holds at most
// tombstoneTTL + pruneEvery of revokers.
const pruneEvery = time.Second

// tombstones are the sessions of one user this process revoked recently.
type tombstones struct {
	mu     sync.Mutex
	ids    map[string]time.Time // session id → when it was revoked
	latest time.Time
	// dropped is set, under mu, when pruning removes this from the map, so
	// a writer that loaded it just before stores a fresh one instead.
	dropped bool
}

// tombstoneTTL is far longer than an invalidation push takes to arrive.
const tombstoneTTL = 10 * time.Second

func (s *Store) rememberRevoked(uid string, ids []string) {
	if len(ids) == 0 {
		return
	}
	now := time.Now()
	for {
		v, _ := s.revoked.LoadOrStore(uid, &tombstones{})
		t := v.(*tombstones)
		t.mu.Lock()
		if t.dropped {
			// Pruned between the load and the lock: store a fresh one.
			t.mu.Unlock()
			continue
		}
		if t.ids == nil || now.Sub(t.latest) > tombstoneTTL {
			// All expired: start afresh, sized for a logout-all of thousands.
			t.ids = make(map[string]time.Time, len(ids))
		}
		for _, id := range ids {
			t.ids[id] = now
		}
		t.latest = now
		t.mu.Unlock()
		break
	}
	// Drop users whose tombstones have all expired, so the map holds only
	// the last few seconds' revokers; one revocation a second does the walk.
	last := s.pruned.Load()
	if now.UnixNano()-last < int64(pruneEvery) || !s.pruned.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	for k, v := range s.revoked.Range {
		t := v.(*tombstones)
		t.mu.Lock()
		if now.Sub(t.latest) > tombstoneTTL {
			t.dropped = true
			s.revoked.CompareAndDelete(k, v)
		}
		t.mu.Unlock()
	}
}

func (s *Store) revokedHere(uid, sid string) bool {
	v, ok := s.revoked.Load(uid)
	if !ok {
		return false
	}
	t := v.(*tombstones)
	t.mu.Lock()
	at, ok := t.ids[sid]
	t.mu.Unlock()
	return ok && time.Since(at) <= tombstoneTTL
}
