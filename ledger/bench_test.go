package ledger

import (
	"context"
	"strconv"
	"testing"
	"time"
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

// BenchmarkReserve is the budget stage's cost per request for a key with a rate limit:
// one reservation, and the record that settles it applied in batches of 512 as the
// writer does (so reservations do not pile up beyond those in flight).
func BenchmarkReserve(b *testing.B) {
	s, _ := openTestStore(b)
	defer s.Close()
	ctx := context.Background()
	lim := Limits{RequestsPerMinute: 1 << 30, TokensPerMinute: 1 << 40}
	batch := make([]Record, 0, 512)
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		uid := "r" + strconv.Itoa(i)
		res := Reservation{UID: uid, KeyID: "key-bench", Time: now, Expires: now.Add(time.Hour), Tokens: 600}
		if err := s.Reserve(ctx, res, lim, now); err != nil {
			b.Fatal(err)
		}
		r := sampleRecord(uid)
		r.KeyID = "key-bench"
		batch = append(batch, r)
		if len(batch) == cap(batch) {
			if err := s.Apply(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}
