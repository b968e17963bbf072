package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSoakShort runs a small soak through real hop processes (this test binary): every
// stream completes, the report's figures are filled in, and the JSON has the keys the
// issue names. It asserts no timing.
func TestSoakShort(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Soak(t.Context(), SoakConfig{Streams: 20, Duration: 2 * time.Second, ChunkDelay: 10 * time.Millisecond,
		Chunks: 5, Settle: 25 * time.Second, Exec: []string{exe, "gateway-hop"}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors != 0 || rep.Completed < 20 {
		t.Fatalf("errors %d (%s), completed %d; want 0 and at least one stream per worker", rep.Errors, rep.FirstError, rep.Completed)
	}
	if rep.RSSMB <= 0 || rep.GoroutinesBase <= 0 || rep.GoroutinesPeak < rep.GoroutinesBase {
		t.Errorf("rss %v MiB, goroutines base %d peak %d", rep.RSSMB, rep.GoroutinesBase, rep.GoroutinesPeak)
	}
	// sluice's pipeline leaves nothing behind: its goroutines come back to the
	// baseline, and fasthttp lets the idle workers go (within 20 s: Settle is 25).
	if rep.GoroutinesLeaked != 0 || rep.Pass != (rep.RSSMB <= rep.MaxRSSMB) {
		t.Errorf("goroutines: baseline %d, after %d, leaked %d; pass %v", rep.GoroutinesBase, rep.GoroutinesAfter, rep.GoroutinesLeaked, rep.Pass)
	}
	if rep.RampS <= 0 || rep.ChunksPerSec <= 0 {
		t.Errorf("ramp %v s, chunks/s %v; want both above 0", rep.RampS, rep.ChunksPerSec)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"errors", "rss_mb", "goroutines_leaked", "completed", "pass"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON has no %q: %s", k, b)
		}
	}
	var out bytes.Buffer
	if err := rep.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "leaked") {
		t.Errorf("table:\n%s", out.String())
	}
	if kids := children(t); len(kids) > 0 {
		t.Errorf("hop processes still running after Soak: %v", kids)
	}
	if _, err := Soak(t.Context(), SoakConfig{Streams: 1}); err == nil {
		t.Error("Soak without Exec: nil error")
	}
}

// TestSoakReportsLeak: goroutines sluice's process keeps after the streams ended (three,
// held on purpose) are reported as leaked, and fail the soak.
func TestSoakReportsLeak(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Soak(t.Context(), SoakConfig{Streams: 4, Duration: 200 * time.Millisecond, ChunkDelay: 10 * time.Millisecond,
		Chunks: 3, Settle: 2 * time.Second, Exec: []string{exe, "gateway-hop"}, holdAfter: 3})
	if err != nil {
		t.Fatal(err)
	}
	// Settle is short, so the client connections' idle workers may still be there (and
	// count too); the three held ones are above the baseline whatever happens.
	if rep.GoroutinesAfter-rep.GoroutinesBase != 3 || rep.GoroutinesLeaked < 3 || rep.Pass {
		t.Errorf("leaked %d (baseline %d, after %d, idle workers after %d), pass %v; want 3 above the baseline and false",
			rep.GoroutinesLeaked, rep.GoroutinesBase, rep.GoroutinesAfter, rep.IdleWorkersAfter, rep.Pass)
	}
}

// TestCountIdleWorkers: only fasthttp workers waiting for a connection count, not one
// serving (frames above workerFunc) or any other goroutine.
func TestCountIdleWorkers(t *testing.T) {
	p := "goroutine profile: total 14\n" +
		"3 @ 0x1 0x2 0x3 0x4\n" +
		"#\t0x1\truntime.gopark+0x1\t/go/src/runtime/proc.go:1\n" +
		"#\t0x2\truntime.chanrecv+0x1\t/go/src/runtime/chan.go:1\n" +
		"#\t0x3\truntime.chanrecv2+0x1\t/go/src/runtime/chan.go:2\n" +
		"#\t0x4\tgithub.com/valyala/fasthttp.(*workerPool).workerFunc+0x1\t/m/workerpool.go:220\n\n" +
		"2 @ 0x1 0x5 0x4\n" +
		"#\t0x1\truntime.gopark+0x1\t/go/src/runtime/proc.go:1\n" +
		"#\t0x5\tgithub.com/valyala/fasthttp.(*Server).serveConn+0x1\t/m/server.go:1\n" +
		"#\t0x4\tgithub.com/valyala/fasthttp.(*workerPool).workerFunc+0x1\t/m/workerpool.go:225\n\n" +
		"4 @ 0x1 0x2 0x3 0x6\n" +
		"#\t0x1\truntime.gopark+0x1\t/go/src/runtime/proc.go:1\n" +
		"#\t0x2\truntime.chanrecv+0x1\t/go/src/runtime/chan.go:1\n" +
		"#\t0x3\truntime.chanrecv2+0x1\t/go/src/runtime/chan.go:2\n" +
		"#\t0x6\tmain.other+0x1\t/m/main.go:1\n\n" +
		"5 @ 0x3 0x4 0x7\n" +
		"# labels: {\"hop\":\"sluice\"}\n" +
		"#\t0x4\tgithub.com/valyala/fasthttp.(*workerPool).workerFunc+0x59\t/m/workerpool.go:220\n" +
		"#\t0x7\tgithub.com/valyala/fasthttp.(*workerPool).getCh.func1+0x31\t/m/workerpool.go:197\n\n"
	if n := countIdleWorkers(p); n != 8 {
		t.Errorf("idle workers %d, want 8", n)
	}
}
