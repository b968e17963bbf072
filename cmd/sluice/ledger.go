package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/config"
	"github.com/sluice-llm/sluice/cost"
	"github.com/sluice-llm/sluice/gateway"
	"github.com/sluice-llm/sluice/internal/bookkeeping"
	"github.com/sluice-llm/sluice/ledger"
	"github.com/sluice-llm/sluice/models"
)

// books is the ledger as serve wires it: the store, the ledger, the key ring, and the
// goroutines that run them.
type books struct {
	store *ledger.SQLite
	led   *ledger.Ledger
	keys  *ledger.KeyRing
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

// boxPool names this machine's hardware in the ledger: processes on one box share it.
func boxPool() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "localhost"
	}
	return "box:" + h
}

// configKeys converts server.api_keys.
func configKeys(cfg *config.Config) []ledger.ConfigKey {
	out := make([]ledger.ConfigKey, len(cfg.Server.APIKeys))
	for i, k := range cfg.Server.APIKeys {
		out[i] = ledger.ConfigKey{Digest: k.Digest(), Key: k.Policy()}
	}
	return out
}

// openBooks opens the ledger (unless disabled) and the key ring, replaying what a
// crashed process left in its journal, and starts the batch writer and key refresher.
func openBooks(ctx context.Context, cfg *config.Config, acct *cost.Accountant, reg prometheus.Registerer, log *slog.Logger) (*books, error) {
	b := &books{}
	lc := cfg.Ledger
	var store ledger.Store
	if !lc.Disabled {
		s, err := ledger.OpenSQLite(lc.Path, lc.Durability == "power")
		if err != nil {
			return nil, err
		}
		b.store, store = s, s
		led, err := ledger.Open(ctx, s, ledger.Options{JournalDir: lc.Path + ".journal", Power: lc.Durability == "power",
			BatchSize: lc.BatchSize, BatchInterval: lc.BatchInterval, Pools: acct.Pools(), Registry: reg, Logger: log})
		if err != nil {
			s.Close()
			return nil, err
		}
		b.led = led
	}
	keys, err := ledger.NewKeyRing(ctx, configKeys(cfg), store)
	if err != nil {
		b.close()
		return nil, err
	}
	b.keys = keys
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	b.stop = stop
	if b.led != nil {
		b.wg.Add(2)
		go func() {
			defer b.wg.Done()
			if err := b.led.Run(runCtx); err != nil {
				log.Error("ledger", "err", err)
			}
		}()
		go func() {
			defer b.wg.Done()
			keys.Run(runCtx, lc.KeysRefresh)
		}()
		log.Info("ledger", "path", lc.Path, "durability", lc.Durability)
	}
	return b, nil
}

// close stores what is pending and closes the ledger (after the gateway has stopped).
func (b *books) close() {
	if b.stop != nil {
		b.stop()
	}
	b.wg.Wait()
	if b.store != nil {
		b.store.Close()
	}
}

// record is the gateway's Record hook.
func (b *books) record(acct *cost.Accountant, log *slog.Logger) func(*models.Request, models.Target, *models.Usage) {
	return bookkeeping.Record(acct, b.led, log)
}

// wrap adds the budget stage around next (limits are checked just before dispatch,
// after any cache has answered what it can).
func (b *books) wrap(next gateway.Scheduler, costs []cost.Engine, cfg *config.Config, reg prometheus.Registerer) gateway.Scheduler {
	if b.led == nil {
		return next
	}
	return ledger.NewBudget(next, b.led, ledger.BudgetOptions{Pricer: bookkeeping.NewPricer(costs),
		DefaultMaxTokens: cfg.Ledger.DefaultMaxTokens, Registry: reg})
}

// options fills the gateway's key, usage and admin hooks.
func (b *books) options(o *gateway.Options) {
	o.Keys = b.keys
	o.KeyAdmin = func(ctx context.Context, method, id string, body []byte) (int, []byte, error) {
		return b.keys.ServeAdmin(ctx, method, id, body, time.Now())
	}
	if b.led != nil {
		o.Usage = b.led.Usage
	}
}

// describeAuth says at start who may call.
func (b *books) describeAuth() string {
	n := len(b.keys.List())
	if !b.keys.Required() {
		return "no API keys: authentication is off (add server.api_keys or run `sluice keys create`)"
	}
	return fmt.Sprintf("%d API keys (config and store); requests need one", n)
}
