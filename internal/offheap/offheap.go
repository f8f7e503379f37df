// Package offheap holds large pointer-free tables outside the Go heap: the
// client-side cache's rings (flatcache), the verified-token cache (tokens)
// and the touch memo (sessions). At a million sessions each is hundreds of
// MB read at random on every request: kept in the heap, the collector would
// mark it on every cycle, and on 4 KiB pages every read would cost a TLB
// miss.
package offheap

import (
	"runtime"
	"sync"
)

// Region is memory from Map, returned once: by Free, or by the collector
// after its owner is dropped.
type Region struct {
	mu  sync.Mutex
	mem []byte
}

// MapAtMost maps n bytes or, where the kernel refuses that much (strict
// overcommit, a bound past what is free), the largest of n/2, n/4, ... down
// to least: a smaller table rather than none. It returns nil when even least
// is refused. The region is freed when owner becomes unreachable, if Free
// has not freed it before.
func MapAtMost[T any](owner *T, n, least int) *Region {
	mem, err := Map(n)
	for err != nil && n/2 >= least {
		n /= 2
		mem, err = Map(n)
	}
	if err != nil {
		return nil
	}
	r := &Region{mem: mem}
	runtime.AddCleanup(owner, func(r *Region) { r.Free() }, r)
	return r
}

// Bytes is the region's memory: nil once freed.
func (r *Region) Bytes() []byte {
	if r == nil {
		return nil
	}
	return r.mem
}

// Free unmaps the region; nothing may use its memory afterwards.
func (r *Region) Free() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mem != nil {
		Unmap(r.mem)
		r.mem = nil
	}
}
