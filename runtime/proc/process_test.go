package proc

import (
	"context"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/internal/enginetest"
	"github.com/sluice-llm/sluice/models/tinymodel"
)

func TestTransitions(t *testing.T) {
	legal := [][2]State{{Stopped, Starting}, {Starting, Ready}, {Ready, Backoff}, {Backoff, Starting}, {Ready, Draining}, {Draining, Stopped}, {Backoff, Failed}, {Failed, Starting}}
	for _, tr := range legal {
		if !CanTransition(tr[0], tr[1]) {
			t.Errorf("%s -> %s should be allowed", tr[0], tr[1])
		}
	}
	illegal := [][2]State{{Stopped, Ready}, {Draining, Ready}, {Ready, Starting}, {Failed, Ready}, {Stopped, Draining}, {State(99), Stopped}}
	for _, tr := range illegal {
		if CanTransition(tr[0], tr[1]) {
			t.Errorf("%s -> %s should be refused", tr[0], tr[1])
		}
	}
}

func waitState(t *testing.T, p *Process, want State, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		ch := p.Changed()
		if st, _ := p.State(); st == want {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			st, reason := p.State()
			t.Fatalf("state %s (%s), want %s after %v", st, reason, want, timeout)
		}
	}
}

func llamaSpec(t *testing.T) Spec {
	model := enginetest.TinyModel(t, tinymodel.Options{})
	return Spec{
		Name: "llama-test", Binary: enginetest.LlamaServerPath(t),
		Args:       []string{"-m", model, "--host", "127.0.0.1", "--port", "{port}", "-c", "2048", "-t", "1"},
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	}
}

// TestRestartAfterKill: kill -9 the engine; the supervisor notices, backs off, starts it
// again on the same port and reports ready.
func TestRestartAfterKill(t *testing.T) {
	p, err := New(llamaSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, time.Second) }()
	rctx, rcancel := context.WithTimeout(ctx, time.Minute)
	defer rcancel()
	if err := p.WaitReady(rctx); err != nil {
		t.Fatal(err)
	}
	first := p.PID()
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, Backoff, 10*time.Second)
	if err := p.WaitReady(rctx); err != nil {
		t.Fatal(err)
	}
	if p.PID() == first || p.Restarts() != 1 {
		t.Fatalf("pid %d (was %d), restarts %d", p.PID(), first, p.Restarts())
	}
	resp, err := http.Get(p.URL() + "/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health after restart: %v", err)
	}
	resp.Body.Close()
	second := p.PID()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st, _ := p.State(); st != Stopped {
		t.Fatalf("state after stop = %s", st)
	}
	if err := syscall.Kill(second, 0); err == nil {
		t.Fatalf("engine process %d still alive after stop", second)
	}
}

// TestGivesUp: a binary that exits at once fails after MaxFailures starts, with its
// output in the reason.
func TestGivesUp(t *testing.T) {
	script := t.TempDir() + "/bad-engine.sh"
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho 'error: cannot load model' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := New(Spec{Name: "bad", Binary: script, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, MaxFailures: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, 0) }()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	err = p.WaitReady(wctx)
	if err == nil || !strings.Contains(err.Error(), "cannot load model") || !strings.Contains(err.Error(), "3 failed starts") {
		t.Fatalf("WaitReady = %v", err)
	}
	cancel()
	<-done
}

// TestDrain: Stop waits for requests in flight before terminating the engine.
func TestDrain(t *testing.T) {
	spec := llamaSpec(t)
	var inflight = make(chan int, 1)
	inflight <- 1
	spec.InFlight = func() int { v := <-inflight; inflight <- v; return v }
	p, err := New(spec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, 30*time.Second) }()
	if err := p.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	cancel()
	waitState(t, p, Draining, 5*time.Second)
	select {
	case <-done:
		t.Fatal("stopped while a request was in flight")
	case <-time.After(100 * time.Millisecond):
	}
	<-inflight
	inflight <- 0
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://127.0.0.1:" + strconv.Itoa(p.Port()) + "/health"); err == nil {
		t.Fatal("engine still answering after stop")
	}
}

// TestExplicitEnvironment: an engine gets exactly BaseEnv and Env, none of the secrets in
// sluice's own environment.
func TestExplicitEnvironment(t *testing.T) {
	t.Setenv("SLUICE_TEST_SECRET", "s3cret")
	dir := t.TempDir()
	script := dir + "/env-engine.sh"
	if err := os.WriteFile(script, []byte("#!/bin/sh\n/usr/bin/env > "+dir+"/env.txt\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := New(Spec{Name: "env", Binary: script, BaseEnv: []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"},
		Env: []string{"CUDA_VISIBLE_DEVICES=1"}, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, MaxFailures: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, 0) }()
	if err := p.WaitReady(ctx); err == nil {
		t.Fatal("the script became ready")
	}
	cancel()
	<-done
	b, err := os.ReadFile(dir + "/env.txt")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(string(b))
	want := []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent", "CUDA_VISIBLE_DEVICES=1"}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("engine environment %q lacks %s", got, w)
		}
	}
	for _, kv := range got {
		if !slices.Contains(want, kv) && !strings.HasPrefix(kv, "PWD=") && !strings.HasPrefix(kv, "SHLVL=") && !strings.HasPrefix(kv, "_=") {
			t.Errorf("engine environment has %s, which it was not given", kv)
		}
	}
}
