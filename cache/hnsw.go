package cache

import (
	"math"
	"math/rand/v2"
	"sync"
)

// hnsw is a hierarchical navigable small-world graph (Malkov and Yashunin, 2016) over
// unit vectors compared by dot product (cosine). It is compact on purpose: vectors in
// one flat slice, level-0 links in another (fixed M0 slots per node), ids are uint32
// and a search's visited set is a generation-stamped array, so a million entries take
// little more than their vectors and a search allocates nothing.
//
// It is not safe for concurrent use: the caller holds a lock (searches may share a read
// lock only with each other; each then needs its own searchScratch).
type hnsw struct {
	dim     int
	m, m0   int // links per node on upper levels / on level 0
	efBuild int
	ml      float64 // level multiplier 1/ln(m)
	rng     *rand.Rand

	vecs   []float32 // node i at [i*dim, (i+1)*dim)
	links0 []uint32  // node i at [i*m0, (i+1)*m0)
	sims0  []float32 // similarity of each level-0 link (pruning needs no dot product)
	n0     []uint8   // links used on level 0
	levels []uint8
	upper  map[uint32][][]uint32 // levels 1.. of the nodes that have them
	entry  uint32
	top    int // level of entry; -1 when empty
	dead   []bool

	scratch sync.Pool // *searchScratch
}

type candidate struct {
	id  uint32
	sim float32
}

type searchScratch struct {
	visited []uint32
	gen     uint32
	cand    []candidate // max-heap on sim (best first)
	res     []candidate // min-heap on sim (worst first)
	sel     []candidate
	sorted  []candidate
}

func newHNSW(dim, m, efBuild int, seed uint64) *hnsw {
	return &hnsw{dim: dim, m: m, m0: 2 * m, efBuild: efBuild, ml: 1 / math.Log(float64(m)),
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), upper: map[uint32][][]uint32{}, top: -1}
}

func (h *hnsw) len() int { return len(h.levels) }

func (h *hnsw) vec(id uint32) []float32 {
	return h.vecs[int(id)*h.dim : (int(id)+1)*h.dim : (int(id)+1)*h.dim]
}

func (h *hnsw) neighbours(id uint32, level int) []uint32 {
	if level == 0 {
		return h.links0[int(id)*h.m0 : int(id)*h.m0+int(h.n0[id])]
	}
	return h.upper[id][level-1]
}

func (h *hnsw) getScratch() *searchScratch {
	s, _ := h.scratch.Get().(*searchScratch)
	if s == nil {
		s = &searchScratch{}
	}
	if len(s.visited) < h.len() {
		s.visited = make([]uint32, h.len()+h.len()/4+64)
		s.gen = 0
	}
	s.gen++
	if s.gen == 0 {
		clear(s.visited)
		s.gen = 1
	}
	return s
}

// add inserts v (a unit vector of h.dim) and returns its id.
func (h *hnsw) add(v []float32) uint32 {
	id := uint32(len(h.levels))
	level := int(-math.Log(1-h.rng.Float64()) * h.ml)
	if level > 30 {
		level = 30
	}
	h.vecs = append(h.vecs, v...)
	h.levels = append(h.levels, uint8(level))
	h.dead = append(h.dead, false)
	for i := 0; i < h.m0; i++ {
		h.links0 = append(h.links0, 0)
		h.sims0 = append(h.sims0, 0)
	}
	h.n0 = append(h.n0, 0)
	if level > 0 {
		ls := make([][]uint32, level)
		for i := range ls {
			ls[i] = make([]uint32, 0, h.m)
		}
		h.upper[id] = ls
	}
	if h.top < 0 {
		h.entry, h.top = id, level
		return id
	}
	s := h.getScratch()
	defer h.scratch.Put(s)
	q := h.vec(id)
	ep := candidate{h.entry, dot(q, h.vec(h.entry))}
	for l := h.top; l > level; l-- {
		ep = h.greedy(q, ep, l)
	}
	for l := min(level, h.top); l >= 0; l-- {
		found := h.searchLevel(s, q, ep, h.efBuild, l)
		maxLinks := h.m
		if l == 0 {
			maxLinks = h.m0
		}
		sel := h.selectNeighbours(s, found, h.m)
		for _, c := range sel {
			h.link(id, c.id, c.sim, l, maxLinks)
			h.link(c.id, id, c.sim, l, maxLinks)
		}
		if len(found) > 0 {
			ep = found[0]
			for _, c := range found {
				if c.sim > ep.sim {
					ep = c
				}
			}
		}
		s.gen++
		if s.gen == 0 {
			clear(s.visited)
			s.gen = 1
		}
	}
	if level > h.top {
		h.entry, h.top = id, level
	}
	return id
}

// greedy walks level l towards q from ep and returns the closest node it reaches.
func (h *hnsw) greedy(q []float32, ep candidate, l int) candidate {
	for changed := true; changed; {
		changed = false
		for _, nb := range h.neighbours(ep.id, l) {
			if sim := dot(q, h.vec(nb)); sim > ep.sim {
				ep, changed = candidate{nb, sim}, true
			}
		}
	}
	return ep
}

// searchLevel returns up to ef nodes of level l closest to q (unsorted; s.res).
func (h *hnsw) searchLevel(s *searchScratch, q []float32, ep candidate, ef, l int) []candidate {
	s.cand = s.cand[:0]
	s.res = s.res[:0]
	s.visited[ep.id] = s.gen
	s.cand = pushMax(s.cand, ep)
	if !h.dead[ep.id] || l > 0 {
		s.res = pushMin(s.res, ep)
	}
	for len(s.cand) > 0 {
		var c candidate
		s.cand, c = popMax(s.cand)
		if len(s.res) >= ef && c.sim < s.res[0].sim {
			break
		}
		for _, nb := range h.neighbours(c.id, l) {
			if s.visited[nb] == s.gen {
				continue
			}
			s.visited[nb] = s.gen
			sim := dot(q, h.vec(nb))
			if len(s.res) < ef || sim > s.res[0].sim {
				s.cand = pushMax(s.cand, candidate{nb, sim})
				if h.dead[nb] && l == 0 {
					continue // deleted nodes still route, but are not results
				}
				s.res = pushMin(s.res, candidate{nb, sim})
				if len(s.res) > ef {
					s.res, _ = popMin(s.res)
				}
			}
		}
	}
	return s.res
}

// selectNeighbours keeps up to m of found by the HNSW heuristic: a candidate is kept
// when it is closer to the new node than to any already kept (diverse directions).
func (h *hnsw) selectNeighbours(s *searchScratch, found []candidate, m int) []candidate {
	s.sel = s.sel[:0]
	// best first
	sorted := append(s.sorted[:0], found...)
	sortBySimDesc(sorted)
	s.sorted = sorted
	// Only the closest 3m are considered: farther ones are rarely kept and each costs
	// up to m dot products.
	if len(sorted) > 3*m {
		sorted = sorted[:3*m]
	}
	for _, c := range sorted {
		if len(s.sel) >= m {
			break
		}
		ok := true
		cv := h.vec(c.id)
		for _, r := range s.sel {
			if dot(cv, h.vec(r.id)) > c.sim {
				ok = false
				break
			}
		}
		if ok {
			s.sel = append(s.sel, c)
		}
	}
	// fill up with the closest left out, so sparse regions stay connected
	for _, c := range sorted {
		if len(s.sel) >= m {
			break
		}
		dup := false
		for _, r := range s.sel {
			if r.id == c.id {
				dup = true
				break
			}
		}
		if !dup {
			s.sel = append(s.sel, c)
		}
	}
	return s.sel
}

// link adds to from's links on level l (sim: their similarity), replacing the farthest
// when full.
func (h *hnsw) link(from, to uint32, sim float32, l, maxLinks int) {
	if from == to {
		return
	}
	if l == 0 {
		base := int(from) * h.m0
		n := int(h.n0[from])
		ns := h.links0[base : base+n]
		for _, x := range ns {
			if x == to {
				return
			}
		}
		if n < maxLinks {
			h.links0[base+n] = to
			h.sims0[base+n] = sim
			h.n0[from]++
			return
		}
		worst, worstSim := -1, sim
		for i := 0; i < n; i++ {
			if h.sims0[base+i] < worstSim {
				worst, worstSim = i, h.sims0[base+i]
			}
		}
		if worst >= 0 {
			h.links0[base+worst] = to
			h.sims0[base+worst] = sim
		}
		return
	}
	ns := h.upper[from][l-1]
	for _, x := range ns {
		if x == to {
			return
		}
	}
	if len(ns) < maxLinks {
		h.upper[from][l-1] = append(ns, to)
		return
	}
	fv := h.vec(from)
	worst, worstSim := -1, sim
	for i, x := range ns {
		if s := dot(fv, h.vec(x)); s < worstSim {
			worst, worstSim = i, s
		}
	}
	if worst >= 0 {
		ns[worst] = to
	}
}

// search returns up to k nodes closest to q, best first, appended to dst.
func (h *hnsw) search(dst []candidate, q []float32, k, ef int) []candidate {
	if h.top < 0 {
		return dst
	}
	s := h.getScratch()
	defer h.scratch.Put(s)
	ep := candidate{h.entry, dot(q, h.vec(h.entry))}
	for l := h.top; l > 0; l-- {
		ep = h.greedy(q, ep, l)
	}
	res := h.searchLevel(s, q, ep, max(ef, k), 0)
	start := len(dst)
	dst = append(dst, res...)
	out := dst[start:]
	sortBySimDesc(out)
	if len(out) > k {
		dst = dst[:start+k]
	}
	return dst
}

func (h *hnsw) remove(id uint32) { h.dead[id] = true }

func sortBySimDesc(c []candidate) {
	// insertion sort: the slices are short (ef)
	for i := 1; i < len(c); i++ {
		for j := i; j > 0 && c[j].sim > c[j-1].sim; j-- {
			c[j], c[j-1] = c[j-1], c[j]
		}
	}
}

// heaps on candidates, by hand to stay allocation-free.
func pushMax(h []candidate, c candidate) []candidate {
	h = append(h, c)
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if h[p].sim >= h[i].sim {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
	return h
}

func popMax(h []candidate) ([]candidate, candidate) {
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	for i := 0; ; {
		l, r, b := 2*i+1, 2*i+2, i
		if l < n && h[l].sim > h[b].sim {
			b = l
		}
		if r < n && h[r].sim > h[b].sim {
			b = r
		}
		if b == i {
			break
		}
		h[i], h[b] = h[b], h[i]
		i = b
	}
	return h, top
}

func pushMin(h []candidate, c candidate) []candidate {
	h = append(h, c)
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if h[p].sim <= h[i].sim {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
	return h
}

func popMin(h []candidate) ([]candidate, candidate) {
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	for i := 0; ; {
		l, r, b := 2*i+1, 2*i+2, i
		if l < n && h[l].sim < h[b].sim {
			b = l
		}
		if r < n && h[r].sim < h[b].sim {
			b = r
		}
		if b == i {
			break
		}
		h[i], h[b] = h[b], h[i]
		i = b
	}
	return h, top
}

// dot is the dot product of two vectors of equal length.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		s0 += a[i]*b[i] + a[i+4]*b[i+4]
		s1 += a[i+1]*b[i+1] + a[i+5]*b[i+5]
		s2 += a[i+2]*b[i+2] + a[i+6]*b[i+6]
		s3 += a[i+3]*b[i+3] + a[i+7]*b[i+7]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return s0 + s1 + s2 + s3
}
