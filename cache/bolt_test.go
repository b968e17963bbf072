package cache

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func boltEntry(tenant, question, answer string, created time.Time) *Entry {
	e := &Entry{Tenant: tenant, Model: "m", Question: question,
		Answer:  Answer{Role: "assistant", Text: answer, FinishReason: "stop"},
		Created: created.Round(0), Expires: created.Add(24 * time.Hour).Round(0)}
	e.Key = TestKey(tenant, "m", question)
	return e
}

// logKeys is what the file's log holds: entry number → the entry's key and answer.
func logKeys(t *testing.T, db *bolt.DB) map[uint64]string {
	t.Helper()
	got := map[uint64]string{}
	err := db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketEntries) != nil {
			return fmt.Errorf("the older layout's bucket is still there")
		}
		return tx.Bucket(bucketLog).ForEach(func(k, v []byte) error {
			var e Entry
			if err := e.UnmarshalBinary(v); err != nil {
				return err
			}
			got[binary.BigEndian.Uint64(k)] = e.Tenant + "/" + e.Question + "=" + e.Answer.Text
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func getText(t *testing.T, s *Bolt, tenant, question string) string {
	t.Helper()
	e, err := s.Get(context.Background(), TestKey(tenant, "m", question))
	if err != nil {
		t.Fatal(err)
	}
	if e == nil {
		return "<miss>"
	}
	return e.Answer.Text
}

// TestBoltReopen: replaced and deleted entries leave nothing behind in the file, and the
// numbers given after a restart never overwrite an entry kept from before it.
func TestBoltReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	now := time.Now()
	s, err := OpenBolt(path, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if err := s.Put(ctx, boltEntry("a", fmt.Sprint("q", i), "first", now.Add(time.Duration(i)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	// Replacements, one of them twice in one batch, and deletions.
	if err := s.Put(ctx, boltEntry("a", "q1", "second", now), boltEntry("a", "q2", "second", now), boltEntry("a", "q1", "third", now)); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"q38", "q39", "nothing"} {
		if err := s.Delete(ctx, TestKey("a", "m", q)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(logKeys(t, s.db)); n != 38 || s.Len() != 38 {
		t.Fatalf("file holds %d entries, the store counts %d; want 38 both", n, s.Len())
	}
	s.Close()

	if s, err = OpenBolt(path, StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Len() != 38 {
		t.Fatalf("after reopening: %d entries, want 38", s.Len())
	}
	for i := range 10 {
		if err := s.Put(ctx, boltEntry("a", fmt.Sprint("new", i), "after", now)); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{"q0": "first", "q1": "third", "q2": "second", "q37": "first", "q38": "<miss>", "new9": "after"}
	for q, w := range want {
		if got := getText(t, s, "a", q); got != w {
			t.Errorf("%s: %q, want %q", q, got, w)
		}
	}
	if n := len(logKeys(t, s.db)); n != 48 || s.Len() != 48 {
		t.Fatalf("file holds %d entries, the store counts %d; want 48 both", n, s.Len())
	}
}

// TestBoltMovesOlderLayout: a file written before the log (entries under their keys)
// opens with its live entries moved into the log, in creation order, and its corrupt and
// expired ones dropped.
func TestBoltMovesOlderLayout(t *testing.T) {
	now := time.Now()
	var older []*Entry
	for i := range 20 {
		// Created newest first, whatever the keys' order: the move must sort.
		older = append(older, boltEntry("t", fmt.Sprint("q", i), fmt.Sprint("answer ", i), now.Add(-time.Duration(i)*time.Minute)))
	}
	vals := encoded(append(older, boltEntry("t", "old", "gone", now.Add(-48*time.Hour)))...)
	vals[TestKey("t", "m", "corrupt")] = []byte{9, 9, 9}
	path := writeFile(t, nil, vals, false)

	// A bound of 15: the 5 oldest created (q15..q19) go.
	s, err := OpenBolt(path, StoreOptions{MaxEntries: 15})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Len() != 15 {
		t.Fatalf("%d entries, want 15", s.Len())
	}
	for i := range 20 {
		want := fmt.Sprint("answer ", i)
		if i >= 15 {
			want = "<miss>"
		}
		if got := getText(t, s, "t", fmt.Sprint("q", i)); got != want {
			t.Errorf("q%d: %q, want %q", i, got, want)
		}
	}
	logged := logKeys(t, s.db)
	if len(logged) != 15 {
		t.Fatalf("the log holds %d entries, want 15: %v", len(logged), logged)
	}
	// Numbered in creation order: the expired entry 1 (dropped at load), q19..q15 2 to 6
	// (evicted by the bound), then the oldest kept (q14) and the newest (q0) last.
	if logged[7] != "t/q14=answer 14" || logged[21] != "t/q0=answer 0" {
		t.Fatalf("log order: %v", logged)
	}
}

// TestBoltDuplicateKeyAtOpen: a key under two numbers in the file (this version's puts
// delete what they replace in their own transaction; a damaged or hand-made file) opens
// as the later one.
func TestBoltDuplicateKeyAtOpen(t *testing.T) {
	now := time.Now()
	s, err := OpenBolt(writeFile(t, map[uint64]*Entry{9: boltEntry("t", "q", "newer", now), 5: boltEntry("t", "q", "older", now)}, nil, false), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := getText(t, s, "t", "q"); got != "newer" || s.Len() != 1 {
		t.Fatalf("got %q with %d entries, want the newer one alone", got, s.Len())
	}
	if logged := logKeys(t, s.db); len(logged) != 1 || logged[9] != "t/q=newer" {
		t.Fatalf("log: %v", logged)
	}
	// The next number follows the highest in the file.
	if err := s.Put(context.Background(), boltEntry("t", "r", "later", now)); err != nil {
		t.Fatal(err)
	}
	if logged := logKeys(t, s.db); logged[10] != "t/r=later" {
		t.Fatalf("log: %v", logged)
	}
}

// TestBoltPurgeFindsUntracked: a purge removes every entry of the tenant in the file,
// even one the in-memory order does not know (it would come back at the next start).
func TestBoltPurgeFindsUntracked(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	s, err := OpenBolt(filepath.Join(t.TempDir(), "c.db"), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 5 {
		if err := s.Put(ctx, boltEntry("a", fmt.Sprint("q", i), "x", now), boltEntry("b", fmt.Sprint("q", i), "y", now)); err != nil {
			t.Fatal(err)
		}
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		v, _ := boltEntry("a", "untracked", "z", now).MarshalBinary()
		return tx.Bucket(bucketLog).Put(seqKey(1000), v)
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.Purge(ctx, "a", "")
	if err != nil || n != 6 {
		t.Fatalf("purge: %d, %v; want 6", n, err)
	}
	logged := logKeys(t, s.db)
	if len(logged) != 5 || s.Len() != 5 {
		t.Fatalf("left: %v (store counts %d)", logged, s.Len())
	}
	for _, v := range logged {
		if v[:2] != "b/" {
			t.Fatalf("left: %v", logged)
		}
	}
	if got := getText(t, s, "b", "q3"); got != "y" {
		t.Fatalf("b's entry: %q", got)
	}
}

// writeFile makes a file with the given buckets: log entries under their numbers, the
// older layout's values under their keys (nil: no such bucket), and the move's marker.
func writeFile(t *testing.T, log map[uint64]*Entry, older map[Key][]byte, moving bool) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		if log != nil {
			lg, err := tx.CreateBucket(bucketLog)
			if err != nil {
				return err
			}
			for seq, e := range log {
				v, _ := e.MarshalBinary()
				if err := lg.Put(seqKey(seq), v); err != nil {
					return err
				}
			}
		}
		if older != nil {
			old, err := tx.CreateBucket(bucketEntries)
			if err != nil {
				return err
			}
			for k, v := range older {
				if err := old.Put(k[:], v); err != nil {
					return err
				}
			}
		}
		if !moving {
			return nil
		}
		m, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		return m.Put(keyMoving, []byte{1})
	})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// encoded is entries as the older layout stored them: key → encoded entry.
func encoded(es ...*Entry) map[Key][]byte {
	m := make(map[Key][]byte, len(es))
	for _, e := range es {
		m[e.Key], _ = e.MarshalBinary()
	}
	return m
}

// TestBoltMoveCutShort: a move from the older layout that stopped part way (entries
// already in the log, the rest still under their keys) goes on at the next open.
func TestBoltMoveCutShort(t *testing.T) {
	now := time.Now()
	moved := map[uint64]*Entry{1: boltEntry("t", "a", "A", now.Add(-3*time.Minute)), 2: boltEntry("t", "b", "B", now.Add(-2*time.Minute))}
	var rest []*Entry
	for i := range 2*moveChunk + 10 {
		rest = append(rest, boltEntry("t", fmt.Sprint("q", i), fmt.Sprint("answer ", i), now.Add(time.Duration(i)*time.Millisecond)))
	}
	s, err := OpenBolt(writeFile(t, moved, encoded(rest...), true), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Len() != 2*moveChunk+12 {
		t.Fatalf("%d entries, want %d", s.Len(), 2*moveChunk+12)
	}
	for q, want := range map[string]string{"a": "A", "b": "B", "q0": "answer 0", "q2009": "answer 2009"} {
		if got := getText(t, s, "t", q); got != want {
			t.Errorf("%s: %q, want %q", q, got, want)
		}
	}
	logged := logKeys(t, s.db) // fails while the older bucket is left
	if logged[3] != "t/q0=answer 0" || logged[2*moveChunk+12] != "t/q2009=answer 2009" {
		t.Fatalf("numbers: 3 %q, last %q", logged[3], logged[2*moveChunk+12])
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) != nil {
			return fmt.Errorf("the move's marker is left")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestBoltAfterRollback: a file holding both layouts without the move's marker was
// written by an older release after this one (a rollback); what that release left under
// the keys is the current state: what it purged stays purged, what it replaced stays
// replaced.
func TestBoltAfterRollback(t *testing.T) {
	now := time.Now()
	log := map[uint64]*Entry{1: boltEntry("acme", "secret", "acme's", now), 2: boltEntry("beta", "q", "v1", now)}
	s, err := OpenBolt(writeFile(t, log, encoded(boltEntry("beta", "q", "v2", now)), false), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if a, b := getText(t, s, "acme", "secret"), getText(t, s, "beta", "q"); a != "<miss>" || b != "v2" || s.Len() != 1 {
		t.Fatalf("acme %q, beta %q, %d entries; want a miss, v2 and 1", a, b, s.Len())
	}
}

// TestBoltEmptyOlderBucket: an empty bucket of the older layout is dropped too.
func TestBoltEmptyOlderBucket(t *testing.T) {
	s, err := OpenBolt(writeFile(t, nil, map[Key][]byte{}, false), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if logged := logKeys(t, s.db); len(logged) != 0 || s.Len() != 0 {
		t.Fatalf("log %v, %d entries", logged, s.Len())
	}
}
