package ledger

import (
	"context"
	"strconv"
	"testing"
)

// BenchmarkAdd is the request path's share: encode, append to the journal, queue.
func BenchmarkAdd(b *testing.B) {
	s, path := openTestStore(b)
	defer s.Close()
	l, err := Open(context.Background(), s, Options{JournalDir: path + ".journal", BatchSize: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	r := sampleRecord("x")
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r.UID = "p-" + strconv.Itoa(i)
		if err := l.Add(&r); err != nil {
			b.Fatal(err)
		}
		if len(l.pending) > 4096 {
			l.pending = l.pending[:0]
		}
	}
}

// BenchmarkApply is the background writer's cost per record, in batches of 512.
func BenchmarkApply(b *testing.B) {
	s, _ := openTestStore(b)
	defer s.Close()
	batch := make([]Record, 512)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(batch) {
		for j := range batch {
			batch[j] = sampleRecord("u" + strconv.Itoa(i+j))
		}
		if err := s.Apply(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
}
