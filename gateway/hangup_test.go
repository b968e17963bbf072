package gateway_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/gateway"
	"github.com/sluice-llm/sluice/models"
	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind (the hang-up
// watcher's loop, a request's, a stream's). fasthttp keeps a process-wide Date-header
// ticker and lets its worker-pool cleaner finish its current sleep after shutdown.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"))
}

// eventually waits for cond, which reads the scheduler's state (no event announces a
// request leaving the queue), for up to 20 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 20s", what)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond) // polling the scheduler's state: nothing to wait on
	}
}

// sendRaw writes a request on a new connection without reading the answer.
func sendRaw(t testing.TB, g *testGateway, body string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", g.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	return c
}

// TestHangupWhileRunning: a client that leaves while its non-streamed request runs
// cancels the engine call; the slot is free at once, not at the deadline.
func TestHangupWhileRunning(t *testing.T) {
	g := startGateway(t, gateway.Options{}, 1)
	g.Fake.started = make(chan string, 1)
	c := sendRaw(t, g, chatBody("hang", false))
	<-g.Fake.started
	c.Close()
	g.waitClosed(t, 1, "client left a running request")
	g.slotFree(t)
}

// TestHangupWhileStreamingBeforeFirstToken: a streamed request whose engine has sent
// nothing yet (a long prefill) has nothing to write, so no write can fail: the hang-up
// itself cancels it.
func TestHangupWhileStreamingBeforeFirstToken(t *testing.T) {
	g := startGateway(t, gateway.Options{}, 1)
	g.Fake.started = make(chan string, 1)
	c := sendRaw(t, g, chatBody("hang", true))
	<-g.Fake.started
	c.Close()
	g.waitClosed(t, 1, "client left a stream before its first token")
	g.slotFree(t)
}

// TestHangupWhileQueued: a client that leaves while its request waits for a slot takes
// it out of the queue; it never reaches the engine.
func TestHangupWhileQueued(t *testing.T) {
	g := startGateway(t, gateway.Options{}, 1)
	g.Fake.started = make(chan string, 2)
	holder := sendRaw(t, g, chatBody("hang", false))
	<-g.Fake.started
	waiter := sendRaw(t, g, chatBody("hang", false))
	eventually(t, "second request queued", func() bool { return g.queued() == 1 })
	waiter.Close()
	eventually(t, "queue empty after the client left", func() bool { return g.queued() == 0 })
	if n := g.Fake.opened.Load(); n != 1 {
		t.Fatalf("%d requests reached the engine, want 1", n)
	}
	holder.Close()
	g.waitClosed(t, 1, "holder left")
	g.slotFree(t)
	if n := g.Fake.opened.Load(); n != 2 {
		t.Fatalf("%d requests reached the engine, want 2 (the departed waiter must not)", n)
	}
}

// TestPipelinedAndKeepAlive: watching a connection takes no byte from it: pipelined
// requests (sent together before any answer) and later keep-alive requests on the same
// connection are all answered.
func TestPipelinedAndKeepAlive(t *testing.T) {
	g := startGateway(t, gateway.Options{}, 2)
	c, br := dial(t, g.Addr)
	var all strings.Builder
	for i := range 3 {
		body := chatBody(fmt.Sprintf("words %d", i+1), i == 1)
		fmt.Fprintf(&all, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
	if _, err := io.WriteString(c, all.String()); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		code, _, b := rawResponse(t, c, br)
		if code != 200 || !strings.Contains(string(b), "word") {
			t.Fatalf("pipelined answer %d: %d %s", i, code, b)
		}
	}
	for i := range 3 {
		body := chatBody("words 2", false)
		fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		if code, _, b := rawResponse(t, c, br); code != 200 {
			t.Fatalf("keep-alive answer %d: %d %s", i, code, b)
		}
	}
	if g.inflight() != 0 || g.Fake.open.Load() != 0 {
		t.Fatalf("left in flight: %d, open streams %d", g.inflight(), g.Fake.open.Load())
	}
}

// TestHangupAnthropic: the same for /v1/messages, running and streaming.
func TestHangupAnthropic(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			g := startGateway(t, gateway.Options{}, 1)
			g.Fake.started = make(chan string, 1)
			c, err := net.Dial("tcp", g.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			body := fmt.Sprintf(`{"model":"m","max_tokens":8,"stream":%v,"messages":[{"role":"user","content":"hang"}]}`, stream)
			fmt.Fprintf(c, "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			<-g.Fake.started
			c.Close()
			g.waitClosed(t, 1, "client left /v1/messages")
			g.slotFree(t)
		})
	}
}

// TestBatchLineStopped: a batch line runs under the batch runner's context, so a stop
// that outlasts the drain cancels the engine call (the line is answered 499, which the
// runner keeps pending) and frees its slot, instead of running on for nobody.
func TestBatchLineStopped(t *testing.T) {
	g := startGateway(t, gateway.Options{}, 1)
	g.Fake.started = make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	type answer struct {
		status int
		body   []byte
	}
	got := make(chan answer, 1)
	go func() {
		status, _, body := g.GW.Execute(ctx, nil, "/v1/chat/completions", []byte(chatBody("hang", false)), "batch:test")
		got <- answer{status, body}
	}()
	<-g.Fake.started
	cancel()
	a := <-got
	if a.status != 499 {
		t.Fatalf("status %d, want 499: %s", a.status, a.body)
	}
	g.waitClosed(t, 1, "batch line stopped")
	g.slotFree(t)
}

// ringKeys is a Keys whose keys can be revoked while the server runs.
type ringKeys struct {
	mu   sync.Mutex
	keys map[[32]byte]*models.Key
}

func (r *ringKeys) Lookup(d *[32]byte) *models.Key {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keys[*d]
}

func (r *ringKeys) Required() bool { return true }

// TestBatchLineKeyRevoked: a batch line acts as its owner's key as the key ring has it
// now: once the key is revoked, its lines are refused with 401 (an error-file entry),
// not run.
func TestBatchLineKeyRevoked(t *testing.T) {
	d := sha256.Sum256([]byte("sk-owner"))
	ring := &ringKeys{keys: map[[32]byte]*models.Key{d: {ID: "k1", Tenant: "t1", Residency: models.ResidencyAny}}}
	g := startGateway(t, gateway.Options{Keys: ring}, 1)
	body := []byte(chatBody("words 2", false))
	if status, _, out := g.GW.Execute(context.Background(), d[:], "/v1/chat/completions", body, "batch:b1"); status != 200 {
		t.Fatalf("owner's key active: status %d: %s", status, out)
	}
	ring.mu.Lock()
	delete(ring.keys, d)
	ring.mu.Unlock()
	opened := g.Fake.opened.Load()
	status, _, out := g.GW.Execute(context.Background(), d[:], "/v1/chat/completions", body, "batch:b1")
	if status != 401 || !strings.Contains(string(out), "no longer accepted") {
		t.Fatalf("revoked key: status %d: %s", status, out)
	}
	if n := g.Fake.opened.Load(); n != opened {
		t.Fatalf("a revoked key's line reached the engine")
	}
}
