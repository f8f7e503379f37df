package tokens

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// The ring against a model of what the cache promises, one least-recently-
// used list a shard bounded by the shard's limits: over 200,000 random uses
// of 3,000 tokens of 150 to 700 B, far more than a 1 MiB cache holds (so
// its rings wrap, skip their ends and move held records thousands of times),
// a token is a hit exactly when the model holds it (the ring never drops a
// held record to make room, and never keeps one the model dropped), every
// hit answers the token's own claims, and claims answered long before are
// unchanged after their bytes in the ring were reused.
func TestCacheRingIsLeastRecentlyUsed(t *testing.T) {
	c := newCache(1 << 20)
	now := time.Now()
	rng := rand.New(rand.NewPCG(1, 2))
	type tok struct {
		s string
		v verified
	}
	toks := make([]tok, 3000)
	for i := range toks {
		body := strings.Repeat(string(rune('a'+i%26)), 150+rng.IntN(550))
		cl := Claims{UserID: fmt.Sprintf("user-%d", i), SessionID: fmt.Sprintf("session-%d", i), Username: fmt.Sprintf("name-%d", i%7),
			IssuedAt: now.Add(-time.Minute), ExpiresAt: now.Add(time.Hour), AccountCreatedAt: now.Add(-time.Duration(i) * time.Hour)}
		toks[i] = tok{s: fmt.Sprintf("%d.%s", i, body), v: verified{claims: cl, from: now.Add(-time.Hour), until: now.Add(time.Hour)}}
	}
	// The model: per shard, tokens most recently used first, and their bytes.
	type model struct {
		order []int
		held  int64
	}
	var models [cacheShards]model
	recSize := func(i int) int64 {
		cl := toks[i].v.claims
		return int64((recordHeader + uint32(len(toks[i].s)+len(cl.UserID)+len(cl.SessionID)+len(cl.Username)) + 7) &^ 7)
	}
	shardOf := func(i int) int { return int(maphash.String(c.seed, toks[i].s) >> (64 - 6)) }
	type kept struct {
		i int
		c Claims
	}
	var answers []kept
	moved := 0
	for n := range 200_000 {
		// A skewed choice, so that some tokens stay held while others churn.
		i := min(int(rng.ExpFloat64()*800), len(toks)-1)
		sh := shardOf(i)
		m := &models[sh]
		at := -1
		for k, j := range m.order {
			if j == i {
				at = k
			}
		}
		got, hit := c.get(toks[i].s, now)
		if hit != (at >= 0) {
			t.Fatalf("use %d of token %d: hit %v, the model holds it: %v", n, i, hit, at >= 0)
		}
		if hit {
			if !sameClaims(got, toks[i].v.claims) {
				t.Fatalf("use %d of token %d: claims %+v, want %+v", n, i, got, toks[i].v.claims)
			}
			if n%100 == 0 {
				answers = append(answers, kept{i, got})
			}
			m.order = append(append([]int{i}, m.order[:at]...), m.order[at+1:]...)
			continue
		}
		s := &c.shards[sh]
		offsets := map[uint64]uint32{}
		for _, sl := range s.index {
			offsets[sl.key] = sl.off1
		}
		c.put(toks[i].s, &toks[i].v)
		for _, sl := range s.index {
			if o, ok := offsets[sl.key]; ok && sl.off1 != 0 && o != sl.off1 {
				moved++
			}
		}
		if recSize(i) > int64(s.biggest) {
			continue // too big for a shard: not kept, in the model either
		}
		for len(m.order) > 0 && (m.held+recSize(i) > s.limit || len(m.order) >= len(s.index)/2) {
			last := m.order[len(m.order)-1]
			m.order, m.held = m.order[:len(m.order)-1], m.held-recSize(last)
		}
		m.order, m.held = append([]int{i}, m.order...), m.held+recSize(i)
		if s.held != m.held || s.entries != len(m.order) {
			t.Fatalf("use %d: shard %d holds %d bytes in %d records, the model %d in %d", n, sh, s.held, s.entries, m.held, len(m.order))
		}
	}
	for _, a := range answers {
		if !sameClaims(a.c, toks[a.i].v.claims) {
			t.Fatalf("claims answered for token %d changed to %+v", a.i, a.c)
		}
	}
	if moved < 1000 {
		t.Fatalf("only %d held records moved: the test did not exercise the rings", moved)
	}
	t.Logf("%d held records moved; %d answers kept", moved, len(answers))
}

func sameClaims(a, b Claims) bool {
	return a.UserID == b.UserID && a.SessionID == b.SessionID && a.Username == b.Username &&
		a.IssuedAt.Equal(b.IssuedAt) && a.ExpiresAt.Equal(b.ExpiresAt) && a.AccountCreatedAt.Equal(b.AccountCreatedAt)
}
