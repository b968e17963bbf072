package gateway

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fasthttp"
)

func TestCacheDirective(t *testing.T) {
	for _, tc := range []struct {
		hdr  [][2]string
		want models.CacheDirective
		bad  bool
	}{
		{nil, 0, false},
		{[][2]string{{"Cache-Control", "no-cache"}}, models.CacheNoRead, false},
		{[][2]string{{"Cache-Control", "No-Store, max-age=0"}}, models.CacheNoStore | models.CacheNoRead, false},
		{[][2]string{{"X-Sluice-Cache", "force"}}, models.CacheForce, false},
		{[][2]string{{"X-Sluice-Cache", "off"}}, models.CacheNoStore, false},
		{[][2]string{{"X-Sluice-Cache", "refresh"}}, models.CacheNoRead, false},
		{[][2]string{{"X-Sluice-Cache", "maybe"}}, 0, true},
	} {
		var ctx fasthttp.RequestCtx
		for _, h := range tc.hdr {
			ctx.Request.Header.Set(h[0], h[1])
		}
		var r models.Request
		err := cacheDirective(&ctx, &r)
		if (err != nil) != tc.bad || r.Cache != tc.want {
			t.Errorf("%v: got %v, %v; want %v (error %v)", tc.hdr, r.Cache, err, tc.want, tc.bad)
		}
	}
}

type nopRouter struct{}

func (nopRouter) Route(context.Context, *models.Request) (models.Target, error) {
	return models.Target{}, errors.New("no")
}

type nopScheduler struct{}

func (nopScheduler) Open(context.Context, models.Target, *models.Request) (models.Stream, error) {
	return nil, errors.New("no")
}

func TestAdminCachePurge(t *testing.T) {
	var got [2]string
	s, err := New(Options{Router: nopRouter{}, Scheduler: nopScheduler{}, Models: func() []models.ModelInfo { return nil },
		AdminKeys: [][32]byte{sha256.Sum256([]byte("admin"))},
		CachePurge: func(_ context.Context, tenant, model string) (int, error) {
			got = [2]string{tenant, model}
			return 3, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, uri, key string) (int, string) {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod(method)
		ctx.Request.SetRequestURI(uri)
		if key != "" {
			ctx.Request.Header.Set("Authorization", "Bearer "+key)
		}
		s.Handler()(&ctx)
		return ctx.Response.StatusCode(), string(ctx.Response.Body())
	}
	if code, _ := do("POST", "/admin/cache/purge?tenant=acme", ""); code != 401 {
		t.Fatalf("no key: %d", code)
	}
	if code, _ := do("POST", "/admin/cache/purge?tenant=acme", "wrong"); code != 401 {
		t.Fatalf("wrong key: %d", code)
	}
	if code, _ := do("GET", "/admin/cache/purge?tenant=acme", "admin"); code != 405 {
		t.Fatalf("GET: %d", code)
	}
	if code, body := do("POST", "/admin/cache/purge", "admin"); code != 400 || !strings.Contains(body, "tenant") {
		t.Fatalf("nothing named: %d %s", code, body)
	}
	code, body := do("POST", "/admin/cache/purge?tenant=acme&model=tiny", "admin")
	if code != 200 || body != `{"purged":3}` || got != [2]string{"acme", "tiny"} {
		t.Fatalf("purge: %d %s %v", code, body, got)
	}
}
