package gateway

import "testing"

// TestEventBufNotGrownForNext: a stream's event buffer grown by a large event (a cached
// answer replayed in one chunk) does not go back to the pool, so the next stream, maybe
// open for minutes, starts small again.
func TestEventBufNotGrownForNext(t *testing.T) {
	s := &Server{}
	s.initPools()
	p := s.evbufs.get()
	*p = append(*p, make([]byte, 40<<10)...)
	s.evbufs.put(p)
	q := s.evbufs.get()
	if cap(*q) > 4<<10 {
		t.Fatalf("the next stream's event buffer: cap %d", cap(*q))
	}
	if len(*q) != 0 {
		t.Fatalf("a pooled buffer is not empty: %d bytes", len(*q))
	}
}
