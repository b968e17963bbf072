package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sluice-llm/sluice/cache"
	"github.com/sluice-llm/sluice/cost"
	"github.com/sluice-llm/sluice/gateway"
	"github.com/sluice-llm/sluice/internal/bookkeeping"
	"github.com/sluice-llm/sluice/ledger"
	"github.com/sluice-llm/sluice/router"
	"github.com/sluice-llm/sluice/runtime/openai"
	"github.com/sluice-llm/sluice/scheduler"
)

// pipelineSlots is the fake engine's slot count: high enough that the scheduler admits
// every request at once (the fake decodes without limit), so the benchmark measures the
// pipeline's own cost, not queueing for slots.
const pipelineSlots = 256

// pipeline is sluice's full request path, wired as cmd/sluice's serve wires it: gateway,
// router (model "bench" -> backend "fake"), the answer cache in its default
// configuration (embedded store, semantic lookup with the built-in embedder), scheduler
// and an openai backend pointed at the fake engine, with a real Prometheus registry.
type pipeline struct {
	gw         *gateway.Server
	backend    *openai.Backend
	ln         net.Listener
	stop       context.CancelFunc
	done       chan struct{}
	books      func() // stops the ledger and removes its files
	cacheStore cache.Store
	cacheDone  chan struct{}
	cacheDir   string
}

// newPipeline builds the pipeline over the engine at upstreamAddr and marks the backend
// healthy. It does not listen; call serve for that.
func newPipeline(ctx context.Context, upstreamAddr string) (*pipeline, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	be, err := openai.New(openai.Options{Name: "fake", BaseURL: "http://" + upstreamAddr + "/v1", Slots: pipelineSlots})
	if err != nil {
		return nil, err
	}
	if err := be.Refresh(ctx); err != nil {
		be.Close()
		return nil, fmt.Errorf("bench: fake engine health check: %w", err)
	}
	// Cost accounting as in production: a meter on the engine, the accountant recording
	// every request and pricing it against the reference cloud model.
	acct := cost.NewAccountant(cost.DefaultCloudPrices(), "gpt-4o", nil)
	acct.AddEngine(cost.Engine{Name: "fake", GPU: "cpu", Meter: cost.NewMeter(0.05, nil)})
	reg.MustRegister(acct)
	sched := scheduler.New(map[string]scheduler.Backend{"fake": be}, scheduler.Options{Registry: reg, Meters: acct.Meters()})
	rt, err := router.New([]router.Entry{{Name: "bench", Backend: "fake", UpstreamModel: "bench", Kind: "chat"}})
	if err != nil {
		be.Close()
		return nil, err
	}
	// The answer cache as serve builds it by default. Every benchmark request is a new
	// question (a ticket number), so this is its miss path: hashing, the question's
	// analysis and keeping the answer.
	cacheDir, err := os.MkdirTemp("", "sluice-bench-cache-")
	if err != nil {
		be.Close()
		return nil, err
	}
	cstore, err := cache.OpenBolt(filepath.Join(cacheDir, "cache.db"), cache.StoreOptions{MaxEntries: 100_000, MaxBytes: 512 << 20})
	if err != nil {
		be.Close()
		os.RemoveAll(cacheDir)
		return nil, err
	}
	stage, err := cache.New(sched, cache.Options{Store: cstore, Semantic: true, Registry: reg})
	if err != nil {
		be.Close()
		cstore.Close()
		os.RemoveAll(cacheDir)
		return nil, err
	}
	// The ledger as serve has it by default: every request journaled before its answer
	// ends, batched into SQLite off the request path.
	dir, err := os.MkdirTemp("", "sluice-bench-ledger-")
	if err != nil {
		be.Close()
		return nil, err
	}
	store, err := ledger.OpenSQLite(filepath.Join(dir, "ledger.db"), false)
	if err != nil {
		be.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	led, err := ledger.Open(ctx, store, ledger.Options{JournalDir: filepath.Join(dir, "ledger.db.journal"), Registry: reg})
	if err != nil {
		be.Close()
		store.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	ledCtx, ledStop := context.WithCancel(context.WithoutCancel(ctx))
	ledDone := make(chan struct{})
	go func() { _ = led.Run(ledCtx); close(ledDone) }()
	books := func() { ledStop(); <-ledDone; store.Close(); os.RemoveAll(dir) }
	gw, err := gateway.New(gateway.Options{Router: rt, Scheduler: stage, Models: rt.Models, Registry: reg,
		Ready: sched.Ready, Record: bookkeeping.Record(acct, led, nil)})
	if err != nil {
		be.Close()
		books()
		cstore.Close()
		os.RemoveAll(cacheDir)
		return nil, err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	p := &pipeline{gw: gw, backend: be, stop: stop, done: make(chan struct{}), books: books, cacheStore: cstore,
		cacheDone: make(chan struct{}), cacheDir: cacheDir}
	goLabeled(TargetSluice, func() {
		sched.Run(runCtx) // periodic health probes, as in production
		close(p.done)
	})
	goLabeled(TargetSluice, func() {
		_ = stage.Run(runCtx) // stores the answers
		close(p.cacheDone)
	})
	return p, nil
}

// serve answers on a new loopback listener.
func (p *pipeline) serve() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	p.ln = ln
	goLabeled(TargetSluice, func() { _ = p.gw.Serve(ln) })
	return nil
}

func (p *pipeline) addr() string { return p.ln.Addr().String() }

func (p *pipeline) close() {
	if p.ln != nil {
		_ = p.gw.Shutdown(context.Background())
	}
	p.stop()
	<-p.done
	<-p.cacheDone
	_ = p.cacheStore.Close()
	_ = os.RemoveAll(p.cacheDir)
	p.backend.Close()
	p.books()
	p.books()
}
