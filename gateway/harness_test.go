package gateway_test

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/gateway"
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/router"
	"github.com/sluice-llm/sluice/scheduler"
)

// fakeBackend is a scheduler.Backend that answers from the prompt, so that tests (and the
// fuzzers) choose its behaviour through the request alone. The last message's content (or
// the first prompt) picks it:
//
//	"unavailable"  Open fails: an engine that is down, its error naming an internal address
//	"upstream"     Open fails: an engine that answered 500
//	"hang"         the stream blocks until its context is cancelled or it is closed
//	"midfail"      two chunks, then the engine fails (naming an internal address)
//	"words N"      N words of text (default: a few)
//	"slow N"       N words, 5 ms apart (an engine generating at its own pace)
//
// Anything else is a short answer. It counts streams open and opened.
type fakeBackend struct {
	slots  int
	open   atomic.Int64 // streams not yet closed
	opened atomic.Int64
	// started receives the request id of every "hang" stream when it starts (optional).
	started chan string
	// release ends every "hang" stream (with an engine error) when closed.
	release chan struct{}
	// closes receives the request id of every stream when it is closed.
	closes chan string
	// fuzz: "hang" answers like "words 3" and answers are at most 1000 words.
	fuzz bool
	// waits counts the streams' WaitReady calls (models.Waiter).
	waits atomic.Int64
}

const internalAddr = "10.9.8.7:8081"

func (b *fakeBackend) Capacity() models.Capacity {
	return models.Capacity{Slots: b.slots, Healthy: true}
}

func prompt(r *models.Request) string {
	switch {
	case len(r.Messages) > 0:
		return r.Messages[len(r.Messages)-1].Content
	case len(r.Prompt) > 0:
		return r.Prompt[0]
	case len(r.Input) > 0:
		return r.Input[0]
	}
	return ""
}

func (b *fakeBackend) Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error) {
	p := prompt(r)
	switch {
	case p == "unavailable":
		return nil, &models.Error{Kind: models.ErrUnavailable, Code: "engine_unavailable", RetryAfter: time.Second,
			Msg: "engine fake is unavailable: dial tcp " + internalAddr + ": connect: connection refused"}
	case p == "upstream":
		return nil, &models.Error{Kind: models.ErrUpstream, Msg: "engine fake at http://" + internalAddr + " answered 500: boom"}
	}
	b.opened.Add(1)
	b.open.Add(1)
	s := &fakeStream{b: b, ctx: ctx, r: r, closed: make(chan struct{}), words: 3, release: b.release}
	switch {
	case p == "hang" && !b.fuzz:
		s.hang = true
		if b.started != nil {
			b.started <- r.ID
		}
	case p == "midfail":
		s.midfail = true
	case strings.HasPrefix(p, "words "), strings.HasPrefix(p, "slow "), strings.HasPrefix(p, "burst "):
		switch p[0] {
		case 's':
			s.gap = 5 * time.Millisecond
		case 'b':
			s.burst = true
		}
		n := 0
		for _, c := range p[strings.IndexByte(p, ' ')+1:] {
			if c < '0' || c > '9' || n > 100000 {
				break
			}
			n = n*10 + int(c-'0')
		}
		s.words = n
		if b.fuzz {
			s.words = min(n, 1000)
		}
	}
	return s, nil
}

type fakeStream struct {
	b       *fakeBackend
	ctx     context.Context
	r       *models.Request
	n       int
	words   int
	hang    bool
	midfail bool
	release chan struct{}
	once    sync.Once
	closed  chan struct{}
	gap     time.Duration // between chunks ("slow")
	burst   bool          // every chunk at hand (models.Buffered), as a fast engine's ("burst")
	next    time.Time     // when the next chunk is ready
}

// WaitReady sleeps until the next chunk is ready, as an engine's connection becomes
// readable (models.Waiter).
func (s *fakeStream) WaitReady() {
	s.b.waits.Add(1)
	time.Sleep(time.Until(s.next))
}

// Buffered reports the chunks of a "burst" stream as at hand (models.Buffered).
func (s *fakeStream) Buffered() bool { return s.burst && s.n <= s.words+1 }

func (s *fakeStream) Recv() (models.Chunk, error) {
	if s.hang {
		select {
		case <-s.ctx.Done():
			return models.Chunk{}, &models.Error{Kind: models.ErrCanceled, Msg: "request canceled"}
		case <-s.closed:
			return models.Chunk{}, io.ErrClosedPipe
		case <-s.release:
			return models.Chunk{}, &models.Error{Kind: models.ErrUpstream, Msg: "released"}
		}
	}
	if s.r.Kind == models.KindEmbedding {
		if s.n > 0 {
			return models.Chunk{}, io.EOF
		}
		s.n++
		vecs := make([][]float32, len(s.r.Input))
		for i := range vecs {
			vecs[i] = []float32{0.25, -0.5}
		}
		return models.Chunk{Embeddings: vecs}, nil
	}
	if s.gap > 0 {
		time.Sleep(time.Until(s.next))
		s.next = time.Now().Add(s.gap)
	}
	s.n++
	switch {
	case s.n == 1:
		return models.Chunk{Role: "assistant"}, nil
	case s.midfail && s.n == 3:
		return models.Chunk{}, &models.Error{Kind: models.ErrUpstream, Msg: "engine fake: read tcp " + internalAddr + ": connection reset by peer"}
	case s.n <= s.words+1 && s.burst:
		return models.Chunk{Text: "w" + strconv.Itoa(s.n-1) + " "}, nil // numbered: the order shows
	case s.n <= s.words+1:
		return models.Chunk{Text: "word "}, nil
	case s.n == s.words+2:
		return models.Chunk{FinishReason: "stop"}, nil
	}
	return models.Chunk{}, io.EOF
}

func (s *fakeStream) Usage() models.Usage {
	return models.Usage{PromptTokens: 3, CompletionTokens: max(0, s.n-2), Estimated: true}
}

func (s *fakeStream) Close() error {
	s.once.Do(func() {
		close(s.closed)
		s.b.open.Add(-1)
		select {
		case s.b.closes <- s.r.ID:
		default:
		}
	})
	return nil
}

// testGateway is a gateway serving on loopback TCP with the real router and scheduler in
// front of a fakeBackend: models "m" (chat, completions) and "e" (embeddings).
type testGateway struct {
	URL   string
	Addr  string
	GW    *gateway.Server
	Sched *scheduler.Scheduler
	Fake  *fakeBackend
	// Done receives the id of each request whose engine stream is closed and its slot
	// given back (the gateway's Record hook, which runs after both).
	Done chan string
}

func startGateway(t testing.TB, opts gateway.Options, slots int) *testGateway {
	t.Helper()
	if slots == 0 {
		slots = 4
	}
	fb := &fakeBackend{slots: slots, release: make(chan struct{}), closes: make(chan string, 1024)}
	done := make(chan string, 1024)
	if opts.Record == nil {
		opts.Record = func(r *models.Request, _ models.Target, _ *models.Usage) {
			select {
			case done <- r.ID:
			default:
			}
		}
	}
	reg := prometheus.NewRegistry()
	sched := scheduler.New(map[string]scheduler.Backend{"fake": fb}, scheduler.Options{Registry: reg, MaxQueue: 64})
	rt, err := router.New([]router.Entry{
		{Name: "m", Backend: "fake", UpstreamModel: "m", Kind: "chat"},
		{Name: "e", Backend: "fake", UpstreamModel: "e", Kind: "embedding"},
	})
	if err != nil {
		t.Fatal(err)
	}
	opts.Router, opts.Scheduler, opts.Models, opts.Registry = rt, sched, rt.Models, reg
	gw, err := gateway.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { _ = gw.Serve(ln); close(served) }()
	t.Cleanup(func() {
		select {
		case <-fb.release:
		default:
			close(fb.release)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
		<-served
	})
	return &testGateway{URL: "http://" + ln.Addr().String(), Addr: ln.Addr().String(), GW: gw, Sched: sched, Fake: fb, Done: done}
}

// inflight is the scheduler's count of requests holding a slot.
func (g *testGateway) inflight() int {
	n := 0
	for _, st := range g.Sched.Status() {
		n += st.InFlight
	}
	return n
}

// queued is the scheduler's count of waiting requests.
func (g *testGateway) queued() int {
	for _, st := range g.Sched.Status() {
		return st.Queued
	}
	return 0
}

// waitClosed waits for n engine streams to be closed.
func (g *testGateway) waitClosed(t testing.TB, n int, why string) {
	t.Helper()
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for range n {
		select {
		case <-g.Fake.closes:
		case <-timeout.C:
			t.Fatalf("%s: engine stream not closed after 20s (%d open, %d in flight)", why, g.Fake.open.Load(), g.inflight())
		}
	}
}

// slotFree checks that the engine slot is free again: with one slot, a new request can
// only be answered once the previous one has given its slot back. Afterwards nothing
// is in flight.
func (g *testGateway) slotFree(t testing.TB) {
	t.Helper()
	resp, b := post(t, g.URL+"/v1/chat/completions", chatBody("words 1", false))
	if resp.StatusCode != 200 {
		t.Fatalf("request after the slot was freed: %d %s", resp.StatusCode, b)
	}
	if n := g.inflight(); n != 0 {
		t.Fatalf("%d requests in flight after every request ended", n)
	}
	if n := g.Fake.open.Load(); n != 0 {
		t.Fatalf("%d engine streams still open", n)
	}
}
