package sessions

import (
	"runtime"
	"strconv"
	"testing"
	"time"
)

// By default use is written back at most once a minute, and often enough
// that a session in use never idles out; SESSION_TOUCH_INTERVAL sets it.
func TestTouchInterval(t *testing.T) {
	for idle, want := range map[time.Duration]time.Duration{
		720 * time.Hour: time.Minute, 4 * time.Minute: time.Minute, 2 * time.Minute: 30 * time.Second, time.Second: 250 * time.Millisecond,
	} {
		if got := TouchInterval(idle, 0); got != want {
			t.Errorf("TouchInterval(%s, unset) = %s, want %s", idle, got, want)
		}
	}
	if got := TouchInterval(720*time.Hour, 10*time.Minute); got != 10*time.Minute {
		t.Errorf("TouchInterval(720h, 10m) = %s", got)
	}
}

// The memo of recorded use keeps nearly all of as many sessions as it is
// sized for (a session whose bucket is full takes the place of the one used
// longest ago, which then only queues a touch the script finds written),
// tells sessions apart, and forgets what it is told to.
func TestUseMemoRemembersWhatItIsSizedFor(t *testing.T) {
	const n = 10000
	m := newUseMemo(n)
	for i := range n {
		m.note("u", strconv.Itoa(i), int64(i+1))
	}
	kept := 0
	for i := range n {
		switch got := m.last("u", strconv.Itoa(i)); got {
		case int64(i + 1):
			kept++
		case 0:
		default:
			t.Fatalf("session %d: remembered %d, another's", i, got)
		}
	}
	// Four slots for every two sessions: a bucket overflows for about 0.8%
	// of them (Poisson, 1.22 a bucket), with a spread of about 0.1%.
	if kept < n*98/100 {
		t.Fatalf("kept %d of %d sessions, want at least 98%%", kept, n)
	}
	if m.last("v", "0") != 0 || m.last("u", "x") != 0 {
		t.Fatal("remembers sessions it was never told of")
	}
	m.note("u", "7", 99)
	if m.last("u", "7") != 99 {
		t.Fatal("a later note did not replace the earlier")
	}
	m.forget("u", "7")
	if m.last("u", "7") != 0 {
		t.Fatal("forget did not forget")
	}
}

// Touches waiting to be written are bounded: past maxQueuedTouches one is
// refused (Use counts it failed and lets the session's next request try).
func TestTouchQueueIsBounded(t *testing.T) {
	var q toucher
	q.running = true // as if its writer were stuck on a Redis that does not answer
	for i := range maxQueuedTouches {
		if !q.add(touchReq{sid: strconv.Itoa(i)}) {
			t.Fatalf("touch %d refused, below the bound of %d", i, maxQueuedTouches)
		}
	}
	if q.add(touchReq{sid: "one more"}) {
		t.Fatalf("a touch past the bound of %d was queued", maxQueuedTouches)
	}
}

// The memo's table is outside the Go heap: sized for 4 million sessions (a
// 128 MB table), it adds nothing to what the collector manages, and what it
// holds stays right.
func TestUseMemoIsOutsideTheHeap(t *testing.T) {
	before := heapSys()
	m := newUseMemo(4 << 20)
	if grew := int64(heapSys()) - int64(before); grew > 16<<20 {
		t.Fatalf("a memo of %d buckets grew the Go heap by %d bytes", len(m.buckets), grew)
	}
	if len(m.buckets) != 2<<20 {
		t.Fatalf("%d buckets, want 2,097,152 (two slots a session, a power of two)", len(m.buckets))
	}
	for i := range 1000 {
		m.note("u", strconv.Itoa(i), int64(i+1))
	}
	for i := range 1000 {
		if got := m.last("u", strconv.Itoa(i)); got != int64(i+1) {
			t.Fatalf("session %d: %d", i, got)
		}
	}
}

func heapSys() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapSys
}
