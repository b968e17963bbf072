package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/internal/enginetest"
	"go.uber.org/goleak"
)

// leakCheck fails the test if it leaves goroutines behind once everything it started
// has stopped (registered first, so it runs after the stack's cleanup).
func leakCheck(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		goleak.VerifyNone(t, ignore,
			goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
			goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"))
	})
}

// longChat opens a raw non-streamed chat request that keeps the engine busy (ignore_eos:
// it generates all its tokens) and returns the connection without reading the answer.
func longChat(t *testing.T, base string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	body := `{"model":"tiny","max_tokens":1900,"ignore_eos":true,"messages":[{"role":"user","content":"Tell a very long story."}]}`
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	return conn
}

// waitFor polls another process's (or the scheduler's) state until cond holds.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not after %v", what, limit)
		}
		time.Sleep(2 * time.Millisecond) // polling another process's state
	}
	return time.Since(start)
}

func (st *stack) inflight() int {
	n := 0
	for _, s := range st.Sched.Status() {
		n += s.InFlight
	}
	return n
}

func (st *stack) queued() int {
	for _, s := range st.Sched.Status() {
		return s.Queued
	}
	return 0
}

// TestHangupRunningNonStreamed: a client that leaves while its non-streamed request
// runs on llama-server cancels it: sluice's slot is free at once and the engine stops
// generating (llama-server notices the closed connection within its polling second),
// instead of both working for nobody until the answer is done or the 10-minute deadline.
// (llama-server checks the connection of a non-streamed request only when a second
// passes without a result from any of its tasks: while other slots stream, it may
// finish generating; a streamed request stops at its next token.)
func TestHangupRunningNonStreamed(t *testing.T) {
	leakCheck(t)
	eng := enginetest.StartLlamaServer(t, enginetest.LlamaOptions{Slots: 1})
	// The scheduler probes /slots rarely here: each probe is a result that postpones
	// llama-server's check of the connection by a second.
	st := startStack(t, stackOptions{slots: 1, chatOverride: eng, refreshEvery: time.Minute})
	conn := longChat(t, st.URL)
	waitFor(t, "engine slot busy", 30*time.Second, func() bool { return slotsBusy(t, eng.URL) == 1 })
	conn.Close()
	tookSluice := waitFor(t, "sluice's slot free after the client left", 10*time.Second, func() bool { return st.inflight() == 0 })
	// llama-server checks a non-streamed request's connection only after a second
	// without results from any task, and each /slots or /metrics call is one: watch
	// its log, not its API, until it gives the slot back.
	tookEngine := waitFor(t, "engine slot free after the client left", 30*time.Second, func() bool {
		return strings.Contains(eng.Log(), "stop processing")
	})
	if busy := slotsBusy(t, eng.URL); busy != 0 {
		t.Fatalf("engine slots busy after the release: %d", busy)
	}
	decoded := engineMetric(t, eng.URL, "llamacpp:n_decode_total")
	t.Logf("after the client left: sluice's slot free in %v, the engine's in %v, after %v of 1900 decode steps",
		tookSluice, tookEngine, decoded)
	if tookSluice > time.Second {
		t.Fatalf("sluice's slot freed %v after the client left, want at once", tookSluice)
	}
	if decoded >= 1900 {
		t.Fatalf("the engine generated the whole answer (%v decode steps) for a client that had left", decoded)
	}
}

// engineMetric reads a counter from llama-server's /metrics.
func engineMetric(t *testing.T, engineURL, name string) float64 {
	t.Helper()
	resp, err := http.Get(engineURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("llama-server reports no %s", name)
	return 0
}

// TestHangupQueued: a client that leaves while its request waits for llama-server's
// only slot leaves the queue at once and never reaches the engine.
func TestHangupQueued(t *testing.T) {
	leakCheck(t)
	eng := enginetest.StartLlamaServer(t, enginetest.LlamaOptions{Slots: 1})
	st := startStack(t, stackOptions{slots: 1, chatOverride: eng})
	holder := longChat(t, st.URL)
	waitFor(t, "engine slot busy", 30*time.Second, func() bool { return slotsBusy(t, eng.URL) == 1 })
	waiter := longChat(t, st.URL)
	waitFor(t, "second request queued", 10*time.Second, func() bool { return st.queued() == 1 })
	waiter.Close()
	took := waitFor(t, "queue empty after the client left", 10*time.Second, func() bool { return st.queued() == 0 })
	t.Logf("left the queue %v after the client left", took)
	if took > time.Second {
		t.Fatalf("left the queue %v after the client left, want at once (not when the slot frees)", took)
	}
	if st.inflight() != 1 {
		t.Fatalf("in flight %d, want 1 (the holder)", st.inflight())
	}
	// When the holder leaves too, nothing takes the slot: the waiter was not just
	// hidden somewhere to run later.
	holder.Close()
	waitFor(t, "everything free after both left", 10*time.Second, func() bool {
		return slotsBusy(t, eng.URL) == 0 && st.inflight() == 0 && st.queued() == 0
	})
}
