package bench

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
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
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/overflow"
	"github.com/sluice-llm/sluice/router"
	"github.com/sluice-llm/sluice/runtime/openai"
	"github.com/sluice-llm/sluice/scheduler"
)

// pipelineSlots is the fake engine's slot count: high enough that the scheduler admits
// every request at once (the fake decodes without limit), so the benchmark measures the
// pipeline's own cost, not queueing for slots.
const pipelineSlots = 256

// pipeline is sluice's full request path, wired as cmd/sluice's serve wires it with its
// default configuration: gateway (API keys from a key ring, the ledger's Record hook),
// router (model "bench" -> backend "fake"), the answer cache (embedded store, semantic
// lookup with the built-in embedder), the budget stage (the key's rate limits, set high
// enough never to refuse), the overflow stage (no cloud target: it passes through),
// scheduler and an openai backend pointed at the fake engine, with a real Prometheus
// registry. Compression is off by default in serve, and here.
type pipeline struct {
	gw         *gateway.Server
	backend    *openai.Backend
	ln         net.Listener
	stop       context.CancelFunc
	done       chan struct{}
	books      func() // stops the ledger and removes its files
	cacheDone  chan struct{}
	cacheClose func() // closes the cache's store and removes its file (nil: no cache)
}

// newPipeline builds the pipeline over the engine at upstreamAddr and marks the backend
// healthy; requests must carry apiKey ("": authentication off). It does not listen;
// call serve for that.
func newPipeline(ctx context.Context, upstreamAddr string, o HopOptions) (_ *pipeline, err error) {
	var undo []func() // on failure, run in reverse
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	slots := pipelineSlots
	if o.Slots > 0 {
		slots = o.Slots
	}
	be, err := openai.New(openai.Options{Name: "fake", BaseURL: "http://" + upstreamAddr + "/v1", Slots: slots})
	if err != nil {
		return nil, err
	}
	undo = append(undo, be.Close)
	if err := be.Refresh(ctx); err != nil {
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
		return nil, err
	}

	// The ledger as serve has it by default: every request journaled before its answer
	// ends, batched into SQLite off the request path; the key ring on the same store.
	dir, err := os.MkdirTemp("", "sluice-bench-ledger-")
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { os.RemoveAll(dir) })
	store, err := ledger.OpenSQLite(filepath.Join(dir, "ledger.db"), false)
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { store.Close() })
	led, err := ledger.Open(ctx, store, ledger.Options{JournalDir: filepath.Join(dir, "ledger.db.journal"), Registry: reg})
	if err != nil {
		return nil, err
	}
	keys, err := benchKeys(ctx, o.APIKey, o.KeyLimits, store)
	if err != nil {
		return nil, err
	}

	// The stages, innermost first as serve builds them: overflow (no cloud target: it
	// passes through), the budget stage (the key's limits), the answer cache.
	var chain gateway.Scheduler = overflow.New(sched, overflow.Options{Registry: reg})
	chain = ledger.NewBudget(chain, led, ledger.BudgetOptions{Pricer: bookkeeping.NewPricer(nil), Registry: reg})
	// The answer cache as serve builds it by default. Every benchmark request is a new
	// question (a ticket number), so this is its miss path: hashing, the question's
	// analysis and keeping the answer.
	var (
		stage      *cache.Stage
		cacheClose func()
	)
	if !o.NoCache {
		cacheDir, err := os.MkdirTemp("", "sluice-bench-cache-")
		if err != nil {
			return nil, err
		}
		undo = append(undo, func() { os.RemoveAll(cacheDir) })
		cstore, err := cache.OpenBolt(filepath.Join(cacheDir, "cache.db"), cache.StoreOptions{MaxEntries: 100_000, MaxBytes: 512 << 20})
		if err != nil {
			return nil, err
		}
		undo = append(undo, func() { cstore.Close() })
		if stage, err = cache.New(chain, cache.Options{Store: cstore, Semantic: true, Registry: reg}); err != nil {
			return nil, err
		}
		chain = stage
		cacheClose = func() { cstore.Close(); os.RemoveAll(cacheDir) }
	}
	gw, err := gateway.New(gateway.Options{Router: rt, Scheduler: chain, Models: rt.Models, Registry: reg,
		Ready: sched.Ready, Record: bookkeeping.Record(acct, led, nil), Keys: keys})
	if err != nil {
		return nil, err
	}

	ledCtx, ledStop := context.WithCancel(context.WithoutCancel(ctx))
	ledDone := make(chan struct{})
	go func() { _ = led.Run(ledCtx); close(ledDone) }()
	books := func() { ledStop(); <-ledDone; store.Close(); os.RemoveAll(dir) }
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	p := &pipeline{gw: gw, backend: be, stop: stop, done: make(chan struct{}), books: books, cacheDone: make(chan struct{}),
		cacheClose: cacheClose}
	goLabeled(TargetSluice, func() {
		sched.Run(runCtx) // periodic health probes, as in production
		close(p.done)
	})
	goLabeled(TargetSluice, func() {
		if stage != nil {
			_ = stage.Run(runCtx) // stores the answers
		}
		close(p.cacheDone)
	})
	return p, nil
}

// benchKeys is the key ring: apiKey, with a tenant and (limited) rate limits that never
// refuse at the benchmark's rates (so the budget stage does its work for every request),
// or no key at all when apiKey is empty.
func benchKeys(ctx context.Context, apiKey string, limited bool, store ledger.Store) (*ledger.KeyRing, error) {
	var cks []ledger.ConfigKey
	if apiKey != "" {
		d := sha256.Sum256([]byte(apiKey))
		k := &models.Key{ID: models.KeyID(d), Name: "bench", Tenant: "bench", Residency: models.ResidencyAny}
		if limited {
			k.RequestsPerMinute, k.TokensPerMinute = 100_000_000, 1_000_000_000_000
		}
		cks = append(cks, ledger.ConfigKey{Digest: d, Key: k})
	}
	return ledger.NewKeyRing(ctx, cks, store)
}

// newAPIKey returns a random API key.
func newAPIKey() (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "sk-bench-" + hex.EncodeToString(b[:]), nil
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
	if p.cacheClose != nil {
		p.cacheClose()
	}
	p.backend.Close()
	p.books()
}
