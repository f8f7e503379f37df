package offheap_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/offheap"
)

type owner struct{ _ int }

// A region is zeroed memory of the size asked for, kept while its owner is
// reachable and freed once the owner is collected, or by Free at once.
func TestRegionLivesWithItsOwner(t *testing.T) {
	o := &owner{}
	r := offheap.MapAtMost(o, 1<<20, 4096)
	b := r.Bytes()
	if len(b) != 1<<20 || b[0] != 0 || b[len(b)-1] != 0 {
		t.Fatalf("mapped %d bytes, want 1 MiB of zeros", len(b))
	}
	b[len(b)-1] = 1
	runtime.GC()
	if r.Bytes() == nil {
		t.Fatal("freed while its owner is reachable")
	}
	runtime.KeepAlive(o)
	deadline := time.Now().Add(5 * time.Second)
	for r.Bytes() != nil {
		if time.Now().After(deadline) {
			t.Fatal("not freed after its owner was collected")
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	r2 := offheap.MapAtMost(&owner{}, 4096, 4096)
	r2.Free()
	r2.Free() // twice is once
	if r2.Bytes() != nil {
		t.Fatal("Free left the memory")
	}
}
