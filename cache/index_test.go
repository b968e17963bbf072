package cache

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func testScope(i int) Scope {
	var s Scope
	binary.BigEndian.PutUint64(s[:], uint64(i)+1)
	return s
}

func testIndexKey(i int) Key {
	var k Key
	binary.BigEndian.PutUint64(k[8:], uint64(i)+1)
	return k
}

// TestIndexFreesRemovedEntries: an index whose entries churn (expire, are replaced or
// evicted) holds memory for its live entries only. Scopes are per conversation, so
// a scope emptied for good must go, and a small (flat) scope must not keep the vectors
// of entries long gone.
func TestIndexFreesRemovedEntries(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const dim = 16
	x := NewIndex(dim)
	// Many one-entry scopes (one per conversation), all removed again.
	for i := 0; i < 1000; i++ {
		k := testIndexKey(i)
		x.Add(testScope(i), k, "q", 1, randomUnit(r, dim), time.Time{})
		x.Remove(k)
	}
	x.mu.RLock()
	scopes := len(x.sc)
	x.mu.RUnlock()
	if scopes != 0 {
		t.Errorf("%d empty scopes kept after every entry was removed", scopes)
	}
	// One small scope whose few entries keep being replaced (a new answer for the same
	// key) and removed: its storage stays near its live size.
	s := testScope(-1)
	for i := 0; i < 5000; i++ {
		k := testIndexKey(i % 8)
		x.Add(s, k, "q", uint64(i), randomUnit(r, dim), time.Time{})
		if i%3 == 0 {
			x.Remove(testIndexKey((i + 4) % 8))
		}
	}
	x.mu.RLock()
	si := x.sc[s]
	x.mu.RUnlock()
	si.mu.RLock()
	nodes, vecs, live := len(si.nodes), len(si.vecs), si.live
	si.mu.RUnlock()
	if nodes > 4*live+64 || vecs > dim*(4*live+64) {
		t.Errorf("a scope with %d live entries holds %d nodes and %d floats", live, nodes, vecs)
	}
	if got := x.Search(nil, s, randomUnit(r, dim), 8); len(got) != live {
		t.Errorf("search found %d entries, %d live", len(got), live)
	}
}

// TestIndexConcurrentAddRemove: entries added while their scope empties are not lost.
func TestIndexConcurrentAddRemove(t *testing.T) {
	const dim = 8
	x := NewIndex(dim)
	s := testScope(7)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 9))
			for i := 0; i < 2000; i++ {
				k := testIndexKey(g*10000 + i)
				x.Add(s, k, "q", 1, randomUnit(r, dim), time.Time{})
				if i%2 == 0 {
					x.Remove(k)
				}
			}
		}()
	}
	wg.Wait()
	if got, want := len(x.Search(nil, s, randomUnit(rand.New(rand.NewPCG(1, 1)), dim), 8)), 8; got != want {
		t.Errorf("search found %d entries, want %d", got, want)
	}
	if n := x.Len(); n != 4*1000 {
		t.Errorf("Len %d, want %d", n, 4000)
	}
	x.mu.RLock()
	si := x.sc[s]
	x.mu.RUnlock()
	if si == nil || si.live != 4000 {
		t.Fatalf("scope lost entries: %+v", si != nil)
	}
}
