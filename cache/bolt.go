package cache

import (
	"bytes"
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
type Bolt struct {
	db   *bolt.DB
	opts StoreOptions
	mu   sync.Mutex
	l    *lru
}

var _ Store = (*Bolt)(nil)

var bucketEntries = []byte("entries")

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

// init loads the keys, drops expired and corrupt entries and applies the bounds.
func (b *Bolt) init() error {
	now := b.opts.now()
	type item struct {
		k       Key
		size    int64
		created int64
		expires time.Time
	}
	var items []item
	var drop [][]byte
	err := b.db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(bucketEntries)
		if err != nil {
			return err
		}
		err = bk.ForEach(func(k, v []byte) error {
			var e Entry
			if len(k) != len(Key{}) || e.UnmarshalBinary(v) != nil || (!e.Expires.IsZero() && !now.Before(e.Expires)) {
				drop = append(drop, slices.Clone(k))
				return nil
			}
			items = append(items, item{e.Key, int64(e.Size()), e.Created.UnixNano(), e.Expires})
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range drop {
			if err := bk.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cache: load %s: %w", b.db.Path(), err)
	}
	slices.SortFunc(items, func(a, c item) int { return int(a.created - c.created) })
	var evicted []Key
	for _, it := range items {
		evicted = b.l.add(&lruItem{key: it.k, size: it.size, expires: it.expires}, evicted)
	}
	return b.deleteKeys(evicted)
}

func (b *Bolt) deleteKeys(keys []Key) error {
	if len(keys) == 0 {
		return nil
	}
	return b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketEntries)
		for _, k := range keys {
			if err := bk.Delete(k[:]); err != nil {
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
	if !it.expires.IsZero() && !now.Before(it.expires) {
		b.l.remove(k)
		b.mu.Unlock()
		b.removed([]Key{k})
		return nil, b.deleteKeys([]Key{k})
	}
	b.mu.Unlock()
	var e *Entry
	err := b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketEntries).Get(k[:])
		if v == nil {
			return nil
		}
		e = &Entry{}
		return e.UnmarshalBinary(v)
	})
	if err != nil {
		return nil, err
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
	var evicted []Key
	b.mu.Lock()
	for i, e := range es {
		evicted = b.l.add(&lruItem{key: e.Key, size: int64(len(vals[i])), expires: e.Expires}, evicted)
	}
	b.mu.Unlock()
	err := b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketEntries)
		for i, e := range es {
			if err := bk.Put(e.Key[:], vals[i]); err != nil {
				return err
			}
		}
		for _, k := range evicted {
			if err := bk.Delete(k[:]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.mu.Lock()
		for _, e := range es {
			b.l.remove(e.Key)
		}
		b.mu.Unlock()
		return fmt.Errorf("cache: put: %w", err)
	}
	b.removed(evicted)
	return nil
}

// Delete implements Store.
func (b *Bolt) Delete(_ context.Context, k Key) error {
	b.mu.Lock()
	b.l.remove(k)
	b.mu.Unlock()
	return b.deleteKeys([]Key{k})
}

// Purge implements Store. A tenant's entries are found by their key prefix.
func (b *Bolt) Purge(_ context.Context, tenant, model string) (int, error) {
	var prefix []byte
	if tenant != "" {
		prefix = binary.BigEndian.AppendUint32(nil, tenantPrefix(tenant))
	}
	var gone []Key
	err := b.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEntries).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); {
			var e Entry
			if e.UnmarshalBinary(v) == nil && purgeMatch(&e, tenant, model) {
				kc := slices.Clone(k)
				if err := c.Delete(); err != nil {
					return err
				}
				gone = append(gone, e.Key)
				k, v = c.Seek(kc) // Delete moves the cursor: find the next key again
				continue
			}
			k, v = c.Next()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("cache: purge: %w", err)
	}
	b.mu.Lock()
	for _, k := range gone {
		b.l.remove(k)
	}
	b.mu.Unlock()
	return len(gone), nil
}

// Scan implements Store.
func (b *Bolt) Scan(ctx context.Context, fn func(*Entry) bool) error {
	now := b.opts.now()
	errStop := errors.New("stop")
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEntries).ForEach(func(_, v []byte) error {
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
