package deadline_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/deadline"
)

func TestLazyEndsAtItsDeadline(t *testing.T) {
	start := time.Now()
	l := deadline.After(context.Background(), 50*time.Millisecond)
	defer l.Stop()
	if at, ok := l.Deadline(); !ok || at.Sub(start) < 50*time.Millisecond || at.Sub(start) > time.Second {
		t.Fatalf("Deadline() = %v, %v; want about 50ms from now", at, ok)
	}
	if err := l.Err(); err != nil {
		t.Fatalf("Err() before the deadline: %v", err)
	}
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done never closed")
	}
	if !errors.Is(l.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err() after the deadline: %v", l.Err())
	}
	if time.Since(start) < 50*time.Millisecond {
		t.Fatal("ended before its deadline")
	}
}

// A context built on it (as rueidis or net may do) sees the deadline and ends with it.
func TestLazyArmsForDerivedContexts(t *testing.T) {
	l := deadline.After(context.Background(), 20*time.Millisecond)
	defer l.Stop()
	child, cancel := context.WithCancel(l)
	defer cancel()
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a derived context never ended")
	}
}

func TestLazyFollowsItsParent(t *testing.T) {
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	l := deadline.After(parent, time.Hour)
	defer l.Stop()
	if l.Value(key{}) != "v" {
		t.Fatal("parent's values are lost")
	}
	cancel()
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("cancelling the parent did not end it")
	}
	if !errors.Is(l.Err(), context.Canceled) {
		t.Fatalf("Err() = %v, want Canceled", l.Err())
	}

	soon, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	pd, _ := soon.Deadline()
	l2 := deadline.After(soon, time.Hour)
	defer l2.Stop()
	if at, _ := l2.Deadline(); !at.Equal(pd) {
		t.Fatalf("Deadline() = %v; want the parent's earlier %v", at, pd)
	}
}

type key struct{}

func TestStopEndsIt(t *testing.T) {
	for name, armFirst := range map[string]bool{"armed": true, "never armed": false} {
		t.Run(name, func(t *testing.T) {
			l := deadline.After(context.Background(), time.Hour)
			if armFirst {
				_ = l.Done()
			}
			l.Stop()
			select {
			case <-l.Done():
			default:
				t.Fatal("Done is open after Stop")
			}
			if l.Err() == nil {
				t.Fatal("Err() is nil after Stop")
			}
		})
	}
}

// The point of it: a context that nobody waits on costs no timer.
func BenchmarkUnused(b *testing.B) {
	b.Run("deadline.After", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			l := deadline.After(context.Background(), time.Second)
			l.Stop()
		}
	})
	b.Run("context.WithTimeout", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, cancel := context.WithTimeout(context.Background(), time.Second)
			cancel()
		}
	})
}

// Start counts the deadline from the call, not from the first wait.
func TestStartArmsNow(t *testing.T) {
	before := time.Now()
	l := deadline.After(context.Background(), 50*time.Millisecond)
	defer l.Stop()
	l.Start()
	after := time.Now()
	time.Sleep(20 * time.Millisecond)
	at, ok := l.Deadline()
	if !ok || at.Before(before.Add(50*time.Millisecond)) || at.After(after.Add(50*time.Millisecond)) {
		t.Fatalf("Deadline() = %v, %v; want 50ms after Start, between %v and %v", at, ok,
			before.Add(50*time.Millisecond), after.Add(50*time.Millisecond))
	}
}
