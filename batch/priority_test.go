package batch_test

import (
	"context"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/batch"
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/scheduler"
	"github.com/valyala/fasthttp"
)

// held wraps the engine's backend: it records the priority of each request the
// scheduler sends it, and holds the first one until released.
type held struct {
	scheduler.Backend
	mu      sync.Mutex
	order   []models.Priority
	first   chan struct{} // closed when the first request arrived
	release chan struct{}
}

// Refresh keeps the engine's health and slots current (scheduler.Refresher).
func (h *held) Refresh(ctx context.Context) error {
	if r, ok := h.Backend.(scheduler.Refresher); ok {
		return r.Refresh(ctx)
	}
	return nil
}

func (h *held) Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error) {
	h.mu.Lock()
	h.order = append(h.order, r.Priority)
	n := len(h.order)
	h.mu.Unlock()
	if n == 1 {
		close(h.first)
		<-h.release
	}
	return h.Backend.Open(ctx, t, r)
}

// TestInteractiveFirst: batch lines take only slots interactive work leaves idle. On an
// engine with one slot, with one batch line running and another waiting, an interactive
// request that arrives gets the slot before the waiting line.
func TestInteractiveFirst(t *testing.T) {
	h := &held{first: make(chan struct{}), release: make(chan struct{})}
	e := startEngineWith(t, 1, func(b scheduler.Backend) scheduler.Backend { h.Backend = b; return h })
	m := openManager(t, t.TempDir(), nil, batch.Options{Concurrency: 2})
	b := m.create("", m.upload("", jsonl(chatLine(0), chatLine(1), chatLine(2))), "")
	m.run(e.gw)
	<-h.first // line 0 holds the slot; line 1 waits in the scheduler's batch queue
	queued := func(n int) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for e.sched.Status()[0].Queued < n {
			if time.Now().After(deadline) {
				t.Fatalf("fewer than %d requests queued", n)
			}
			runtime.Gosched()
		}
	}
	queued(1)
	status := make(chan int, 1)
	go func() {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod(http.MethodPost)
		ctx.Request.SetRequestURI("/v1/chat/completions")
		ctx.Request.SetBodyString(`{"model":"tiny","max_tokens":4,"messages":[{"role":"user","content":"interactive"}]}`)
		e.gw.Handler()(&ctx)
		status <- ctx.Response.StatusCode()
	}()
	queued(2)
	close(h.release)
	if s := <-status; s != 200 {
		t.Fatalf("interactive request: %d", s)
	}
	m.awaitStatus("", b.ID, batch.StatusCompleted)
	h.mu.Lock()
	defer h.mu.Unlock()
	want := []models.Priority{models.PriorityBatch, models.PriorityInteractive, models.PriorityBatch, models.PriorityBatch}
	if len(h.order) != len(want) {
		t.Fatalf("order %v", h.order)
	}
	for i := range want {
		if h.order[i] != want[i] {
			t.Fatalf("the engine got %v (0 interactive, 1 batch), want %v", h.order, want)
		}
	}
}
