package sched

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/sluice-llm/sluice/config"
	"github.com/sluice-llm/sluice/gateway"
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/models/tinymodel"
	"github.com/sluice-llm/sluice/runtime/llamacpp"
	"github.com/sluice-llm/sluice/scheduler"
)

// modelName is what the engines are called by (alias) and what clients ask for.
const modelName = "tiny"

// ensureModel returns the GGUF to run: c.Model, or a model with a context of at least
// c.Context in the rig's shape, generated once into the cache (generation is
// deterministic, so the file name says all of it).
func ensureModel(c *Config) (string, error) {
	if c.Model != "" {
		return c.Model, nil
	}
	ctxLen := max(2048, c.Context)
	opts := tinymodel.Options{Context: ctxLen}
	name := "tiny-ctx" + strconv.Itoa(ctxLen) + ".gguf"
	if !c.Quick {
		opts.Dim, opts.Layers, opts.FF = c.ModelDim, c.ModelLayers, c.ModelFF
		opts.Heads = c.ModelDim / 64
		opts.Name = "sluice-bench-prefill"
		name = fmt.Sprintf("prefill-d%d-l%d-ff%d-ctx%d.gguf", opts.Dim, opts.Layers, opts.FF, ctxLen)
	}
	dir := filepath.Join(config.CacheDir(config.OSEnv), "models", "bench")
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	v, err := tinymodel.LoadVocab(c.Vocab)
	if err != nil {
		return "", fmt.Errorf("bench sched: vocabulary for the generated model (run `make engines` or pass --vocab): %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "gen-*.tmp")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	bw := bufio.NewWriter(tmp)
	err = tinymodel.Generate(bw, v, opts)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return "", fmt.Errorf("bench sched: generate the model: %w", err)
	}
	return path, nil
}

// fleet is a set of llama-server processes supervised for one policy's run (or the
// calibration). stop kills them all; it is safe to call more than once.
type fleet struct {
	names    []string
	backends []*llamacpp.Backend
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	once     sync.Once
}

// startFleet starts c.Engines fresh llama-server processes and waits until all are
// ready. On error every process already started is stopped.
func startFleet(ctx context.Context, c *Config, model string) (*fleet, error) {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f := &fleet{cancel: cancel}
	var args []string
	if c.CacheRAM >= 0 {
		args = append(args, "--cache-ram", strconv.Itoa(c.CacheRAM))
	}
	args = append(args, c.EngineArgs...)
	for i := range c.Engines {
		name := "e" + strconv.Itoa(i+1)
		b, err := llamacpp.New(llamacpp.Options{
			Name: name, Binary: c.LlamaServer, Model: model, Alias: modelName, Slots: c.SlotsPerEngine,
			Context: c.Context, Threads: c.Threads, Args: args, Logger: c.Logger,
		})
		if err != nil {
			f.stop()
			return nil, err
		}
		f.names = append(f.names, name)
		f.backends = append(f.backends, b)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			_ = b.Run(runCtx, 0)
		}()
	}
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer wcancel()
	for _, b := range f.backends {
		if err := b.Process().WaitReady(wctx); err != nil {
			f.stop()
			return nil, fmt.Errorf("bench sched: %w", err)
		}
	}
	for _, b := range f.backends {
		if err := b.Refresh(wctx); err != nil {
			f.stop()
			return nil, fmt.Errorf("bench sched: engine health: %w", err)
		}
	}
	return f, nil
}

// stop ends every process (SIGTERM, then SIGKILL) and waits for them.
func (f *fleet) stop() {
	f.once.Do(func() {
		f.cancel()
		f.wg.Wait()
		for _, b := range f.backends {
			b.Close()
		}
	})
}

// placement is where the scheduler sent a request, and when.
type placement struct {
	engine     string
	slot       int       // -1: the engine chose (no id_slot sent)
	submitted  time.Time // the gateway handed the request to the scheduler
	dispatched time.Time // the scheduler opened it on the engine (zero: never)
}

// queuedAfter is how long a request must wait between submission and dispatch to count
// as dispatched from the scheduler's queue (the fast path takes microseconds).
const queuedAfter = 2 * time.Millisecond

// queued reports whether the request waited in the scheduler's queue.
func (p placement) queued() bool { return p.dispatched.Sub(p.submitted) > queuedAfter }

// placements records, by request id, where each request went.
type placements struct {
	mu sync.Mutex
	m  map[string]placement
}

func (p *placements) submit(id string, at time.Time) {
	p.mu.Lock()
	pl := p.m[id]
	pl.submitted = at
	p.m[id] = pl
	p.mu.Unlock()
}

func (p *placements) dispatch(id, engine string, slot int, at time.Time) {
	p.mu.Lock()
	pl := p.m[id]
	pl.engine, pl.slot, pl.dispatched = engine, slot, at
	p.m[id] = pl
	p.mu.Unlock()
}

func (p *placements) get(id string) (placement, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pl, ok := p.m[id]
	return pl, ok && !pl.dispatched.IsZero()
}

// submitRecorder is the scheduler as the gateway sees it, noting when each request is
// handed over (so that queueing in the scheduler can be told from the fast path).
type submitRecorder struct {
	s   gateway.Scheduler
	log *placements
}

func (s *submitRecorder) Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error) {
	s.log.submit(r.ID, time.Now())
	return s.s.Open(ctx, t, r)
}

// recorder is a Backend that notes each placement (engine, slot, dispatch time) before
// passing the request on: the benchmark's view into the scheduler's decisions.
type recorder struct {
	b   *llamacpp.Backend
	log *placements
}

var (
	_ scheduler.Backend   = (*recorder)(nil)
	_ scheduler.Refresher = (*recorder)(nil)
)

func (r *recorder) Open(ctx context.Context, t models.Target, req *models.Request) (models.Stream, error) {
	slot := -1
	if t.HasSlot {
		slot = t.Slot
	}
	r.log.dispatch(req.ID, t.Backend, slot, time.Now())
	return r.b.Open(ctx, t, req)
}

func (r *recorder) Capacity() models.Capacity { return r.b.Capacity() }

func (r *recorder) Refresh(ctx context.Context) error { return r.b.Refresh(ctx) }

// tokenize counts tokens on the fleet's first engine.
func (f *fleet) tokenize(ctx context.Context, text string) (int, error) {
	if len(f.backends) == 0 {
		return 0, errors.New("no engine")
	}
	return f.backends[0].Tokenize(ctx, text)
}

// pids are the engines' process ids (0 for one not running).
func (f *fleet) pids() []int {
	out := make([]int, len(f.backends))
	for i, b := range f.backends {
		out[i] = b.Process().PID()
	}
	return out
}
