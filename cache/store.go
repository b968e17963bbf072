package cache

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// Store keeps cached entries. Entries are immutable once put: Get may return a shared
// *Entry that callers must not modify. Implementations are safe for concurrent use.
type Store interface {
	// Get returns the entry under k, or (nil, nil) when there is none or it expired.
	Get(ctx context.Context, k Key) (*Entry, error)
	// Put stores entries, replacing any under the same keys.
	Put(ctx context.Context, es ...*Entry) error
	// Delete removes the entry under k, if any.
	Delete(ctx context.Context, k Key) error
	// Purge removes every entry of tenant (all tenants when "") for model (all models
	// when ""), and returns how many it removed.
	Purge(ctx context.Context, tenant, model string) (int, error)
	// Scan calls fn for every live entry (in no particular order) until fn returns
	// false; it rebuilds a semantic index at start.
	Scan(ctx context.Context, fn func(*Entry) bool) error
	// Len is the number of entries (live or not yet swept).
	Len() int
	Close() error
}

// Event is a change another replica made to a shared store.
type Event struct {
	Op     EventOp
	Key    Key    // OpPut, OpDelete
	Tenant string // OpPurge
	Model  string // OpPurge
}

// EventOp is what an Event reports.
type EventOp uint8

// Event operations.
const (
	OpPut EventOp = iota + 1
	OpDelete
	OpPurge
)

// Watcher is a Store shared by several replicas: Watch reports, until ctx ends, the
// changes every replica (this one included) makes, so each keeps its semantic index in
// step. Stores local to one process do not implement it.
type Watcher interface {
	Watch(ctx context.Context, fn func(Event)) error
}

// StoreOptions bound a local store. Zero values mean no bound.
type StoreOptions struct {
	MaxEntries int
	MaxBytes   int64
	// Now is the clock for expiry (default time.Now).
	Now func() time.Time
	// OnRemove is called (without locks held) with the keys of entries the store
	// evicted or expired on its own, so the semantic index can drop them.
	OnRemove func(keys []Key)
}

func (o *StoreOptions) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// lru orders keys by last use and bounds their count and bytes.
type lru struct {
	max   int
	maxB  int64
	bytes int64
	order *list.List // front: most recent; values are *lruItem
	items map[Key]*list.Element
}

type lruItem struct {
	key     Key
	size    int64
	expires time.Time
	entry   *Entry // the memory store keeps entries here; others leave it nil
	seq     uint64 // the bbolt store's number for the entry
}

func newLRU(max int, maxBytes int64) *lru {
	return &lru{max: max, maxB: maxBytes, order: list.New(), items: map[Key]*list.Element{}}
}

func (l *lru) get(k Key) *lruItem {
	el, ok := l.items[k]
	if !ok {
		return nil
	}
	l.order.MoveToFront(el)
	return el.Value.(*lruItem)
}

// add inserts or replaces an item and appends the items evicted to respect the bounds.
func (l *lru) add(it *lruItem, evicted []*lruItem) []*lruItem {
	if el, ok := l.items[it.key]; ok {
		old := el.Value.(*lruItem)
		l.bytes -= old.size
		el.Value = it
		l.order.MoveToFront(el)
	} else {
		l.items[it.key] = l.order.PushFront(it)
	}
	l.bytes += it.size
	for (l.max > 0 && len(l.items) > l.max) || (l.maxB > 0 && l.bytes > l.maxB && len(l.items) > 1) {
		el := l.order.Back()
		old := el.Value.(*lruItem)
		l.removeEl(el)
		evicted = append(evicted, old)
	}
	return evicted
}

func keysOf(items []*lruItem) []Key {
	keys := make([]Key, len(items))
	for i, it := range items {
		keys[i] = it.key
	}
	return keys
}

func (l *lru) remove(k Key) bool {
	el, ok := l.items[k]
	if ok {
		l.removeEl(el)
	}
	return ok
}

func (l *lru) removeEl(el *list.Element) {
	it := el.Value.(*lruItem)
	l.order.Remove(el)
	delete(l.items, it.key)
	l.bytes -= it.size
}

// Memory is a store in this process's memory, bounded by count and bytes with LRU
// eviction; entries expire at their Expires time.
type Memory struct {
	opts StoreOptions
	mu   sync.Mutex
	l    *lru
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory(opts StoreOptions) *Memory {
	return &Memory{opts: opts, l: newLRU(opts.MaxEntries, opts.MaxBytes)}
}

// SetOnRemove sets the callback for entries the store evicts or expires on its own (the
// cache stage sets it to keep its index in step). Call it before using the store.
func (m *Memory) SetOnRemove(fn func([]Key)) { m.opts.OnRemove = fn }

// Get implements Store.
func (m *Memory) Get(_ context.Context, k Key) (*Entry, error) {
	now := m.opts.now()
	m.mu.Lock()
	it := m.l.get(k)
	if it == nil {
		m.mu.Unlock()
		return nil, nil
	}
	if !it.expires.IsZero() && !now.Before(it.expires) {
		m.l.remove(k)
		m.mu.Unlock()
		m.removed([]Key{k})
		return nil, nil
	}
	e := it.entry
	m.mu.Unlock()
	return e, nil
}

// Put implements Store.
func (m *Memory) Put(_ context.Context, es ...*Entry) error {
	var evicted []*lruItem
	m.mu.Lock()
	for _, e := range es {
		evicted = m.l.add(&lruItem{key: e.Key, size: int64(e.Size()), expires: e.Expires, entry: e}, evicted)
	}
	m.mu.Unlock()
	m.removed(keysOf(evicted))
	return nil
}

func (m *Memory) removed(keys []Key) {
	if len(keys) > 0 && m.opts.OnRemove != nil {
		m.opts.OnRemove(keys)
	}
}

// Delete implements Store.
func (m *Memory) Delete(_ context.Context, k Key) error {
	m.mu.Lock()
	m.l.remove(k)
	m.mu.Unlock()
	return nil
}

// Purge implements Store.
func (m *Memory) Purge(_ context.Context, tenant, model string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for el := m.l.order.Front(); el != nil; {
		next := el.Next()
		if e := el.Value.(*lruItem).entry; purgeMatch(e, tenant, model) {
			m.l.removeEl(el)
			n++
		}
		el = next
	}
	return n, nil
}

func purgeMatch(e *Entry, tenant, model string) bool {
	return (tenant == "" || e.Tenant == tenant) && (model == "" || e.Model == model)
}

// Scan implements Store.
func (m *Memory) Scan(ctx context.Context, fn func(*Entry) bool) error {
	now := m.opts.now()
	m.mu.Lock()
	es := make([]*Entry, 0, len(m.l.items))
	for el := m.l.order.Back(); el != nil; el = el.Prev() {
		it := el.Value.(*lruItem)
		if it.expires.IsZero() || now.Before(it.expires) {
			es = append(es, it.entry)
		}
	}
	m.mu.Unlock()
	for _, e := range es {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !fn(e) {
			break
		}
	}
	return nil
}

// Len implements Store.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.l.items)
}

// Close implements Store.
func (m *Memory) Close() error { return nil }
