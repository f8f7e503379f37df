package sessions

import (
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
