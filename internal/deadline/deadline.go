// Package deadline gives a Redis call a deadline that costs nothing unless
// the call waits.
//
// context.WithTimeout allocates and arms a runtime timer on every call, and
// stops it on cancel. On the hot path almost every session read is answered
// from rueidis's client-side cache, which never looks at the context, so that
// timer was a quarter of the cost of a cached read. A Lazy context arms its
// timer only when something first asks for its Deadline, Done or Err — which
// a call that goes to the network always does. Even the clock is read only
// then: the deadline counts from when the call first waits, microseconds
// after it starts. It knows nothing about Redis or sessiond.
package deadline

import (
	"context"
	"sync"
	"time"
)

// Lazy is a context with a deadline whose timer starts on first use of
// Deadline, Done or Err. Call Stop when done with it, as with a CancelFunc.
type Lazy struct {
	context.Context // the parent: values, and cancellation once armed
	d               time.Duration

	once   sync.Once
	armed  context.Context
	cancel context.CancelFunc
}

// After returns a context that ends d after it is first waited on, or when
// parent ends.
func After(parent context.Context, d time.Duration) *Lazy {
	return &Lazy{Context: parent, d: d}
}

func (l *Lazy) arm() {
	l.once.Do(func() { l.armed, l.cancel = context.WithTimeout(l.Context, l.d) })
}

// Start arms the timer now, for a call known to go to the network: a
// client may wait before it first asks the context (rueidis waits for a
// connection being dialed without looking at it), and that wait would
// otherwise come on top of d.
func (l *Lazy) Start() { l.arm() }

// Deadline arms the timer and reports when it fires.
func (l *Lazy) Deadline() (time.Time, bool) { l.arm(); return l.armed.Deadline() }

// Done arms the timer and returns its channel.
func (l *Lazy) Done() <-chan struct{} { l.arm(); return l.armed.Done() }

// Err arms the timer and reports why the context ended, if it has.
func (l *Lazy) Err() error { l.arm(); return l.armed.Err() }

// Stop releases the timer, if it was armed. The context ends with it.
func (l *Lazy) Stop() {
	l.once.Do(func() { l.armed = stopped }) // never arm after Stop
	if l.cancel != nil {
		l.cancel()
	}
}

// stopped is what a Lazy stopped before it was armed has become: already
// ended, at no cost per call.
var stopped = func() context.Context {
	c, cancel := context.WithCancel(context.Background())
	cancel()
	return c
}()
