package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/batch"
	"github.com/sluice-llm/sluice/config"
	"github.com/sluice-llm/sluice/gateway"
)

var (
	_ gateway.Batches = (*batch.Manager)(nil)
	_ batch.Executor  = (*gateway.Server)(nil)
)

// batches is the Batch API wired: its store, and the runner's lifetime.
type batches struct {
	m      *batch.Manager
	cancel context.CancelFunc
	done   chan struct{}
}

// openBatches opens the Batch API's store (nil when batch.enabled is false).
func openBatches(ctx context.Context, cfg *config.Config, reg prometheus.Registerer, log *slog.Logger) (*batches, error) {
	bc := cfg.Batch
	if !bc.On() {
		return nil, nil
	}
	m, err := batch.Open(ctx, batch.Options{Dir: bc.Dir, MaxFileBytes: bc.MaxFileBytes, MaxLines: bc.MaxLines,
		MaxLineBytes: cfg.Server.MaxBodyBytes,
		Concurrency:  bc.Concurrency, RetryBackoff: bc.RetryBackoff, MaxRetryBackoff: bc.MaxRetryBackoff,
		DrainTimeout: cfg.Server.ShutdownTimeout, Registerer: reg, Logger: log})
	if errors.Is(err, batch.ErrLocked) {
		log.Warn("batch API off: another sluice process serves batches from this directory (set batch.dir)", "dir", bc.Dir)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	log.Info("batch API", "dir", bc.Dir, "concurrency", bc.Concurrency)
	return &batches{m: m}, nil
}

// api is what the gateway serves /v1/files and /v1/batches with (nil: off).
func (b *batches) api() gateway.Batches {
	if b == nil {
		return nil
	}
	return b.m
}

// start runs the batches' lines through exec (the gateway) until stop.
func (b *batches) start(exec batch.Executor, log *slog.Logger) {
	if b == nil || b.done != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel, b.done = cancel, make(chan struct{})
	go func() {
		defer close(b.done)
		if err := b.m.Run(ctx, exec); err != nil {
			log.Error("batch runner stopped", "err", err)
		}
	}()
}

// beginStop stops starting lines now; their drain then runs beside the gateway's, under
// the same server.shutdown_timeout, instead of after it.
func (b *batches) beginStop() {
	if b != nil && b.done != nil {
		b.cancel()
	}
}

// stop lets the lines in flight finish (up to server.shutdown_timeout) and closes the
// store. Call it before the engines stop.
func (b *batches) stop() {
	if b == nil {
		return
	}
	if b.done != nil {
		b.cancel()
		<-b.done
	}
	b.m.Close()
}
