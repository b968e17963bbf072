package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestMain lets this test binary serve as a hop process for TestRunSeparate: run as
// "bench.test gateway-hop HOP UPSTREAM" it serves that hop (ServeHop) instead of testing.
func TestMain(m *testing.M) {
	if len(os.Args) == 5 && os.Args[1] == "gateway-hop" {
		o, err := ParseHopOptions(os.Args[4])
		if err == nil {
			err = ServeHop(context.Background(), os.Args[2], os.Args[3], o, os.Stdin, os.Stdout)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRunSeparate runs every hop in a process of its own, as "sluice bench gateway"
// does by default: all targets answer, the hops' own counters come back (sluice's RSS,
// allocations, the engine's connections), and no hop process outlives the run.
func TestRunSeparate(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(t.Context(), Config{Rates: []int{200}, Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond,
		Workers: 8, Rounds: 1, Exec: []string{exe, "gateway-hop"}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors != 0 || len(rep.Runs) != 8 {
		t.Fatalf("errors %d, %d rows; want 0 and 8: %+v", rep.Errors, len(rep.Runs), rep.Runs)
	}
	if rep.RSSScope != rssScopeSluice || rep.RSSMB <= 0 || rep.RSSMB > 1024 {
		t.Errorf("rss %v MiB (%s), want sluice's process alone, above 0", rep.RSSMB, rep.RSSScope)
	}
	for _, r := range rep.Runs {
		if r.P50US <= 0 || r.CPUPerReqUS <= 0 {
			t.Errorf("row %s/%s: p50 %v µs, cpu/req %v µs; want both above 0", r.Mode, r.Target, r.P50US, r.CPUPerReqUS)
		}
		// Every hop keeps its connections to the engine: after the warm-up, at most
		// the few extra ones a burst needs are opened.
		if r.EngineConns > 8 {
			t.Errorf("row %s/%s: %d engine connections opened while measuring, want few (reuse)", r.Mode, r.Target, r.EngineConns)
		}
		if r.Target == TargetSluice && r.AllocsPerReq <= 0 {
			t.Errorf("sluice row %s: %v allocs/req, want the hop's own count above 0", r.Mode, r.AllocsPerReq)
		}
	}
	if !strings.Contains(rep.Config.Hops, "own process") {
		t.Errorf("config.hops = %q", rep.Config.Hops)
	}
	if kids := children(t); len(kids) > 0 {
		t.Errorf("hop processes still running after Run: %v", kids)
	}
}

// children lists this process's live child processes (from /proc).
func children(t *testing.T) []string {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces, so cut after its ')'.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) && f[0] != "Z" {
			kids = append(kids, p)
		}
	}
	return kids
}

func TestServeHopRejectsUnknownHop(t *testing.T) {
	var out bytes.Buffer
	err := ServeHop(t.Context(), "router", "-", HopOptions{}, strings.NewReader(""), &out)
	if err == nil || !strings.Contains(err.Error(), "unknown hop") {
		t.Fatalf("err = %v, want unknown hop", err)
	}
}

// TestRunShort proves the harness end to end: every target is measured in both modes,
// nothing fails, and the JSON report carries the headline fields. It asserts no timing:
// speed is measured by the benchmark command, never in unit tests.
func TestRunShort(t *testing.T) {
	var progress bytes.Buffer
	rep, err := Run(t.Context(), Config{Rates: []int{200}, Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond,
		Workers: 16, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors != 0 {
		t.Errorf("errors = %d, want 0; rows: %+v", rep.Errors, rep.Runs)
	}
	want := map[string]bool{}
	for _, m := range []Mode{NonStream, Stream} {
		for _, tg := range []string{TargetDirect, TargetNull, TargetControl, TargetSluice} {
			want[string(m)+"/"+tg] = true
		}
	}
	for _, r := range rep.Runs {
		key := string(r.Mode) + "/" + r.Target
		if !want[key] {
			t.Errorf("unexpected or repeated row %s", key)
		}
		delete(want, key)
		if r.Rate != 200 || r.Requests != 60 || r.P50US <= 0 || r.P99US < r.P50US {
			t.Errorf("row %s: rate %d, %d requests, p50 %v µs, p99 %v µs; want 200 RPS, 60 requests, 0 < p50 <= p99",
				key, r.Rate, r.Requests, r.P50US, r.P99US)
		}
		if r.Errors != 0 || r.WarmupErrors != 0 {
			t.Errorf("row %s: %d errors (+%d warm-up): %s", key, r.Errors, r.WarmupErrors, r.FirstError)
		}
	}
	for k := range want {
		t.Errorf("no row for %s", k)
	}
	if rep.RefRate != 200 {
		t.Errorf("ref rate = %d, want 200 (the only rate run)", rep.RefRate)
	}
	if got := strings.Count(progress.String(), "\n"); got != 2 {
		t.Errorf("progress has %d lines, want one per rate and mode:\n%s", got, progress.String())
	}

	b, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.ContainsRune(b, '\n') {
		t.Error("JSON report spans several lines")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ratio_p50", "ratio_p99", "stream_ratio_p50", "stream_ratio_p99", "control_ratio_p50",
		"control_ratio_p99", "errors", "rss_mb", "runs", "pass", "ref_rate"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON report has no %q", k)
		}
	}
	var runs []map[string]any
	if err := json.Unmarshal(m["runs"], &runs); err != nil || len(runs) != 8 {
		t.Errorf("runs: %d rows (%v), want 8", len(runs), err)
	}
	if string(m["errors"]) != "0" {
		t.Errorf("errors = %s, want 0", m["errors"])
	}

	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"sluice", "control", "null", "direct", "peak RSS", "whole benchmark process"} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("table does not mention %q:\n%s", s, table.String())
		}
	}
}

// TestTargetsAnswer sends one request per mode to each hop and checks the answers the
// way the load generator does, so a broken hop fails here with its answer in view.
func TestTargetsAnswer(t *testing.T) {
	up, err := startUpstream(EngineOptions{}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer up.close()
	np, err := startNullProxy(TargetNull, up.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer np.close()
	const key = "sk-bench-test"
	pl, err := newPipeline(t.Context(), up.addr(), HopOptions{APIKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer pl.close()
	if err := pl.serve(); err != nil {
		t.Fatal(err)
	}
	g, err := newGenerator(1, nil, key)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	for name, addr := range map[string]string{"direct": up.addr(), "null": np.addr(), "sluice": pl.addr()} {
		lt := newLoadTarget("t", "http://"+addr, 4)
		if err := g.ready(t.Context(), lt, time.Nanosecond); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		lt.close()
	}
	// sluice refuses a request without the key, or with another one.
	for _, auth := range []string{"", "Bearer sk-other"} {
		g.auth = auth
		lt := newLoadTarget("t", "http://"+pl.addr(), 4)
		if err := g.ready(t.Context(), lt, time.Nanosecond); err == nil || !strings.Contains(err.Error(), "status 401") {
			t.Errorf("sluice with Authorization %q: %v, want status 401", auth, err)
		}
		lt.close()
	}
}

func TestUpstreamUsageOnlyWhenAsked(t *testing.T) {
	up, err := startUpstream(EngineOptions{}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer up.close()
	hc := &fasthttp.HostClient{Addr: up.addr()}
	for _, tc := range []struct {
		body      string
		wantUsage bool
	}{
		{`{"model":"bench","messages":[{"role":"user","content":"hi"}],"stream":true}`, false},
		{`{"model":"bench","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`, true},
	} {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("http://" + up.addr() + "/v1/chat/completions")
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetBodyString(tc.body)
		if err := hc.Do(req, resp); err != nil {
			t.Fatal(err)
		}
		body := string(resp.Body())
		if got := strings.Contains(body, `"choices":[],"usage"`); got != tc.wantUsage {
			t.Errorf("%s: usage chunk %v, want %v:\n%s", tc.body, got, tc.wantUsage, body)
		}
		if n := strings.Count(body, "data: "); n != 8+btoi(tc.wantUsage) {
			t.Errorf("%s: %d events, want %d", tc.body, n, 8+btoi(tc.wantUsage))
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestValidate(t *testing.T) {
	c := newChecker(Answer{})
	lastDelta := `"content":"."`
	full := `{"choices":[{"message":{"role":"assistant","content":"The capital of France is Paris."}}],` + usageFields(5) + `}`
	stream := "data: {\"choices\":[{\"delta\":{" + lastDelta + "}}]}\n\ndata: {\"choices\":[]," + usageFields(5) + "}\n\n" + sseDone
	for _, tc := range []struct {
		name   string
		mode   Mode
		status int
		body   string
		ok     bool
	}{
		{"full", NonStream, 200, full, true},
		{"stream", Stream, 200, stream, true},
		{"status", NonStream, 503, full, false},
		{"wrong content", NonStream, 200, strings.Replace(full, "Paris", "Rome", 1), false},
		{"no usage", NonStream, 200, strings.Replace(full, `"usage"`, `"x"`, 1), false},
		{"stream cut short", Stream, 200, strings.TrimSuffix(stream, sseDone), false},
		{"stream without last delta", Stream, 200, strings.Replace(stream, lastDelta, `"content":"!"`, 1), false},
	} {
		if err := c.validate(tc.mode, tc.status, []byte(tc.body)); (err == nil) != tc.ok {
			t.Errorf("%s: validate = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestPercentiles(t *testing.T) {
	xs := []int64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}
	got := percentiles(xs, 0.5, 0.9, 0.99, 1)
	want := []int64{5, 9, 10, 10}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("percentiles = %v, want %v", got, want)
			break
		}
	}
	if p := percentiles([]int64{7}, 0.5, 0.99); p[0] != 7 || p[1] != 7 {
		t.Errorf("one sample: %v, want [7 7]", p)
	}
}

func TestAddRatios(t *testing.T) {
	rows := []Row{
		{Target: TargetDirect, P50US: 100, P99US: 1000},
		{Target: TargetNull, P50US: 200, P99US: 3000},
		{Target: TargetControl, P50US: 250, P99US: 1000},
		{Target: TargetSluice, P50US: 250, P99US: 5000},
	}
	addRatios(rows)
	if r := rows[3]; r.AddedP50US != 150 || r.RatioP50 == nil || *r.RatioP50 != 1.5 || *r.RatioP99 != 2 {
		t.Errorf("sluice row = %+v, want added 150 µs, ratios 1.5 and 2", r)
	}
	if r := rows[2]; r.RatioP99 == nil || *r.RatioP99 != 0 {
		t.Errorf("control row = %+v, want p99 ratio 0", r)
	}
	if rows[0].RatioP50 != nil || rows[1].RatioP50 != nil {
		t.Error("direct and null rows must carry no ratio")
	}
	// A null proxy that measured no added latency leaves the ratios undefined.
	rows = []Row{{Target: TargetDirect, P50US: 100}, {Target: TargetNull, P50US: 90}, {Target: TargetSluice, P50US: 150}}
	addRatios(rows)
	if rows[2].RatioP50 != nil {
		t.Errorf("ratio = %v, want none", *rows[2].RatioP50)
	}
}

func TestConfigRejects(t *testing.T) {
	for _, c := range []Config{{Rates: []int{0}}, {Rates: []int{-5}}, {Modes: []Mode{"both"}}} {
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("Run(%+v) = nil error, want one", c)
		}
	}
}

// BenchmarkGatewayChat drives sluice's pipeline handler in process (the fake engine is
// still reached over loopback, as in production) for profiling its hot path:
//
//	go test ./bench -run '^$' -bench GatewayChat -cpuprofile cpu.out -memprofile mem.out
//
// The requests are the gateway bench's: prompts from ../shared/data when it is there (a
// synthetic request otherwise), each with a ticket number of its own (every request a
// cache miss), and an API key. The null proxy's handler runs beside it, so the
// difference per operation is what the pipeline costs beyond a do-nothing hop.
func BenchmarkGatewayChat(b *testing.B) {
	up, err := startUpstream(EngineOptions{}, "")
	if err != nil {
		b.Fatal(err)
	}
	defer up.close()
	tr, err := LoadTraffic(TrafficOptions{Data: benchData()})
	if err != nil {
		b.Fatal(err)
	}
	key, err := newAPIKey()
	if err != nil {
		b.Fatal(err)
	}
	pl, err := newPipeline(b.Context(), up.addr(), HopOptions{APIKey: key})
	if err != nil {
		b.Fatal(err)
	}
	chk := newChecker(Answer{})
	defer pl.close()
	np := &nullProxy{hc: newProxyClient(up.addr())}
	defer np.hc.CloseIdleConnections()
	handlers := []struct {
		name string
		h    fasthttp.RequestHandler
	}{{"sluice", pl.gw.Handler()}, {"null", np.handle}}
	var ticket uint64
	for _, hd := range handlers {
		for _, mode := range []Mode{NonStream, Stream} {
			b.Run(hd.name+"/"+string(mode), func(b *testing.B) {
				var req fasthttp.Request
				req.SetRequestURI("/v1/chat/completions")
				req.Header.SetHost("sluice.bench")
				req.Header.SetMethod(fasthttp.MethodPost)
				req.Header.SetContentType("application/json")
				req.Header.Set("Authorization", "Bearer "+key)
				var ctx fasthttp.RequestCtx
				buf := make([]byte, 0, 4096)
				b.ReportAllocs()
				for b.Loop() {
					ticket++
					body, mark := tr.body(mode, ticket)
					req.SetBody(body)
					stamp(req.Body(), mark, ticket)
					ctx.Init2(benchConn{}, benchLogger{}, false)
					req.CopyTo(&ctx.Request)
					hd.h(&ctx)
					body = ctx.Response.Body()
					if bs := ctx.Response.BodyStream(); bs != nil {
						w := bytes.NewBuffer(buf[:0])
						if _, err := io.Copy(w, bs); err != nil {
							b.Fatal(err)
						}
						if err := ctx.Response.CloseBodyStream(); err != nil {
							b.Fatal(err)
						}
						body, buf = w.Bytes(), w.Bytes()
					}
					if err := chk.validate(mode, ctx.Response.StatusCode(), body); err != nil {
						b.Fatal(err)
					}
					ctx.Response.Reset()
				}
			})
		}
	}
}

// benchConn is the in-process benchmark's client connection: addresses and deadlines
// (a stream moves its write deadline on), nothing read or written through it (the
// response is read from the handler's RequestCtx).
type benchConn struct{ net.Conn }

func (benchConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080} }
func (benchConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000} }
func (benchConn) SetDeadline(time.Time) error      { return nil }
func (benchConn) SetReadDeadline(time.Time) error  { return nil }
func (benchConn) SetWriteDeadline(time.Time) error { return nil }

type benchLogger struct{}

func (benchLogger) Printf(string, ...any) {}

// benchData is the shared data directory seen from this package, or "" (a synthetic
// request) when this checkout has none beside it.
func benchData() string {
	d := filepath.Join("..", "..", "shared", "data")
	if _, err := os.Stat(filepath.Join(d, "route")); err != nil {
		return ""
	}
	return d
}

func TestStamp(t *testing.T) {
	tr := syntheticTraffic()
	body, mark := tr.body(NonStream, 0)
	b := bytes.Clone(body)
	stamp(b, mark, 42)
	if !bytes.Contains(b, []byte("Ticket #0000000042\"")) {
		t.Fatalf("%s", b)
	}
	stamp(b, mark, 1234567)
	if !bytes.Contains(b, []byte("Ticket #0001234567\"")) {
		t.Fatalf("%s", b)
	}
	if !json.Valid(b) {
		t.Fatalf("not JSON: %s", b)
	}
	if !bytes.Equal(body, tr.bodies[0][0]) {
		t.Fatal("stamp changed the pool's body")
	}
}
