package scheduler

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/sluice-llm/sluice/models"
)

// fakeBackend is a Backend whose answers the test decides: open (if set) answers Open,
// else a stream of one chunk. It records where each request went.
type fakeBackend struct {
	mu    sync.Mutex
	cap   models.Capacity
	open  func(ctx context.Context, t models.Target) (models.Stream, error)
	calls []models.Target
}

func newFake(slots int) *fakeBackend {
	return &fakeBackend{cap: models.Capacity{Slots: slots, Healthy: true}}
}

func (f *fakeBackend) Open(ctx context.Context, t models.Target, _ *models.Request) (models.Stream, error) {
	f.mu.Lock()
	f.calls = append(f.calls, t)
	open := f.open
	f.mu.Unlock()
	if open != nil {
		return open(ctx, t)
	}
	return &fakeStream{chunks: []string{"hi"}}, nil
}

func (f *fakeBackend) Capacity() models.Capacity {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cap
}

func (f *fakeBackend) opened() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// fakeStream sends its chunks, then io.EOF (or err).
type fakeStream struct {
	chunks []string
	err    error
	closed bool
}

func (s *fakeStream) Recv() (models.Chunk, error) {
	if len(s.chunks) == 0 {
		if s.err != nil {
			return models.Chunk{}, s.err
		}
		return models.Chunk{}, io.EOF
	}
	c := models.Chunk{Text: s.chunks[0]}
	s.chunks = s.chunks[1:]
	return c, nil
}

func (s *fakeStream) Usage() models.Usage { return models.Usage{} }
func (s *fakeStream) Close() error        { s.closed = true; return nil }

func chatReq(tenant, text string) *models.Request {
	return &models.Request{Kind: models.KindChat, Model: "m", Tenant: tenant,
		Messages: []models.Message{{Role: "user", Content: text}}}
}

func target(ids ...string) models.Target {
	return models.Target{Model: "m", Candidates: cands(ids...)}
}

// drain reads a stream to its end and closes it.
func drain(t *testing.T, st models.Stream) {
	t.Helper()
	for {
		if _, err := st.Recv(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("stream: %v", err)
			}
			break
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPanicUnderLockReleasesIt: a panic while the scheduler holds its mutex (here in the
// GPU utilization hook the probe calls) must not leave the mutex held, or every later
// request would hang once something recovered from the panic.
func TestPanicUnderLockReleasesIt(t *testing.T) {
	fb := newFake(2)
	boom := true
	s := New(map[string]Backend{"a": fb}, Options{GPUUtil: func(string) float64 {
		if boom {
			panic("gpu probe failed")
		}
		return 0
	}})
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the hook's panic did not reach the caller")
			}
		}()
		s.RefreshAll(context.Background())
	}()
	if !s.mu.TryLock() {
		t.Fatal("the scheduler's mutex stayed locked after a recovered panic")
	}
	s.mu.Unlock()
	boom = false
	st, err := s.Open(context.Background(), target("a"), chatReq("t", "hello"))
	if err != nil {
		t.Fatal(err)
	}
	drain(t, st)
}
