package cache

import (
	"math/rand/v2"
	"testing"
)

func BenchmarkDot256(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	x, y := randomUnit(r, 256), randomUnit(r, 256)
	var s float32
	for i := 0; i < b.N; i++ {
		s += dot(x, y)
	}
	_ = s
}
