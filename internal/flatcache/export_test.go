package flatcache

import "github.com/redis/rueidis"

// RingBytes is what a Store's rings hold now, for the tests.
func RingBytes(cs rueidis.CacheStore) (n uint64) {
	s := cs.(*Store)
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		n += sh.head - sh.tail
		sh.mu.RUnlock()
	}
	return n
}
