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
	// wmu orders the writes: a put's numbers are committed in the order they were
	// given, before any delete of them, and a failed put's displaced entries are tracked
	// again before the next write.
	wmu sync.Mutex
}

var _ Store = (*Bolt)(nil)

// bucketLog holds entries under their sequence number.
var bucketLog = []byte("log")

const (
	// logFill is how full the log's pages are packed: entries are appended, so a page
	// that splits is not written into again (bbolt's default, half full, would leave
	// half of every page of small entries empty).
	logFill = 0.9
	// maxSeq is the highest number a file may hold.
	maxSeq = 1 << 62
)

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

// init moves entries of the older layout into the log, loads the keys, drops expired,
// corrupt and superseded entries and applies the bounds.
func (b *Bolt) init() error {
	if err := b.migrate(); err != nil {
		return fmt.Errorf("cache: convert %s: %w", b.db.Path(), err)
	}
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
	err := b.db.Update(func(tx *bolt.Tx) error {
		lg, err := tx.CreateBucketIfNotExists(bucketLog)
		if err != nil {
			return err
		}
		err = lg.ForEach(func(k, v []byte) error {
			var e Entry
			// A number past maxSeq is a damaged key: numbers after it would wrap onto
			// entries kept under small ones.
			if len(k) != 8 || binary.BigEndian.Uint64(k) > maxSeq || e.UnmarshalBinary(v) != nil ||
				(!e.Expires.IsZero() && !now.Before(e.Expires)) {
				drop = append(drop, slices.Clone(k))
				return nil
			}
			it := item{e.Key, int64(len(v)), e.Created.UnixNano(), e.Expires, binary.BigEndian.Uint64(k)}
			b.next = max(b.next, it.seq)
			if old, dup := newest[it.k]; dup {
				// The same key under two numbers (not left by this version's puts, which
				// delete what they replace in their own transaction): the later one wins.
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
		return nil
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
		b.wmu.Lock()
		defer b.wmu.Unlock()
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
	var replaced []*lruItem
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.mu.Lock()
	first := b.next + 1
	for i, e := range es {
		if el, ok := b.l.items[e.Key]; ok {
			replaced = append(replaced, el.Value.(*lruItem))
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
		for _, seq := range seqsOf(slices.Concat(replaced, evicted)) {
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
		// What it replaced or evicted is still in the file: tracked again (as the least
		// recently used), so that a later delete or eviction removes it.
		for _, it := range slices.Concat(replaced, evicted) {
			if _, ok := b.l.items[it.key]; !ok && it.seq < first {
				b.l.items[it.key] = b.l.order.PushBack(it)
				b.l.bytes += it.size
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
	b.wmu.Lock()
	defer b.wmu.Unlock()
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
// decodes those whose key carries the tenant's and the model's prefix, so that no entry
// stays in the file, even one the in-memory order lost track of; then it deletes them.
// An entry put while it reads is put after the purge.
func (b *Bolt) Purge(_ context.Context, tenant, model string) (int, error) {
	inScope := keyMatch(tenant, model)
	type found struct {
		k   Key
		seq uint64
	}
	var match []found
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLog).ForEach(func(sk, v []byte) error {
			k, ok := valueKey(v)
			if !ok || len(sk) != 8 || !inScope(k) {
				return nil
			}
			var e Entry
			if e.UnmarshalBinary(v) == nil && purgeMatch(&e, tenant, model) {
				match = append(match, found{k, binary.BigEndian.Uint64(sk)})
			}
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("cache: purge: %w", err)
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	var gone []found
	err = b.db.Update(func(tx *bolt.Tx) error {
		gone = gone[:0]
		lg := tx.Bucket(bucketLog)
		for _, f := range match {
			sk := seqKey(f.seq)
			if lg.Get(sk) == nil {
				continue // deleted or evicted meanwhile
			}
			if err := lg.Delete(sk); err != nil {
				return err
			}
			gone = append(gone, f)
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
