package gateway

import (
	"strings"

	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fasthttp"
)

// Dashboard is the live page (dashboard.Sampler implements it).
type Dashboard interface {
	// Asset returns a file of the page ("" is the page): public, it holds no data.
	Asset(name string) (contentType string, body []byte, ok bool)
	// Data returns the sampled points after since (unix ms) as JSON.
	Data(since int64) []byte
}

// dashboardPage answers GET /dashboard and /dashboard/{file}.
func (s *Server) dashboardPage(ctx *fasthttp.RequestCtx) {
	name := strings.TrimPrefix(strings.TrimPrefix(string(ctx.Path()), "/dashboard"), "/")
	var (
		ct   string
		body []byte
		ok   bool
	)
	if s.opts.Dashboard != nil {
		ct, body, ok = s.opts.Dashboard.Asset(name)
	}
	if !ok {
		s.fail(ctx, "", "", &models.Error{Kind: models.ErrNotFound, Code: "unknown_route", Msg: "no such page"})
		return
	}
	h := &ctx.Response.Header
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
	ctx.SetContentType(ct)
	ctx.SetBody(body)
}

// dashboardData answers GET /admin/dashboard?since=<unix ms> (admin key).
func (s *Server) dashboardData(ctx *fasthttp.RequestCtx) {
	if !s.admin(ctx, s.opts.Dashboard != nil) {
		return
	}
	since := ctx.QueryArgs().GetUintOrZero("since")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetContentType("application/json")
	ctx.SetBody(s.opts.Dashboard.Data(int64(since)))
}
