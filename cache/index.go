package cache

import (
	"encoding/binary"
	"sync"
	"time"
)

// Index is the semantic index: one small world graph per scope (tenant, model and
// context digest), so a lookup only ever sees entries of its own tenant and context.
// Small scopes are searched exhaustively; a scope grows a graph past graphFrom entries.
type Index struct {
	dim int
	mu  sync.RWMutex
	sc  map[Scope]*scopeIndex
	// where each key lives, for removals
	where map[Key]Scope
}

// graphFrom is the size from which a scope is searched through a graph.
const graphFrom = 256

// Graph parameters: links per node and the search breadth when building and looking up.
const (
	hnswM       = 16
	hnswEFBuild = 48
	hnswEF      = 32
)

type scopeIndex struct {
	mu    sync.RWMutex
	dim   int
	ids   map[Key]uint32
	nodes []indexNode
	vecs  []float32 // flat, while the scope is small (no graph)
	g     *hnsw
	live  int
	// gone: the scope emptied and left the index; an Add that finds it starts a new one.
	gone bool
}

type indexNode struct {
	key      Key
	question string
	answer   uint64 // hash of the answer, for the ambiguity guard
	expires  int64  // unix nanoseconds; 0: never
	dead     bool
}

// Match is one index result.
type Match struct {
	Key      Key
	Question string
	Answer   uint64
	Sim      float32 // cosine of the dense vectors
}

// NewIndex returns an empty index of vectors of dim dimensions.
func NewIndex(dim int) *Index {
	return &Index{dim: dim, sc: map[Scope]*scopeIndex{}, where: map[Key]Scope{}}
}

// Len returns the number of live entries.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.where)
}

// HasScope reports whether any entry lives in scope (a cheap check before embedding).
func (x *Index) HasScope(s Scope) bool {
	x.mu.RLock()
	si := x.sc[s]
	x.mu.RUnlock()
	if si == nil {
		return false
	}
	si.mu.RLock()
	defer si.mu.RUnlock()
	return si.live > 0
}

// Contains reports whether k is indexed.
func (x *Index) Contains(k Key) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.where[k]
	return ok
}

// Has reports whether k is indexed with this answer.
func (x *Index) Has(k Key, answer uint64) bool {
	x.mu.RLock()
	s, ok := x.where[k]
	si := x.sc[s]
	x.mu.RUnlock()
	if !ok || si == nil {
		return false
	}
	si.mu.RLock()
	defer si.mu.RUnlock()
	id, ok := si.ids[k]
	return ok && si.nodes[id].answer == answer
}

// Purge drops the entries of tenant and model ("" for any), matched by the hash
// prefixes their keys carry.
func (x *Index) Purge(tenant, model string) {
	if tenant == "" && model == "" {
		x.Clear()
		return
	}
	match := keyMatch(tenant, model)
	var drop []Key
	x.mu.RLock()
	for k := range x.where {
		if match(k) {
			drop = append(drop, k)
		}
	}
	x.mu.RUnlock()
	x.Remove(drop...)
}

// keyMatch reports whether a key belongs to tenant and model ("" for any), by the hash
// prefixes keys carry.
func keyMatch(tenant, model string) func(Key) bool {
	tp, mp := tenantPrefix(tenant), tenantPrefix(model)
	return func(k Key) bool {
		return (tenant == "" || binary.BigEndian.Uint32(k[0:4]) == tp) && (model == "" || binary.BigEndian.Uint32(k[4:8]) == mp)
	}
}

// Add indexes an entry's unit vector under its key (replacing an older one) until
// expires (zero: never). The first vector sets the index's dimension when it was created
// with 0.
func (x *Index) Add(s Scope, k Key, question string, answer uint64, v []float32, expires time.Time) {
	x.mu.Lock()
	if x.dim == 0 {
		x.dim = len(v)
	}
	if len(v) != x.dim || len(v) == 0 {
		x.mu.Unlock()
		return
	}
	if old, ok := x.where[k]; ok && old != s {
		x.mu.Unlock()
		x.Remove(k)
		x.mu.Lock()
	}
	var exp int64
	if !expires.IsZero() {
		exp = expires.UnixNano()
	}
	for {
		si := x.sc[s]
		if si == nil {
			si = &scopeIndex{dim: x.dim, ids: map[Key]uint32{}}
			x.sc[s] = si
		}
		x.where[k] = s
		x.mu.Unlock()
		if si.add(k, question, answer, v, exp) {
			return
		}
		// The scope emptied and was dropped meanwhile: add to its successor.
		x.mu.Lock()
		if x.where[k] != s {
			x.mu.Unlock()
			return // removed meanwhile
		}
	}
}

// Sweep drops the entries expired at now (stores expire entries on their own; Redis
// says nothing when it does) and returns how many it dropped.
func (x *Index) Sweep(now time.Time) int {
	t := now.UnixNano()
	x.mu.RLock()
	scopes := make([]*scopeIndex, 0, len(x.sc))
	for _, si := range x.sc {
		scopes = append(scopes, si)
	}
	x.mu.RUnlock()
	var drop []Key
	for _, si := range scopes {
		si.mu.RLock()
		for i := range si.nodes {
			if n := &si.nodes[i]; !n.dead && n.expires != 0 && n.expires <= t {
				drop = append(drop, n.key)
			}
		}
		si.mu.RUnlock()
	}
	x.Remove(drop...)
	return len(drop)
}

// Remove drops k from the index. A scope left empty leaves the index (scopes are per
// conversation: most are never seen again).
func (x *Index) Remove(keys ...Key) {
	for _, k := range keys {
		x.mu.Lock()
		s, ok := x.where[k]
		delete(x.where, k)
		si := x.sc[s]
		x.mu.Unlock()
		if ok && si != nil && si.remove(k) {
			x.mu.Lock()
			si.mu.Lock()
			if si.live == 0 && x.sc[s] == si {
				delete(x.sc, s)
				si.gone = true
			}
			si.mu.Unlock()
			x.mu.Unlock()
		}
	}
}

// Clear drops every entry (a purge of everything).
func (x *Index) Clear() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.sc = map[Scope]*scopeIndex{}
	x.where = map[Key]Scope{}
}

// Search returns up to k entries of scope s closest to v, best first, appended to dst.
func (x *Index) Search(dst []Match, s Scope, v []float32, k int) []Match {
	x.mu.RLock()
	si := x.sc[s]
	dim := x.dim
	x.mu.RUnlock()
	if si == nil || len(v) != dim {
		return dst
	}
	return si.search(dst, v, k)
}

// add indexes k in the scope; false when the scope has left the index.
func (si *scopeIndex) add(k Key, question string, answer uint64, v []float32, expires int64) bool {
	si.mu.Lock()
	defer si.mu.Unlock()
	if si.gone {
		return false
	}
	if id, ok := si.ids[k]; ok {
		si.kill(id)
	}
	n := indexNode{key: k, question: question, answer: answer, expires: expires}
	var id uint32
	if si.g != nil {
		id = si.g.add(v)
	} else {
		id = uint32(len(si.nodes))
		si.vecs = append(si.vecs, v...)
	}
	si.nodes = append(si.nodes, n)
	si.ids[k] = id
	si.live++
	switch {
	case si.g == nil && si.live >= graphFrom:
		si.rebuild()
	default:
		si.compact()
	}
	return true
}

// compact rebuilds a scope that is mostly tombstones (removed and replaced entries), so
// that it holds memory for its live entries only.
func (si *scopeIndex) compact() {
	if len(si.nodes) > 64 && si.live < len(si.nodes)/2 {
		si.rebuild()
	}
}

func (si *scopeIndex) kill(id uint32) {
	if si.nodes[id].dead {
		return
	}
	si.nodes[id].dead = true
	si.live--
	if si.g != nil {
		si.g.remove(id)
	}
	delete(si.ids, si.nodes[id].key)
}

// remove drops k from the scope and reports whether the scope is now empty.
func (si *scopeIndex) remove(k Key) bool {
	si.mu.Lock()
	defer si.mu.Unlock()
	if id, ok := si.ids[k]; ok {
		si.kill(id)
		if si.live > 0 {
			si.compact()
		}
	}
	return si.live == 0
}

// rebuild compacts the live nodes and builds a graph when there are enough of them.
func (si *scopeIndex) rebuild() {
	var vec func(i int) []float32
	if si.g != nil {
		g := si.g
		vec = func(i int) []float32 { return g.vec(uint32(i)) }
	} else {
		vecs, dim := si.vecs, si.dim
		vec = func(i int) []float32 { return vecs[i*dim : (i+1)*dim] }
	}
	nodes := make([]indexNode, 0, si.live)
	ids := make(map[Key]uint32, si.live)
	var g *hnsw
	var flat []float32
	if si.live >= graphFrom {
		g = newHNSW(si.dim, hnswM, hnswEFBuild, uint64(si.live))
	}
	for i, n := range si.nodes {
		if n.dead {
			continue
		}
		id := uint32(len(nodes))
		if g != nil {
			g.add(vec(i))
		} else {
			flat = append(flat, vec(i)...)
		}
		nodes = append(nodes, n)
		ids[n.key] = id
	}
	si.nodes, si.ids, si.g, si.vecs = nodes, ids, g, flat
}

func (si *scopeIndex) search(dst []Match, v []float32, k int) []Match {
	si.mu.RLock()
	defer si.mu.RUnlock()
	if si.live == 0 {
		return dst
	}
	var buf [16]candidate
	var cs []candidate
	if si.g != nil {
		cs = si.g.search(buf[:0], v, k, max(hnswEF, k))
	} else {
		cs = buf[:0]
		for i := range si.nodes {
			if si.nodes[i].dead {
				continue
			}
			sim := dot(v, si.vecs[i*si.dim:(i+1)*si.dim])
			if len(cs) < k {
				cs = append(cs, candidate{uint32(i), sim})
				sortBySimDesc(cs)
			} else if sim > cs[len(cs)-1].sim {
				cs[len(cs)-1] = candidate{uint32(i), sim}
				sortBySimDesc(cs)
			}
		}
	}
	for _, c := range cs {
		n := &si.nodes[c.id]
		if n.dead {
			continue
		}
		dst = append(dst, Match{Key: n.key, Question: n.question, Answer: n.answer, Sim: c.sim})
	}
	return dst
}
