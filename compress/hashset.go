package compress

// hashSet is an open-addressed set of uint64 reused across calls.
type hashSet struct {
	slots []uint64
	mask  uint64
}

func (s *hashSet) reset(n int) {
	size := 64
	for size < n*2 {
		size <<= 1
	}
	if cap(s.slots) >= size {
		s.slots = s.slots[:size]
		clear(s.slots)
	} else {
		s.slots = make([]uint64, size)
	}
	s.mask = uint64(size - 1)
}

// add inserts h and reports whether it was already there.
func (s *hashSet) add(h uint64) bool {
	if h == 0 {
		h = 1
	}
	for i := h & s.mask; ; i = (i + 1) & s.mask {
		switch s.slots[i] {
		case h:
			return true
		case 0:
			s.slots[i] = h
			return false
		}
	}
}

// hashCount counts uint64 keys.
type hashCount struct {
	keys []uint64
	vals []uint32
	mask uint64
}

func (s *hashCount) reset(n int) {
	size := 64
	for size < n*2 {
		size <<= 1
	}
	if cap(s.keys) >= size {
		s.keys, s.vals = s.keys[:size], s.vals[:size]
		clear(s.keys)
		clear(s.vals)
	} else {
		s.keys, s.vals = make([]uint64, size), make([]uint32, size)
	}
	s.mask = uint64(size - 1)
}

// inc counts h and returns its count so far.
func (s *hashCount) inc(h uint64) uint32 {
	if h == 0 {
		h = 1
	}
	for i := h & s.mask; ; i = (i + 1) & s.mask {
		switch s.keys[i] {
		case h:
			s.vals[i]++
			return s.vals[i]
		case 0:
			s.keys[i] = h
			s.vals[i] = 1
			return 1
		}
	}
}
