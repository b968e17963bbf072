package route

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/config"
	"github.com/sluice-llm/sluice/gateway"
	"github.com/sluice-llm/sluice/internal/fakecloud"
	"github.com/sluice-llm/sluice/ledger"
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/models/tinymodel"
	"github.com/sluice-llm/sluice/overflow"
	"github.com/sluice-llm/sluice/router"
	"github.com/sluice-llm/sluice/runtime/llamacpp"
	"github.com/sluice-llm/sluice/runtime/openai"
	"github.com/sluice-llm/sluice/scheduler"
)

// The benchmark's API keys: one whose requests must stay in the EU, one unrestricted.
const (
	benchKeyEU  = "sk-bench-eu"
	benchKeyAny = "sk-bench-any"
	localModel  = "tiny"
)

// stack is sluice wired as `sluice serve` wires it with overflow on, in this process:
// gateway → router → overflow stage → scheduler → llama-server processes, with an EU and
// a US fake cloud behind runtime/openai backends.
type stack struct {
	url      string
	sched    *scheduler.Scheduler
	eu, us   *fakecloud.Server
	engines  []*llamacpp.Backend
	clouds   []*openai.Backend
	gw       *gateway.Server
	served   chan struct{}
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	slots    int
	reg      *prometheus.Registry
	stopOnce sync.Once
}

// counter sums a counter's series whose labels include the given name=value pairs.
func (s *stack) counter(name string, labels ...string) float64 {
	mfs, err := s.reg.Gather()
	if err != nil {
		return 0
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func tenantID(key string) string {
	sum := sha256.Sum256([]byte(key))
	return fmt.Sprintf("key-%x", sum[:6])
}

func startStack(ctx context.Context, c *OverflowConfig) (*stack, error) {
	model, err := ensureModel(c)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &stack{cancel: cancel, served: make(chan struct{})}
	fail := func(err error) (*stack, error) {
		s.stop()
		return nil, err
	}
	backends := map[string]scheduler.Backend{}
	var entries []router.Entry
	for i := 0; i < c.Engines; i++ {
		name := "local" + strconv.Itoa(i+1)
		b, err := llamacpp.New(llamacpp.Options{Name: name, Binary: c.LlamaServer, Model: model, Alias: localModel,
			Slots: c.SlotsPerEngine, Context: 2048, Threads: c.Threads, Args: []string{"--cache-ram", "0"}, Logger: c.Logger})
		if err != nil {
			return fail(err)
		}
		s.engines = append(s.engines, b)
		backends[name] = b
		entries = append(entries, router.Entry{Name: localModel, Backend: name, UpstreamModel: localModel, Tier: "small", ContextWindow: 2048})
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = b.Run(runCtx, 0)
		}()
	}
	s.slots = c.Engines * c.SlotsPerEngine
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer wcancel()
	for _, b := range s.engines {
		if err := b.Process().WaitReady(wctx); err != nil {
			return fail(fmt.Errorf("bench route: %w", err))
		}
		if err := b.Refresh(wctx); err != nil {
			return fail(fmt.Errorf("bench route: engine health: %w", err))
		}
	}
	cloud := fakecloud.Options{TTFT: c.CloudTTFT, TokensPerSecond: c.CloudTokensPerSecond}
	cloud.Name = "eu"
	if s.eu, err = fakecloud.Start(cloud); err != nil {
		return fail(err)
	}
	cloud.Name = "us"
	if s.us, err = fakecloud.Start(cloud); err != nil {
		return fail(err)
	}
	remote := map[string]overflow.Remote{}
	for _, cl := range []struct {
		name, region string
		srv          *fakecloud.Server
		price        overflow.Price
	}{{"cloud-eu", "eu", s.eu, overflow.Price{Input: 0.15, Output: 0.60}}, {"cloud-us", "us", s.us, overflow.Price{Input: 0.10, Output: 0.40}}} {
		b, err := openai.New(openai.Options{Name: cl.name, BaseURL: cl.srv.URL, APIKey: "sk-provider", Slots: c.CloudConcurrency})
		if err != nil {
			return fail(err)
		}
		s.clouds = append(s.clouds, b)
		remote[cl.name] = overflow.Remote{Backend: b, Region: cl.region, MaxConcurrency: c.CloudConcurrency,
			Prices: map[string]overflow.Price{"mini": cl.price}}
		entries = append(entries, router.Entry{Name: "mini", Backend: cl.name, UpstreamModel: "gpt-4o-mini", Region: cl.region,
			Tier: "small", InputPrice: cl.price.Input, OutputPrice: cl.price.Output})
	}
	rt, err := router.NewWithOptions(entries, router.Options{Tiers: []string{"small", "large"}, Remote: true})
	if err != nil {
		return fail(err)
	}
	reg := prometheus.NewRegistry()
	s.reg = reg
	s.sched = scheduler.New(backends, scheduler.Options{Registry: reg, MaxQueue: 4096, RefreshEvery: time.Second,
		SLO: [2]time.Duration{time.Duration(c.Admit * float64(c.SLO)), 0}, Engines: addressable(backends)})
	s.sched.RefreshAll(ctx)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.sched.Run(runCtx)
	}()
	stage := overflow.New(s.sched, overflow.Options{Remote: remote, Registry: reg, MaxWait: max(c.MaxWait, 0)})
	// The bench keys with their residency policies, as server.api_keys entries give them.
	var keys []ledger.ConfigKey
	for k, pol := range map[string]string{benchKeyEU: models.ResidencyEU, benchKeyAny: models.ResidencyAny} {
		keys = append(keys, ledger.ConfigKey{Digest: sha256.Sum256([]byte(k)),
			Key: &models.Key{ID: tenantID(k), Tenant: tenantID(k), Residency: pol}})
	}
	ring, err := ledger.NewKeyRing(ctx, keys, nil)
	if err != nil {
		return fail(err)
	}
	s.gw, err = gateway.New(gateway.Options{Keys: ring, Scheduler: stage, Models: rt.Models, Registry: reg, Router: rt})
	if err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	go func() { _ = s.gw.Serve(ln); close(s.served) }()
	s.url = "http://" + ln.Addr().String()
	return s, nil
}

func addressable(bs map[string]scheduler.Backend) map[string]scheduler.EngineOptions {
	m := map[string]scheduler.EngineOptions{}
	for id := range bs {
		m[id] = scheduler.EngineOptions{Addressable: true}
	}
	return m
}

// busy is the share of local slots in use now, as the scheduler counts them.
func (s *stack) busy() float64 {
	n := 0
	for _, st := range s.sched.Status() {
		n += st.InFlight
	}
	return float64(n) / float64(s.slots)
}

func (s *stack) stop() {
	s.stopOnce.Do(func() {
		if s.gw != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = s.gw.Shutdown(ctx)
			cancel()
			<-s.served
		}
		s.cancel()
		s.wg.Wait()
		for _, b := range s.engines {
			b.Close()
		}
		for _, b := range s.clouds {
			b.Close()
		}
		if s.eu != nil {
			s.eu.Close()
		}
		if s.us != nil {
			s.us.Close()
		}
	})
}

// ensureModel returns c.Model, or the tiny model generated once into the cache.
func ensureModel(c *OverflowConfig) (string, error) {
	if c.Model != "" {
		return c.Model, nil
	}
	dir := filepath.Join(config.CacheDir(config.OSEnv), "models", "bench")
	path := filepath.Join(dir, "tiny-ctx2048.gguf")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	v, err := tinymodel.LoadVocab(c.Vocab)
	if err != nil {
		return "", fmt.Errorf("bench route: vocabulary for the tiny model (run `make engines` or pass --vocab): %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "gen-*.tmp")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriter(tmp)
	err = tinymodel.Generate(bw, v, tinymodel.Options{Context: 2048})
	if err == nil {
		err = bw.Flush()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return path, err
}
