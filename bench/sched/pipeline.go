package sched

import (
	"context"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sluice-llm/sluice/gateway"
	"github.com/sluice-llm/sluice/router"
	"github.com/sluice-llm/sluice/scheduler"
)

// pipeline is sluice's request path over a fleet, wired as cmd/sluice wires it: the
// gateway on a loopback listener, a router pool (the model on every engine), the
// scheduler with one policy (every engine addressable by slot, as llama-server is), and
// the llamacpp backends behind recorders.
type pipeline struct {
	gw    *gateway.Server
	sched *scheduler.Scheduler
	reg   *prometheus.Registry
	log   *placements
	ln    net.Listener
	stop  context.CancelFunc
	done  chan struct{}
}

func newPipeline(ctx context.Context, f *fleet, policy scheduler.Policy, noPrefixWait bool) (*pipeline, error) {
	reg := prometheus.NewRegistry()
	log := &placements{m: map[string]placement{}}
	backends := map[string]scheduler.Backend{}
	engines := map[string]scheduler.EngineOptions{}
	var entries []router.Entry
	for i, name := range f.names {
		backends[name] = &recorder{b: f.backends[i], log: log}
		engines[name] = scheduler.EngineOptions{Addressable: true}
		entries = append(entries, router.Entry{Name: modelName, Backend: name, UpstreamModel: modelName, Kind: "chat"})
	}
	rt, err := router.New(entries)
	if err != nil {
		return nil, err
	}
	// A queue long enough that no policy has a request refused: the benchmark measures
	// how long requests wait, not how many are turned away.
	sched := scheduler.New(backends, scheduler.Options{Policy: policy, Engines: engines, MaxQueue: 1 << 20, Registry: reg,
		NoPrefixWait: noPrefixWait})
	gw, err := gateway.New(gateway.Options{Router: rt, Scheduler: &submitRecorder{s: sched, log: log}, Models: rt.Models, Registry: reg,
		Ready: sched.Ready, RequestTimeout: 10 * time.Minute})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	p := &pipeline{gw: gw, sched: sched, reg: reg, log: log, ln: ln, stop: stop, done: make(chan struct{})}
	go func() {
		sched.Run(runCtx) // periodic health and slot probes, as in production
		close(p.done)
	}()
	go func() { _ = gw.Serve(ln) }()
	return p, nil
}

func (p *pipeline) url() string { return "http://" + p.ln.Addr().String() }

func (p *pipeline) close() {
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.gw.Shutdown(sctx)
	p.stop()
	<-p.done
}

// prefixStats reads the scheduler's prefix counters from its metrics: prompt blocks of
// dispatched requests and those found cached where they went.
func (p *pipeline) prefixStats() (blocks, hits float64) {
	mfs, err := p.reg.Gather()
	if err != nil {
		return 0, 0
	}
	val := func(mf *dto.MetricFamily) float64 {
		if len(mf.GetMetric()) == 0 {
			return 0
		}
		return mf.GetMetric()[0].GetCounter().GetValue()
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "sluice_scheduler_prefix_blocks_total":
			blocks = val(mf)
		case "sluice_scheduler_prefix_hit_blocks_total":
			hits = val(mf)
		}
	}
	return blocks, hits
}
