package cache

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkBoltPut is the cache writer's store step: batches of 200 answers (a 100 ms
// batch at 2,000 misses a second) of ~1.5 KB with ~1 KB questions, into a file that
// already holds 20,000.
func BenchmarkBoltPut(b *testing.B) { benchBoltPut(b, StoreOptions{}) }

// BenchmarkBoltPutFull is BenchmarkBoltPut in a store at its bound: every answer put
// evicts the least recently used one.
func BenchmarkBoltPutFull(b *testing.B) { benchBoltPut(b, StoreOptions{MaxEntries: 20_000}) }

func benchBoltPut(b *testing.B, o StoreOptions) {
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("the of and to in is you that it he was for on are as with his they at be this have from or one had by word but not what all were we when")
	text := func(n int) string {
		var sb strings.Builder
		for sb.Len() < n {
			sb.WriteString(words[rng.IntN(len(words))])
			sb.WriteByte(' ')
		}
		return sb.String()
	}
	entry := func() *Entry {
		var k Key
		for i := range k {
			k[i] = byte(rng.Uint32())
		}
		now := time.Now()
		return &Entry{Key: k, Tenant: "t", Model: "m", Question: text(1000), Answer: Answer{Role: "assistant", Text: text(1500), FinishReason: "stop"},
			Created: now, Expires: now.Add(time.Hour)}
	}
	st, err := OpenBolt(filepath.Join(b.TempDir(), "c.db"), o)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	for range 100 {
		es := make([]*Entry, 200)
		for i := range es {
			es[i] = entry()
		}
		if err := st.Put(ctx, es...); err != nil {
			b.Fatal(err)
		}
	}
	batches := make([][]*Entry, 50)
	for j := range batches {
		batches[j] = make([]*Entry, 200)
		for i := range batches[j] {
			batches[j][i] = entry()
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := st.Put(ctx, batches[i%len(batches)]...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/200/1000, "µs/entry")
}
