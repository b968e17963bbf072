package cache

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// failPut runs a Put whose transaction fails (as on a full disk: the store's handle is
// swapped for a read-only one), then gives the store a writable handle again.
func failPut(t *testing.T, s *Bolt, es ...*Entry) {
	t.Helper()
	path := s.db.Path()
	s.db.Close()
	ro, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	s.db = ro
	if err := s.Put(context.Background(), es...); err == nil {
		t.Fatal("the put did not fail")
	}
	ro.Close()
	if s.db, err = bolt.Open(path, 0o600, &bolt.Options{FreelistType: bolt.FreelistMapType, NoFreelistSync: true}); err != nil {
		t.Fatal(err)
	}
}

func fileCount(t *testing.T, s *Bolt) int {
	t.Helper()
	n := 0
	if err := s.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(bucketLog).Stats().KeyN; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func reopen(t *testing.T, s *Bolt, o StoreOptions) *Bolt {
	t.Helper()
	path := s.db.Path()
	s.Close()
	s, err := OpenBolt(path, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestBoltFailedPut: what a failed put replaced or evicted is still in the file and stays
// tracked, so a later delete or eviction removes it and nothing comes back at a restart.
func TestBoltFailedPut(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	t.Run("replaced, then deleted", func(t *testing.T) {
		s, err := OpenBolt(filepath.Join(t.TempDir(), "c.db"), StoreOptions{})
		must(t, err)
		must(t, s.Put(ctx, boltEntry("a", "q", "v1", now)))
		failPut(t, s, boltEntry("a", "q", "v2", now))
		if got := getText(t, s, "a", "q"); got != "v1" {
			t.Fatalf("after the failed put: %q, want v1", got)
		}
		must(t, s.Put(ctx, boltEntry("a", "q", "v3", now)))
		must(t, s.Delete(ctx, TestKey("a", "m", "q")))
		s = reopen(t, s, StoreOptions{})
		if got := getText(t, s, "a", "q"); got != "<miss>" {
			t.Fatalf("the deleted entry came back after a restart: %q", got)
		}
	})
	t.Run("replaced, then evicted", func(t *testing.T) {
		s, err := OpenBolt(filepath.Join(t.TempDir(), "c.db"), StoreOptions{MaxEntries: 2})
		must(t, err)
		must(t, s.Put(ctx, boltEntry("a", "q", "v1", now)))
		failPut(t, s, boltEntry("a", "q", "v2", now))
		must(t, s.Put(ctx, boltEntry("a", "q", "v3", now.Add(time.Second))))
		must(t, s.Put(ctx, boltEntry("a", "x", "x", now.Add(2*time.Second))))
		must(t, s.Put(ctx, boltEntry("a", "y", "y", now.Add(3*time.Second)))) // evicts q
		s = reopen(t, s, StoreOptions{MaxEntries: 3})
		if got := getText(t, s, "a", "q"); got != "<miss>" {
			t.Fatalf("the evicted entry came back after a restart: %q", got)
		}
	})
	t.Run("evicting", func(t *testing.T) {
		s, err := OpenBolt(filepath.Join(t.TempDir(), "c.db"), StoreOptions{MaxEntries: 10})
		must(t, err)
		for i := range 10 {
			must(t, s.Put(ctx, boltEntry("a", fmt.Sprint("q", i), "v", now.Add(time.Duration(i)*time.Second))))
		}
		var batch []*Entry
		for i := range 5 {
			batch = append(batch, boltEntry("a", fmt.Sprint("n", i), "v", now.Add(time.Hour)))
		}
		failPut(t, s, batch...)
		if got := getText(t, s, "a", "q0"); got != "v" || s.Len() != 10 {
			t.Fatalf("after the failed put: q0 %q, %d entries; want v and 10", got, s.Len())
		}
		for i := range 5 {
			must(t, s.Put(ctx, boltEntry("a", fmt.Sprint("m", i), "v", now.Add(2*time.Hour))))
		}
		if s.Len() != 10 || fileCount(t, s) != 10 {
			t.Fatalf("the store counts %d, the file holds %d; want 10 both", s.Len(), fileCount(t, s))
		}
	})
}

// TestBoltConcurrentPuts: puts from several goroutines commit their numbers in order, so
// an entry one replaces or evicts is never written after the put that deleted it.
func TestBoltConcurrentPuts(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	s, err := OpenBolt(filepath.Join(t.TempDir(), "c.db"), StoreOptions{MaxEntries: 50})
	must(t, err)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				if err := s.Put(ctx, boltEntry("a", fmt.Sprint("q", i%60), fmt.Sprint("g", g, "i", i), now)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if s.Len() != 50 || fileCount(t, s) != 50 {
		t.Fatalf("the store counts %d, the file holds %d; want 50 both", s.Len(), fileCount(t, s))
	}
	for i := range 60 {
		must(t, s.Delete(ctx, TestKey("a", "m", fmt.Sprint("q", i))))
	}
	if s = reopen(t, s, StoreOptions{}); s.Len() != 0 {
		t.Fatalf("after deleting every key and a restart: %d entries", s.Len())
	}
}

// TestBoltNumberNearTheTop: a damaged number near the top of the range is dropped at open
// instead of making the next numbers wrap onto kept entries.
func TestBoltNumberNearTheTop(t *testing.T) {
	now := time.Now()
	path := writeFile(t, map[uint64]*Entry{1: boltEntry("victim", "q", "kept", now), math.MaxUint64: boltEntry("t", "top", "x", now)}, nil, false)
	s, err := OpenBolt(path, StoreOptions{})
	must(t, err)
	must(t, s.Put(context.Background(), boltEntry("t", "a", "a", now), boltEntry("t", "b", "b", now)))
	s = reopen(t, s, StoreOptions{})
	if got := getText(t, s, "victim", "q"); got != "kept" || s.Len() != 3 {
		t.Fatalf("victim: %q with %d entries; want kept and 3", got, s.Len())
	}
}
