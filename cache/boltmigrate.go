package cache

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"slices"

	bolt "go.etcd.io/bbolt"
)

var (
	// bucketEntries held entries under their key (files written before the log).
	bucketEntries = []byte("entries")
	// bucketMeta holds keyMoving while entries move from bucketEntries to the log.
	bucketMeta = []byte("meta")
	keyMoving  = []byte("moving")
)

// moveChunk is how many entries one transaction of the move carries: a transaction's
// dirty pages are held in memory, and a file only grows by what one holds at once.
const moveChunk = 1000

// migrate moves the entries of a file of the older layout (bucketEntries: key → entry)
// into the log, oldest created first, moveChunk entries a transaction, and then drops
// the older bucket. A move cut short (a crash, a kill for memory) goes on at the next
// open: each chunk deletes what it moved, and keyMoving says a move is under way.
//
// Without keyMoving, a file holding both buckets was written by an older release after
// this one (a rollback): its bucketEntries is the current state (what it purged or
// replaced is there, not in the log), so the log is dropped and rebuilt from it.
func (b *Bolt) migrate() error {
	var olds []oldEntry
	found, moving := false, false
	err := b.db.View(func(tx *bolt.Tx) error {
		old := tx.Bucket(bucketEntries)
		if old == nil {
			return nil
		}
		found = true
		if m := tx.Bucket(bucketMeta); m != nil && m.Get(keyMoving) != nil {
			moving = true
		}
		return old.ForEach(func(k, v []byte) error {
			o := oldEntry{k: slices.Clone(k)}
			var e Entry
			if v != nil && e.UnmarshalBinary(v) == nil {
				o.created = e.Created.UnixNano()
			} else {
				o.bad = true // dropped with the bucket
			}
			olds = append(olds, o)
			return nil
		})
	})
	if err != nil || !found {
		return err
	}
	if err := b.db.Update(func(tx *bolt.Tx) error {
		if !moving && tx.Bucket(bucketLog) != nil {
			if err := tx.DeleteBucket(bucketLog); err != nil {
				return err
			}
		}
		m, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		return m.Put(keyMoving, []byte{1})
	}); err != nil {
		return err
	}
	slices.SortStableFunc(olds, func(a, c oldEntry) int {
		return cmp.Or(cmp.Compare(a.created, c.created), bytes.Compare(a.k, c.k))
	})
	for chunk := range slices.Chunk(olds, moveChunk) {
		if err := b.db.Update(func(tx *bolt.Tx) error {
			old := tx.Bucket(bucketEntries)
			lg, err := tx.CreateBucketIfNotExists(bucketLog)
			if err != nil {
				return err
			}
			lg.FillPercent = logFill
			next := lastSeq(lg)
			for _, o := range chunk {
				if o.bad {
					continue // goes with the bucket
				}
				if v := old.Get(o.k); v != nil {
					next++
					if err := lg.Put(seqKey(next), v); err != nil {
						return err
					}
				}
				if err := old.Delete(o.k); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return b.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketEntries); err != nil {
			return err
		}
		return tx.DeleteBucket(bucketMeta)
	})
}

type oldEntry struct {
	k       []byte
	created int64
	bad     bool
}

// lastSeq is the highest number in the log (damaged keys aside).
func lastSeq(lg *bolt.Bucket) uint64 {
	c := lg.Cursor()
	for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
		if len(k) != 8 {
			continue
		}
		if n := binary.BigEndian.Uint64(k); n <= maxSeq {
			return n
		}
	}
	return 0
}
