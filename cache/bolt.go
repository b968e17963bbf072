package cache

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bolt is the embedded persistent store (the default): a bbolt file (pure Go, one
// writer, many readers, crash-safe), so the cache survives restarts. Its recency order
// and bounds are kept in memory (rebuilt in creation order at open); writes come in
// batches from the stage's writer, one transaction each.
//
// Entries are stored under a sequence number that grows with every put (8 bytes,
// big-endian), not under their key: the in-memory order maps each key to its number.
// New entries then go to the end of the file's B+tree instead of into a random page,
// so a batch writes only the pages it fills (BenchmarkBoltPut: several times less time
// per entry than with random 32-byte keys). An entry's own key is inside its value.
type Bolt struct {
	db   *bolt.DB
	opts StoreOptions
	mu   sync.Mutex
	l    *lru
	next uint64 // the last sequence number given
}

var _ Store = (*Bolt)(nil)

var (
	// bucketLog holds entries under their sequence number.
	bucketLog = []byte("log")
	// bucketEntries held entries under their key (files written before the log); open
	// moves them into bucketLog.
	bucketEntries = []byte("entries")
)

// logFill is how full the log's pages are packed: entries are appended, so a page that
// splits is not written into again (bbolt's default of half full would double the file).
const logFill = 0.9

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// valueKey is the key inside an encoded entry (its first field after the version byte).
func valueKey(v []byte) (Key, bool) {
	var k Key
	if len(v) < 1+len(k) || (v[0] != 1 && v[0] != entryVersion) {
		return k, false
	}
	copy(k[:], v[1:])
	return k, true
}

// OpenBolt opens (or creates) the store at path.
func OpenBolt(path string, o StoreOptions) (*Bolt, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, FreelistType: bolt.FreelistMapType, NoFreelistSync: true})
	if err != nil {
		return nil, fmt.Errorf("cache: open %s: %w", path, err)
	}
	b := &Bolt{db: db, opts: o, l: newLRU(o.MaxEntries, o.MaxBytes)}
	if err := b.init(); err != nil {
		db.Close()
		return nil, err
	}
	return b, nil
}

// init loads the keys, drops expired, corrupt and superseded entries, moves entries of
// the older layout into the log and applies the bounds.
func (b *Bolt) init() error {
	now := b.opts.now()
	type item struct {
		k       Key
		size    int64
		created int64
		expires time.Time
		seq     uint64
	}
	newest := map[Key]item{}
	var drop [][]byte
	// keep returns whether v is a live entry, and the item for it.
	keep := func(v []byte) (item, bool) {
		var e Entry
		if e.UnmarshalBinary(v) != nil || (!e.Expires.IsZero() && !now.Before(e.Expires)) {
			return item{}, false
		}
		return item{e.Key, int64(len(v)), e.Created.UnixNano(), e.Expires, 0}, true
	}
	err := b.db.Update(func(tx *bolt.Tx) error {
		lg, err := tx.CreateBucketIfNotExists(bucketLog)
		if err != nil {
			return err
		}
		lg.FillPercent = logFill
		err = lg.ForEach(func(k, v []byte) error {
			it, ok := keep(v)
			if len(k) != 8 || !ok {
				drop = append(drop, slices.Clone(k))
				return nil
			}
			it.seq = binary.BigEndian.Uint64(k)
			b.next = max(b.next, it.seq)
			if old, dup := newest[it.k]; dup {
				// The same key under two numbers (left by a put whose transaction
				// failed after the key's older entry was dropped from memory): the
				// later one wins.
				drop = append(drop, seqKey(min(old.seq, it.seq)))
				if old.seq > it.seq {
					return nil
				}
			}
			newest[it.k] = it
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range drop {
			if err := lg.Delete(k); err != nil {
				return err
			}
		}
		old := tx.Bucket(bucketEntries)
		if old == nil {
			return nil
		}
		var moved []item
		var vals [][]byte
		err = old.ForEach(func(_, v []byte) error {
			if it, ok := keep(v); ok {
				if _, dup := newest[it.k]; !dup {
					moved = append(moved, it)
					vals = append(vals, v)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		order := make([]int, len(moved))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(i, j int) int { return cmp.Compare(moved[i].created, moved[j].created) })
		for _, i := range order {
			b.next++
			moved[i].seq = b.next
			if err := lg.Put(seqKey(b.next), vals[i]); err != nil {
				return err
			}
			newest[moved[i].k] = moved[i]
		}
		return tx.DeleteBucket(bucketEntries)
	})
	if err != nil {
		return fmt.Errorf("cache: load %s: %w", b.db.Path(), err)
	}
	items := make([]item, 0, len(newest))
	for _, it := range newest {
		items = append(items, it)
	}
	slices.SortFunc(items, func(a, c item) int {
		return cmp.Or(cmp.Compare(a.created, c.created), cmp.Compare(a.seq, c.seq))
	})
	var evicted []*lruItem
	for _, it := range items {
		evicted = b.l.add(&lruItem{key: it.k, size: it.size, expires: it.expires, seq: it.seq}, evicted)
	}
	return b.deleteSeqs(seqsOf(evicted))
}

func seqsOf(items []*lruItem) []uint64 {
	seqs := make([]uint64, len(items))
	for i, it := range items {
		seqs[i] = it.seq
	}
	return seqs
}

func (b *Bolt) deleteSeqs(seqs []uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	return b.db.Update(func(tx *bolt.Tx) error {
		lg := tx.Bucket(bucketLog)
		for _, seq := range seqs {
			if err := lg.Delete(seqKey(seq)); err != nil {
				return err
			}
		}
		return nil
	})
}

// SetOnRemove sets the callback for entries the store evicts or expires on its own (the
// cache stage sets it to keep its index in step). Call it before using the store.
func (b *Bolt) SetOnRemove(fn func([]Key)) { b.opts.OnRemove = fn }

// Get implements Store.
func (b *Bolt) Get(_ context.Context, k Key) (*Entry, error) {
	now := b.opts.now()
	b.mu.Lock()
	it := b.l.get(k)
	if it == nil {
		b.mu.Unlock()
		return nil, nil
	}
	seq := it.seq
	if !it.expires.IsZero() && !now.Before(it.expires) {
		b.l.remove(k)
		b.mu.Unlock()
		b.removed([]Key{k})
		return nil, b.deleteSeqs([]uint64{seq})
	}
	b.mu.Unlock()
	var e *Entry
	err := b.db.View(func(tx *bolt.Tx) error {
		// Nil when a put replacing this key is being committed: a miss.
		v := tx.Bucket(bucketLog).Get(seqKey(seq))
		if v == nil {
			return nil
		}
		e = &Entry{}
		return e.UnmarshalBinary(v)
	})
	if err != nil {
		return nil, err
	}
	if e != nil && e.Key != k {
		return nil, fmt.Errorf("cache: get: entry %d holds another key", seq)
	}
	return e, nil
}

func (b *Bolt) removed(keys []Key) {
	if len(keys) > 0 && b.opts.OnRemove != nil {
		b.opts.OnRemove(keys)
	}
}

// Put implements Store.
func (b *Bolt) Put(_ context.Context, es ...*Entry) error {
	vals := make([][]byte, len(es))
	for i, e := range es {
		vals[i], _ = e.MarshalBinary()
	}
	keys := make([]byte, 0, 8*len(es))
	var evicted []*lruItem
	var gone []uint64 // numbers of the entries these replace
	b.mu.Lock()
	for i, e := range es {
		if el, ok := b.l.items[e.Key]; ok {
			gone = append(gone, el.Value.(*lruItem).seq)
		}
		b.next++
		keys = binary.BigEndian.AppendUint64(keys, b.next)
		evicted = b.l.add(&lruItem{key: e.Key, size: int64(len(vals[i])), expires: e.Expires, seq: b.next}, evicted)
	}
	b.mu.Unlock()
	err := b.db.Update(func(tx *bolt.Tx) error {
		lg := tx.Bucket(bucketLog)
		lg.FillPercent = logFill
		for i := range es {
			if err := lg.Put(keys[8*i:8*i+8], vals[i]); err != nil {
				return err
			}
		}
		for _, seq := range slices.Concat(gone, seqsOf(evicted)) {
			if err := lg.Delete(seqKey(seq)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.mu.Lock()
		for i, e := range es {
			// Only the item this put added: a later put of the same key stays.
			if el, ok := b.l.items[e.Key]; ok && el.Value.(*lruItem).seq == binary.BigEndian.Uint64(keys[8*i:]) {
				b.l.removeEl(el)
			}
		}
		b.mu.Unlock()
		return fmt.Errorf("cache: put: %w", err)
	}
	b.removed(keysOf(evicted))
	return nil
}

// Delete implements Store.
func (b *Bolt) Delete(_ context.Context, k Key) error {
	b.mu.Lock()
	el, ok := b.l.items[k]
	if !ok {
		b.mu.Unlock()
		return nil
	}
	seq := el.Value.(*lruItem).seq
	b.l.removeEl(el)
	b.mu.Unlock()
	return b.deleteSeqs([]uint64{seq})
}

// Purge implements Store. It reads every entry's key (the start of its value) and
// decodes those whose key carries the tenant's prefix, so that no entry of the tenant
// stays in the file, even one the in-memory order lost track of.
func (b *Bolt) Purge(_ context.Context, tenant, model string) (int, error) {
	var prefix []byte
	if tenant != "" {
		prefix = binary.BigEndian.AppendUint32(nil, tenantPrefix(tenant))
	}
	type goneEntry struct {
		k   Key
		seq uint64
	}
	var gone []goneEntry
	err := b.db.Update(func(tx *bolt.Tx) error {
		gone = gone[:0]
		lg := tx.Bucket(bucketLog)
		var del [][]byte
		err := lg.ForEach(func(sk, v []byte) error {
			k, ok := valueKey(v)
			if !ok || len(sk) != 8 || !slices.Equal(k[:len(prefix)], prefix) {
				return nil
			}
			var e Entry
			if e.UnmarshalBinary(v) == nil && purgeMatch(&e, tenant, model) {
				del = append(del, slices.Clone(sk))
				gone = append(gone, goneEntry{k, binary.BigEndian.Uint64(sk)})
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, sk := range del {
			if err := lg.Delete(sk); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("cache: purge: %w", err)
	}
	b.mu.Lock()
	for _, g := range gone {
		if el, ok := b.l.items[g.k]; ok && el.Value.(*lruItem).seq == g.seq {
			b.l.removeEl(el)
		}
	}
	b.mu.Unlock()
	return len(gone), nil
}

// Scan implements Store.
func (b *Bolt) Scan(ctx context.Context, fn func(*Entry) bool) error {
	now := b.opts.now()
	errStop := errors.New("stop")
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLog).ForEach(func(_, v []byte) error {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			e := &Entry{}
			if e.UnmarshalBinary(v) != nil || (!e.Expires.IsZero() && !now.Before(e.Expires)) {
				return nil
			}
			if !fn(e) {
				return errStop
			}
			return nil
		})
	})
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// Len implements Store.
func (b *Bolt) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.l.items)
}

// Close implements Store.
func (b *Bolt) Close() error { return b.db.Close() }
