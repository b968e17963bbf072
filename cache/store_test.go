package cache_test

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/sluice-llm/sluice/cache"
	"github.com/sluice-llm/sluice/cache/storetest"
	"github.com/sluice-llm/sluice/internal/redistest"
)

func TestMemoryStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, o cache.StoreOptions) cache.Store { return cache.NewMemory(o) },
		storetest.Caps{Bounds: true})
}

func TestBoltStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, o cache.StoreOptions) cache.Store {
		s, err := cache.OpenBolt(filepath.Join(t.TempDir(), "cache.db"), o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}, storetest.Caps{Bounds: true})
}

func TestRedisStore(t *testing.T) {
	srv := redistest.Start(t)
	db := 0
	storetest.Run(t, func(t *testing.T, o cache.StoreOptions) cache.Store {
		// each subtest gets a prefix of its own on the one server
		db++
		s, err := cache.OpenRedis(context.Background(), cache.RedisOptions{URL: srv.URL, Now: o.Now,
			Prefix: "test" + string(rune('a'+db)) + ":"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}, storetest.Caps{})
}

func itoa(i int) string { return strconv.Itoa(i) }
