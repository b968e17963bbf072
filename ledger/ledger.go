package ledger

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/models"
)

// Options configure a Ledger.
type Options struct {
	// JournalDir holds the write-ahead journals (for SQLite: the database path plus
	// ".journal"). Every process sharing a store must use the same one.
	JournalDir string
	// Power: a record is fsynced before its request is acknowledged (see journal).
	Power bool
	// BatchSize and BatchInterval bound the records in one store transaction and how
	// long one waits (defaults 512 and 200ms).
	BatchSize     int
	BatchInterval time.Duration
	// Pools are the hardware pools billed by the hour (the box, remote engines with a
	// price per hour): name -> USD per hour. Their cost is recorded minute by minute for
	// effective cost.
	Pools    map[string]float64
	Registry prometheus.Registerer
	Logger   *slog.Logger
	Now      func() time.Time // default time.Now
}

// Ledger records every request: Add appends it to a journal before the request is
// acknowledged, and a background loop (Run) writes the journal's records to the store
// in batches.
type Ledger struct {
	store  Store
	opts   Options
	prefix string // makes record UIDs unique across processes
	m      *metrics

	mu      sync.Mutex // serialises journal appends with pending, in the same order
	j       *journal
	pending []pending
	closed  bool

	flushMu sync.Mutex // one batch at a time
	kick    chan struct{}
	started time.Time
	hwDone  time.Time // hardware cost recorded up to here
}

type pending struct {
	rec Record
	seg uint64
}

// Open starts a ledger over store: it replays the journals of processes that died
// (records they acknowledged and did not store yet) and opens this process's journal.
func Open(ctx context.Context, store Store, opts Options) (*Ledger, error) {
	if opts.JournalDir == "" {
		return nil, fmt.Errorf("ledger: JournalDir is required")
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 512
	}
	if opts.BatchInterval <= 0 {
		opts.BatchInterval = 200 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	l := &Ledger{store: store, opts: opts, prefix: hex.EncodeToString(b[:]) + "-", kick: make(chan struct{}, 1)}
	l.m = newMetrics(opts.Registry, l)
	j, err := openJournal(opts.JournalDir, opts.Power)
	if err != nil {
		return nil, err
	}
	l.j = j
	if err := l.replay(ctx); err != nil {
		j.close(true)
		return nil, err
	}
	l.started = opts.Now()
	l.hwDone = l.started
	return l, nil
}

// Store returns the ledger's store.
func (l *Ledger) Store() Store { return l.store }

// UID returns the ledger's id for a request: unique across processes and restarts.
func (l *Ledger) UID(requestID string) string { return l.prefix + requestID }

// replay stores the records of dead processes' journals.
func (l *Ledger) replay(ctx context.Context) error {
	n, err := replayOrphans(l.opts.JournalDir, l.j.dir, l.opts.BatchSize, func(recs []Record) error {
		return l.store.Apply(ctx, recs)
	})
	if n > 0 {
		l.m.replayed.Add(float64(n))
		l.opts.Logger.Info("ledger: stored the records of a stopped process's journal", "records", n)
	}
	if err != nil {
		return fmt.Errorf("ledger: replay: %w", err)
	}
	return nil
}

// Add records a finished request. When it returns, the record has been written to the
// operating system (a crash of sluice cannot lose it) and, with Options.Power, to the
// disk; the store gets it in the next batch. Callers acknowledge the request (send the
// end of its answer) only after Add returns. The error, if any, says the journal could
// not be written: the record still goes to the store, but is not crash-safe.
func (l *Ledger) Add(r *Record) error {
	clipFields(r)
	bp := framePool.Get().(*[]byte)
	frame := appendFrame((*bp)[:0], r)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		framePool.Put(bp)
		return fmt.Errorf("ledger: closed")
	}
	seg, seq, err := l.j.append(frame)
	l.pending = append(l.pending, pending{rec: *r, seg: seg})
	n := len(l.pending)
	l.mu.Unlock()
	*bp = frame[:0]
	framePool.Put(bp)
	if err == nil && l.opts.Power {
		err = l.j.sync(seq)
	}
	l.m.records.Inc()
	if err != nil {
		l.m.journalErrors.Inc()
	}
	if n >= l.opts.BatchSize {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	return err
}

// maxField bounds each text field of a record. Some come from clients (the OpenAI
// `user`, the model asked for): without a bound, one request could make a frame larger
// than a journal segment or than replay accepts, and cost every record after it in its
// segment its crash safety.
const maxField = 1024

// clipFields cuts r's text fields to maxField bytes (at a UTF-8 boundary).
func clipFields(r *Record) {
	for _, p := range [...]*string{&r.UID, &r.RequestID, &r.KeyID, &r.Tenant, &r.User, &r.Feature, &r.Kind, &r.Model,
		&r.Served, &r.Target, &r.Region, &r.Pool, &r.Cache, &r.ReferenceModel, &r.ServedRefModel} {
		if len(*p) > maxField {
			*p = strings.ToValidUTF8((*p)[:maxField], "")
		}
	}
}

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Pending is how many records wait for the store.
func (l *Ledger) Pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending)
}

// Run writes records to the store in batches until ctx ends, then stores what is still
// pending and closes the journal. It also records the pools' hardware cost and replays
// the journals of processes that die meanwhile.
func (l *Ledger) Run(ctx context.Context) error {
	tick := time.NewTicker(l.opts.BatchInterval)
	defer tick.Stop()
	lastScan := l.opts.Now()
	for {
		select {
		case <-ctx.Done():
			return l.shutdown()
		case <-tick.C:
		case <-l.kick:
		}
		if err := l.Flush(ctx); err != nil && ctx.Err() == nil {
			l.m.storeErrors.Inc()
			l.opts.Logger.Warn("ledger: store write failed; records stay in the journal and are retried", "err", err)
		}
		now := l.opts.Now()
		if now.Sub(l.hwDone) >= 10*time.Second {
			if err := l.flushHardware(ctx, now); err != nil && ctx.Err() == nil {
				l.opts.Logger.Warn("ledger: hardware cost not recorded", "err", err)
			}
		}
		if now.Sub(lastScan) >= time.Minute {
			lastScan = now
			if err := l.replay(ctx); err != nil && ctx.Err() == nil {
				l.opts.Logger.Warn("ledger: replay failed", "err", err)
			}
		}
	}
}

func (l *Ledger) shutdown() error {
	ctx := context.Background()
	err := l.Flush(ctx)
	if herr := l.flushHardware(ctx, l.opts.Now()); err == nil {
		err = herr
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.j.close(len(l.pending) == 0)
	if err != nil {
		return fmt.Errorf("ledger: final write (the journal is kept and replayed at the next start): %w", err)
	}
	return nil
}

// Flush writes every pending record to the store now.
func (l *Ledger) Flush(ctx context.Context) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	for {
		l.mu.Lock()
		n := min(len(l.pending), l.opts.BatchSize)
		if n == 0 {
			l.mu.Unlock()
			return nil
		}
		batch := make([]Record, n)
		for i := range batch {
			batch[i] = l.pending[i].rec
		}
		l.mu.Unlock()
		start := time.Now()
		if err := l.store.Apply(ctx, batch); err != nil {
			return err
		}
		l.m.batchSeconds.Observe(time.Since(start).Seconds())
		l.mu.Lock()
		rest := copy(l.pending, l.pending[n:])
		clear(l.pending[rest:])
		l.pending = l.pending[:rest]
		keep := l.j.seg
		if rest > 0 {
			keep = l.pending[0].seg
		}
		l.mu.Unlock()
		l.j.release(keep)
		if rest < l.opts.BatchSize {
			return nil
		}
	}
}

// flushHardware records each pool's cost per minute from the start of this process to
// now (the larger figure wins, so processes on the same box do not add up).
func (l *Ledger) flushHardware(ctx context.Context, now time.Time) error {
	if len(l.opts.Pools) == 0 || !now.After(l.started) {
		return nil
	}
	var rows []HardwareCost
	first := time.Unix(minuteOf(l.hwDone), 0)
	for m := first; m.Before(now); m = m.Add(time.Minute) {
		lo, hi := maxTime(m, l.started), minTime(m.Add(time.Minute), now)
		if !hi.After(lo) {
			continue
		}
		sec := hi.Sub(lo).Seconds()
		for pool, perHour := range l.opts.Pools {
			rows = append(rows, HardwareCost{Pool: pool, Minute: m, USD: perHour / 3600 * sec})
		}
	}
	if err := l.store.AddHardware(ctx, rows); err != nil {
		return err
	}
	l.hwDone = now
	return nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// NewRecord fills a record with what the request, its target and its usage say; the
// caller adds costs, references and the pool.
func (l *Ledger) NewRecord(r *models.Request, t models.Target, u *models.Usage) Record {
	rec := Record{UID: l.UID(r.ID), RequestID: r.ID, Time: r.Arrived, Tenant: r.Tenant, User: r.User, Feature: r.Feature,
		Kind: r.Kind.String(), Model: r.Model, Served: t.Model, Target: t.Backend, Region: r.Trace.Region,
		Cache: r.Trace.Cache, PromptTokens: u.PromptTokens, PromptTokensBefore: u.PromptTokens,
		CompletionTokens: u.CompletionTokens, CachedTokens: u.CachedTokens, Estimated: u.Estimated,
		Latency: r.Trace.Latency, TTFT: r.Trace.TTFT, Status: r.Trace.Status}
	if r.Key != nil {
		rec.KeyID = r.Key.ID
	}
	if rec.Region == "" {
		rec.Region = t.Region
	}
	if b := r.Trace.PromptTokensBefore; b > 0 && r.Trace.PromptTokensAfter > 0 {
		// Compression ran: the engine saw the compressed prompt; the client sent more.
		rec.PromptTokensBefore = u.PromptTokens + b - r.Trace.PromptTokensAfter
	}
	if rec.Status == 0 {
		rec.Status = 200
	}
	return rec
}
