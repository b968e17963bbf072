package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/gateway"
	"github.com/sluice-llm/sluice/internal/enginetest"
	"github.com/sluice-llm/sluice/models/tinymodel"
	"github.com/sluice-llm/sluice/router"
	"github.com/sluice-llm/sluice/runtime/llamacpp"
	"github.com/sluice-llm/sluice/runtime/proc"
	"github.com/sluice-llm/sluice/scheduler"
)

// outcome is how one request under the crash ended.
type outcome struct {
	status int
	err    string // transport error, or the SSE error event
	done   bool   // the stream ended with [DONE]
	dur    time.Duration
}

// TestKillUnderLoad: sluice supervises llama-server (2 slots); 8 clients stream at once
// (6 of them queued in sluice) when the engine is killed with SIGKILL. Every request ends
// within a bound, either served or with a clear error (an SSE error event for streams cut
// short, 503 with Retry-After for requests that find the engine down); the supervisor
// restarts the engine and new requests are served again.
func TestKillUnderLoad(t *testing.T) {
	reg := prometheus.NewRegistry()
	b, err := llamacpp.New(llamacpp.Options{Name: "local", Binary: enginetest.LlamaServerPath(t),
		Model: enginetest.TinyModel(t, tinymodel.Options{}), Slots: 2, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- b.Run(ctx, time.Second) }()
	defer func() { cancel(); <-runDone }()
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if err := b.Process().WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	sched := scheduler.New(map[string]scheduler.Backend{"local": b}, scheduler.Options{Registry: reg, RefreshEvery: 100 * time.Millisecond})
	sched.RefreshAll(ctx)
	go sched.Run(ctx)
	rt, _ := router.New([]router.Entry{{Name: "tiny", Backend: "local"}})
	gw, _ := gateway.New(gateway.Options{Router: rt, Scheduler: sched, Models: rt.Models, Registry: reg, RequestTimeout: time.Minute})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gw.Serve(ln) }()
	defer func() { _ = gw.Shutdown(context.Background()) }()
	base := "http://" + ln.Addr().String()

	const clients = 8
	results := make([]outcome, clients)
	var wg sync.WaitGroup
	started := make(chan struct{}, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = streamOnce(base, started)
		}()
	}
	// Kill once streams are flowing (two running, the rest queued in sluice).
	for range 2 {
		<-started
	}
	first := b.Process().PID()
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(60 * time.Second):
		t.Fatal("requests hung after the engine was killed")
	}
	var served, cut, refused int
	for i, r := range results {
		switch {
		case r.status == 200 && r.done && r.err == "":
			served++
		case r.status == 200 && r.err != "":
			cut++ // streamed, then an SSE error event
		case r.status == 503 && strings.Contains(r.err, "Retry-After"):
			refused++
		default:
			t.Errorf("request %d ended unclearly: %+v", i, r)
		}
		if r.dur > 30*time.Second {
			t.Errorf("request %d took %v", i, r.dur)
		}
	}
	t.Logf("after kill -9: %d served, %d cut short with an error event, %d refused with 503", served, cut, refused)
	if cut == 0 {
		t.Errorf("no stream was cut short: the kill came too late to test anything")
	}
	// The supervisor brings the engine back; requests are served again.
	p := b.Process()
	for {
		changed := p.Changed() // taken before the check, so no change is missed
		if p.Restarts() >= 1 && readyNow(p) {
			break
		}
		select {
		case <-changed:
		case <-wctx.Done():
			st, reason := p.State()
			t.Fatalf("engine not back: %v (%s), restarts %d", st, reason, p.Restarts())
		}
	}
	if b.Process().PID() == first || b.Process().Restarts() < 1 {
		t.Fatalf("engine not restarted: pid %d restarts %d", b.Process().PID(), b.Process().Restarts())
	}
	if st, _ := b.Process().State(); st != proc.Ready {
		t.Fatalf("state %v", st)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := streamOnce(base, nil)
		if r.status == 200 && r.done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not served after the restart: %+v", r)
		}
		time.Sleep(100 * time.Millisecond) // the scheduler's next health probe marks the engine up
	}
}

func readyNow(p *proc.Process) bool {
	st, _ := p.State()
	return st == proc.Ready
}

func streamOnce(base string, started chan<- struct{}) outcome {
	start := time.Now()
	body := `{"model":"tiny","stream":true,"max_tokens":1500,"messages":[{"role":"user","content":"Tell a long story."}]}`
	resp, err := http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		return outcome{err: err.Error(), dur: time.Since(start)}
	}
	defer resp.Body.Close()
	o := outcome{status: resp.StatusCode}
	if resp.StatusCode != 200 {
		o.err = fmt.Sprintf("status %d Retry-After=%q", resp.StatusCode, resp.Header.Get("Retry-After"))
		if resp.Header.Get("Retry-After") != "" {
			o.err = "Retry-After " + o.err
		}
		o.dur = time.Since(start)
		return o
	}
	sc := bufio.NewScanner(resp.Body)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		n++
		if n == 3 && started != nil {
			started <- struct{}{}
		}
		if line == "data: [DONE]" {
			o.done = true
		} else if strings.HasPrefix(line, `data: {"error"`) {
			o.err = line
		}
	}
	if err := sc.Err(); err != nil && o.err == "" {
		o.err = err.Error()
	}
	o.dur = time.Since(start)
	return o
}
