package sessions

import (
	"testing"
	"time"
)

// Use is written back at most once a minute, and often enough that a
// session in use never idles out.
func TestTouchInterval(t *testing.T) {
	for idle, want := range map[time.Duration]time.Duration{
		720 * time.Hour: time.Minute, 4 * time.Minute: time.Minute, 2 * time.Minute: 30 * time.Second, time.Second: 250 * time.Millisecond,
	} {
		if got := touchInterval(idle); got != want {
			t.Errorf("touchInterval(%s) = %s, want %s", idle, got, want)
		}
	}
}
