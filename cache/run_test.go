package cache

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// writerOver runs a stage's writer over a memory store, with a linger no test outlasts:
// whatever is stored before the test's deadline was stored because something ended the
// linger (a half-full queue, a Flush barrier, the end of Run).
func writerOver(t *testing.T, queue int) (*Stage, *Memory, context.CancelFunc, <-chan struct{}) {
	t.Helper()
	mem := NewMemory(StoreOptions{})
	s, err := New(nil, Options{Store: ctxStore{mem}, Queue: queue})
	if err != nil {
		t.Fatal(err)
	}
	s.linger = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, mem, cancel, done
}

// ctxStore refuses a Put whose context ended, as a network store (Redis) does.
type ctxStore struct{ *Memory }

func (c ctxStore) Put(ctx context.Context, es ...*Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.Memory.Put(ctx, es...)
}

// stopWriter ends Run and waits for it to return.
func stopWriter(t *testing.T, cancel context.CancelFunc, done <-chan struct{}) {
	t.Helper()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func answer(i int) *pending {
	e := &Entry{Tenant: "t", Model: "m", Question: fmt.Sprintf("question %d", i),
		Created: time.Now(), Expires: time.Now().Add(time.Hour)}
	e.Key[0], e.Key[1] = byte(i), byte(i>>8)
	return &pending{e: e}
}

// taken waits until the writer holds the first answer of a batch (the queue is empty).
func taken(t *testing.T, s *Stage) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); len(s.writes) > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the writer did not take the first answer")
		}
	}
}

func storedWithin(t *testing.T, mem *Memory, want int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); mem.Len() != want; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("stored %d answers, want %d", mem.Len(), want)
		}
	}
}

func TestWriterHurriesWhenQueueHalfFull(t *testing.T) {
	s, mem, _, _ := writerOver(t, 8)
	if !s.enqueue(answer(0)) {
		t.Fatal("queue full")
	}
	taken(t, s)               // lingering now, with answer 0
	for i := 1; i <= 4; i++ { // the 4th makes the queue half full
		if !s.enqueue(answer(i)) {
			t.Fatal("queue full")
		}
	}
	storedWithin(t, mem, 5)
}

func TestEnqueueNeverBlocks(t *testing.T) {
	// No writer runs: a full queue refuses (the tee counts a drop) instead of blocking
	// the request path.
	s, err := New(nil, Options{Store: NewMemory(StoreOptions{}), Queue: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !s.enqueue(answer(1)) || !s.enqueue(answer(2)) {
		t.Fatal("a queue of 2 refused one of its first 2 answers")
	}
	if s.enqueue(answer(3)) {
		t.Fatal("a full queue took a third answer")
	}
}

func TestFlushEndsLinger(t *testing.T) {
	s, mem, _, _ := writerOver(t, 64)
	if !s.enqueue(answer(0)) {
		t.Fatal("queue full")
	}
	taken(t, s)
	s.enqueue(answer(1))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("Flush during a linger: %v", err)
	}
	if mem.Len() != 2 {
		t.Fatalf("after Flush: %d answers stored, want 2", mem.Len())
	}
}

func TestShutdownStoresTheQueue(t *testing.T) {
	s, mem, cancel, done := writerOver(t, 64)
	if !s.enqueue(answer(0)) {
		t.Fatal("queue full")
	}
	taken(t, s)
	for i := 1; i < 10; i++ {
		s.enqueue(answer(i))
	}
	stopWriter(t, cancel, done)
	if mem.Len() != 10 {
		t.Fatalf("after shutdown: %d answers stored, want 10", mem.Len())
	}
}

func TestShutdownPastBarriers(t *testing.T) {
	s, mem, cancel, done := writerOver(t, 64)
	for i := range 5 {
		s.enqueue(answer(i))
	}
	flushed := make(chan error, 1)
	go func() { flushed <- s.Flush(context.Background()) }()
	for i := 5; i < 12; i++ {
		s.enqueue(answer(i))
	}
	stopWriter(t, cancel, done)
	select {
	case err := <-flushed:
		// nil: the barrier was queued before the shutdown and stored with the rest;
		// errStopped: it came after the writer's last batch.
		if err != nil && !errors.Is(err, errStopped) {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a Flush queued before the shutdown never returned")
	}
	if mem.Len() != 12 {
		t.Fatalf("after shutdown: %d answers stored, want 12", mem.Len())
	}
}

func TestFlushAfterRunReturns(t *testing.T) {
	s, _, cancel, done := writerOver(t, 4)
	stopWriter(t, cancel, done)
	ctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if err := s.Flush(ctx); !errors.Is(err, errStopped) {
		t.Fatalf("Flush after Run returned: %v, want errStopped", err)
	}
}
