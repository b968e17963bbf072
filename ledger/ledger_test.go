package ledger

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func openTestLedger(t *testing.T, s Store, dbPath string, opts Options) *Ledger {
	t.Helper()
	opts.JournalDir = dbPath + ".journal"
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	l, err := Open(context.Background(), s, opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func countRecords(t *testing.T, s *SQLite) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(`SELECT count(*) FROM records`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAddFlushAndRun(t *testing.T) {
	s, path := openTestStore(t)
	l := openTestLedger(t, s, path, Options{BatchSize: 7, BatchInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				r := sampleRecord(l.UID(string(rune('a'+g)) + "-" + time.Duration(i).String()))
				if err := l.Add(&r); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countRecords(t, s); n != 100 {
		t.Fatalf("stored %d records, want 100", n)
	}
	if l.Pending() != 0 {
		t.Fatalf("pending %d", l.Pending())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Everything was stored: the journal is gone.
	ents, _ := os.ReadDir(path + ".journal")
	if len(ents) != 0 {
		t.Errorf("journal left behind: %v", ents)
	}
}

// TestReplayAfterCrash: a process that dies (its journal's lock released, nothing
// written to the store) loses nothing: the next ledger on the same store replays it.
func TestReplayAfterCrash(t *testing.T) {
	s, path := openTestStore(t)
	dead := openTestLedger(t, s, path, Options{})
	dead.j.maxSize = 600 // several segments
	if err := dead.j.rotate(); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		r := sampleRecord(dead.UID(time.Duration(i).String()))
		if err := dead.Add(&r); err != nil {
			t.Fatal(err)
		}
	}
	// Store a few first, as the dead process's batches would have: replay must not
	// count them twice.
	if err := s.Apply(context.Background(), []Record{dead.pending[0].rec, dead.pending[1].rec}); err != nil {
		t.Fatal(err)
	}
	// A torn record at the end (killed in the middle of a write): never acknowledged.
	torn := sampleRecord("torn")
	frame := appendFrame(nil, &torn)
	if _, _, err := dead.j.append(frame[:len(frame)-3]); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dead.j.dir, "*.log"))
	if len(segs) < 3 {
		t.Fatalf("%d segments; want several", len(segs))
	}
	dead.j.lock.Close() // what the kernel does when the process dies

	next := openTestLedger(t, s, path, Options{})
	if n := countRecords(t, s); n != 20 {
		t.Fatalf("after replay: %d records, want 20", n)
	}
	reqs, _, _ := window(t, s, "key-0123456789ab", "d", dayOf(sampleRecord("").Time))
	if reqs != 20 {
		t.Errorf("day window counts %d requests, want 20", reqs)
	}
	if _, err := os.Stat(dead.j.dir); !os.IsNotExist(err) {
		t.Errorf("replayed journal still there: %v", err)
	}
	// A live process's journal is left alone.
	r := sampleRecord(next.UID("live"))
	if err := next.Add(&r); err != nil {
		t.Fatal(err)
	}
	third := openTestLedger(t, s, path, Options{})
	if n := countRecords(t, s); n != 20 {
		t.Fatalf("a live journal was replayed: %d records", n)
	}
	if _, err := os.Stat(next.j.dir); err != nil {
		t.Fatal(err)
	}
	_ = third
}

func TestPowerDurabilityGroupsFsyncs(t *testing.T) {
	s, path := openTestStore(t)
	l := openTestLedger(t, s, path, Options{Power: true})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := sampleRecord(l.UID(time.Duration(i).String()))
			if err := l.Add(&r); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if l.j.synced != l.j.written || l.j.written != 16 {
		t.Fatalf("synced %d of %d appends", l.j.synced, l.j.written)
	}
}

func TestHardwareRows(t *testing.T) {
	s, path := openTestStore(t)
	now := time.Date(2026, 6, 15, 10, 0, 30, 0, time.UTC)
	clock := func() time.Time { return now }
	l := openTestLedger(t, s, path, Options{Pools: map[string]float64{"box": 3.6}, Now: clock})
	now = now.Add(90 * time.Second) // 10:02:00
	if err := l.flushHardware(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	// A second process on the same box reports the same minutes: no double count.
	if err := s.AddHardware(context.Background(), []HardwareCost{{Pool: "box", Minute: time.Date(2026, 6, 15, 10, 1, 0, 0, time.UTC), USD: 0.06}}); err != nil {
		t.Fatal(err)
	}
	days, err := s.PoolDays(context.Background(), now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// $3.60/h = $0.001/s over 90 s.
	if len(days) != 1 || days[0].Pool != "box" || !near(days[0].HardwareUSD, 0.09) {
		t.Fatalf("pool days = %+v", days)
	}
}

func near(a, b float64) bool { d := a - b; return d < 1e-9 && d > -1e-9 }

// TestReplayAfterHugeFields: a client controls some of a record's fields (the OpenAI
// `user`, the model name it asks for). A record with a field of megabytes must not cost
// the records journaled after it their crash safety, nor break the journal.
func TestReplayAfterHugeFields(t *testing.T) {
	for _, size := range []int{2 << 20, 5 << 20} {
		s, path := openTestStore(t)
		dead := openTestLedger(t, s, path, Options{})
		for i := range 7 {
			r := sampleRecord(dead.UID(time.Duration(i).String()))
			if i == 1 {
				r.User = string(make([]byte, size))
			}
			if err := dead.Add(&r); err != nil {
				t.Fatal(err)
			}
		}
		dead.j.lock.Close() // killed: nothing reached the store

		openTestLedger(t, s, path, Options{})
		if n := countRecords(t, s); n != 7 {
			t.Fatalf("field of %d bytes: %d of 7 acknowledged records replayed", size, n)
		}
	}
}

// TestFlushWhileSegmentsRotate: the writer deletes stored segments while requests
// append to (and rotate) the journal; every record reaches the store and only the
// current segment is left.
func TestFlushWhileSegmentsRotate(t *testing.T) {
	s, path := openTestStore(t)
	l := openTestLedger(t, s, path, Options{BatchSize: 4})
	l.mu.Lock()
	l.j.maxSize = 600
	err := l.j.rotate()
	l.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 200 {
			r := sampleRecord(l.UID(time.Duration(i).String()))
			if err := l.Add(&r); err != nil {
				t.Error(err)
			}
		}
	}()
	for range 50 {
		if err := l.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countRecords(t, s); n != 200 {
		t.Fatalf("stored %d records, want 200", n)
	}
	if segs, _ := filepath.Glob(filepath.Join(l.j.dir, "*.log")); len(segs) != 1 {
		t.Errorf("%d segments left, want the current one", len(segs))
	}
}
