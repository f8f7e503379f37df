package app

import (
	"testing"

	"github.com/google/uuid"
)

// Request ids are UUIDs v4, all different, across many batches and
// goroutines.
func TestRequestIDs(t *testing.T) {
	const n = 4 * 2000
	ids := make(chan string, n)
	for range 4 {
		go func() {
			for range n / 4 {
				ids <- newRequestID()
			}
		}()
	}
	seen := map[string]bool{}
	for range n {
		id := <-ids
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 4 || u.Variant() != uuid.RFC4122 || u.String() != id {
			t.Fatalf("%q: not a canonical UUID v4 (%v)", id, err)
		}
		if seen[id] {
			t.Fatalf("%q twice", id)
		}
		seen[id] = true
	}
}
