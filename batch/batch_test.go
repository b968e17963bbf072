package batch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/batch"
	"github.com/sluice-llm/sluice/compress"
	"github.com/sluice-llm/sluice/gateway"
	"github.com/sluice-llm/sluice/internal/enginetest"
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/router"
	"github.com/sluice-llm/sluice/runtime/llamacpp"
	"github.com/sluice-llm/sluice/scheduler"
)

// engine is a gateway in front of a real llama-server serving "tiny", used in-process
// as the batch runner's executor.
type engine struct {
	gw    *gateway.Server
	mu    sync.Mutex
	recs  []*models.Request // what the Record hook saw
	sched *scheduler.Scheduler
}

func startEngine(t *testing.T) *engine { return startEngineWith(t, 2, nil) }

// startEngineWith starts the engine with slots, its backend wrapped by wrap (if set).
func startEngineWith(t *testing.T, slots int, wrap func(scheduler.Backend) scheduler.Backend) *engine {
	t.Helper()
	p := enginetest.StartLlamaServer(t, enginetest.LlamaOptions{Slots: slots})
	tk, err := compress.LoadTokenizer(enginetest.VocabPath(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := llamacpp.New(llamacpp.Options{Name: "local", URL: p.URL, Slots: slots, Counter: tk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	var backend scheduler.Backend = b
	if wrap != nil {
		backend = wrap(b)
	}
	reg := prometheus.NewRegistry()
	sched := scheduler.New(map[string]scheduler.Backend{"local": backend}, scheduler.Options{Registry: reg, RefreshEvery: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	sched.RefreshAll(ctx)
	done := make(chan struct{})
	go func() { sched.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	rt, err := router.New([]router.Entry{{Name: "tiny", Backend: "local", UpstreamModel: "tiny"}})
	if err != nil {
		t.Fatal(err)
	}
	e := &engine{sched: sched}
	e.gw, err = gateway.New(gateway.Options{Router: rt, Scheduler: sched, Models: rt.Models, Registry: reg,
		Record: func(r *models.Request, _ models.Target, _ *models.Usage) {
			e.mu.Lock()
			e.recs = append(e.recs, r)
			e.mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// counting wraps an executor: it counts the lines it runs (by the marker in their
// prompt), can hold them at a gate, and can answer a line's first try with a 503.
type counting struct {
	next    batch.Executor
	mu      sync.Mutex
	calls   map[string]int
	gate    chan struct{} // nil: run at once; else each line waits for a token or ctx
	entered chan string   // each line's marker as it starts (if set)
	refuse  string        // a marker whose first try gets 503
}

func (c *counting) Execute(ctx context.Context, cred []byte, url string, body []byte, feature string) (int, string, []byte) {
	m := marker(body)
	c.mu.Lock()
	c.calls[m]++
	first := c.calls[m] == 1
	c.mu.Unlock()
	if c.entered != nil {
		c.entered <- m
	}
	if c.gate != nil {
		select {
		case <-c.gate:
		case <-ctx.Done():
			return 499, "", []byte(`{"error":{"message":"stopping","type":"invalid_request_error","param":null,"code":"canceled"}}`)
		}
	}
	if m == c.refuse && first {
		return 503, "", []byte(`{"error":{"message":"engine unavailable","type":"server_error","param":null,"code":"engine_unavailable"}}`)
	}
	return c.next.Execute(ctx, cred, url, body, feature)
}

func (c *counting) count(m string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[m]
}

// marker finds "line-N" in a request body.
func marker(body []byte) string {
	i := bytes.Index(body, []byte("line-"))
	if i < 0 {
		return ""
	}
	j := i + 5
	for j < len(body) && body[j] >= '0' && body[j] <= '9' {
		j++
	}
	return string(body[i:j])
}

func chatLine(i int) string {
	return fmt.Sprintf(`{"custom_id":"req-%d","method":"POST","url":"/v1/chat/completions","body":{"model":"tiny","max_tokens":4,"temperature":0,"messages":[{"role":"user","content":"line-%d"}]}}`, i, i)
}

func jsonl(lines ...string) io.Reader { return strings.NewReader(strings.Join(lines, "\n") + "\n") }

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type harness struct {
	t      *testing.T
	dir    string
	m      *batch.Manager
	reg    *prometheus.Registry
	cancel context.CancelFunc
	ran    chan error
	clk    *clock
}

func openManager(t *testing.T, dir string, clk *clock, o batch.Options) *harness {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.Dir, o.Registerer = dir, reg
	if clk != nil {
		o.Now = clk.now
	}
	if o.RetryBackoff == 0 {
		o.RetryBackoff = time.Millisecond
	}
	m, err := batch.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: dir, m: m, reg: reg, clk: clk}
	t.Cleanup(func() { h.stop() })
	return h
}

func (h *harness) run(exec batch.Executor) {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.ran = cancel, make(chan error, 1)
	go func() { h.ran <- h.m.Run(ctx, exec) }()
}

// stop ends Run and closes the store (as a restart would).
func (h *harness) stop() {
	if h.m == nil {
		return
	}
	if h.cancel != nil {
		h.cancel()
		if err := <-h.ran; err != nil {
			h.t.Errorf("Run: %v", err)
		}
		h.cancel = nil
	}
	h.m.Close()
	h.m = nil
}

func (h *harness) upload(owner string, r io.Reader) string {
	h.t.Helper()
	out, err := h.m.CreateFile(context.Background(), owner, "in.jsonl", "batch", r)
	if err != nil {
		h.t.Fatal(err)
	}
	var f struct{ ID string }
	json.Unmarshal(out, &f)
	return f.ID
}

type batchObj struct {
	ID            string                                 `json:"id"`
	Status        string                                 `json:"status"`
	OutputFileID  string                                 `json:"output_file_id"`
	ErrorFileID   string                                 `json:"error_file_id"`
	RequestCounts struct{ Total, Completed, Failed int } `json:"request_counts"`
	Usage         struct {
		InputTokens  int     `json:"input_tokens"`
		OutputTokens int     `json:"output_tokens"`
		CostUSD      float64 `json:"cost_usd"`
	} `json:"usage"`
	Errors *struct {
		Data []struct{ Code, Message string }
	} `json:"errors"`
	CreatedAt    *int64            `json:"created_at"`
	InProgressAt *int64            `json:"in_progress_at"`
	FinalizingAt *int64            `json:"finalizing_at"`
	CompletedAt  *int64            `json:"completed_at"`
	CancellingAt *int64            `json:"cancelling_at"`
	CancelledAt  *int64            `json:"cancelled_at"`
	ExpiredAt    *int64            `json:"expired_at"`
	FailedAt     *int64            `json:"failed_at"`
	Metadata     map[string]string `json:"metadata"`
}

func (h *harness) create(owner, file string, extra string) batchObj {
	h.t.Helper()
	out, err := h.m.CreateBatch(context.Background(), owner, nil,
		[]byte(`{"input_file_id":"`+file+`","endpoint":"/v1/chat/completions","completion_window":"24h"`+extra+`}`))
	if err != nil {
		h.t.Fatal(err)
	}
	var b batchObj
	if err := json.Unmarshal(out, &b); err != nil {
		h.t.Fatal(err)
	}
	return b
}

func (h *harness) get(owner, id string) batchObj {
	h.t.Helper()
	out, err := h.m.Batch(context.Background(), owner, id)
	if err != nil {
		h.t.Fatal(err)
	}
	var b batchObj
	if err := json.Unmarshal(out, &b); err != nil {
		h.t.Fatal(err)
	}
	return b
}

// await waits (for changes the runner signals) until cond holds for the batch.
func (h *harness) await(owner, id string, what string, cond func(batchObj) bool) batchObj {
	h.t.Helper()
	deadline := time.NewTimer(2 * time.Minute)
	defer deadline.Stop()
	for {
		ch := h.m.Changed()
		b := h.get(owner, id)
		if cond(b) {
			return b
		}
		select {
		case <-ch:
		case <-deadline.C:
			h.t.Fatalf("batch %s: waited for %s; it is %+v", id, what, b)
		}
	}
}

func (h *harness) awaitStatus(owner, id, status string) batchObj {
	return h.await(owner, id, status, func(b batchObj) bool { return b.Status == status })
}

// outLine is a line of an output or error file.
type outLine struct {
	ID       string  `json:"id"`
	CustomID *string `json:"custom_id"`
	Response *struct {
		StatusCode int             `json:"status_code"`
		RequestID  string          `json:"request_id"`
		Body       json.RawMessage `json:"body"`
	} `json:"response"`
	Error *struct{ Code, Message string } `json:"error"`
}

func (h *harness) lines(owner, id string) []outLine {
	h.t.Helper()
	if id == "" {
		return nil
	}
	rc, n, err := h.m.FileContent(context.Background(), owner, id)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rc.Close()
	data, _ := io.ReadAll(rc)
	if int64(len(data)) != n {
		h.t.Fatalf("file %s: %d bytes, metadata says %d", id, len(data), n)
	}
	var out []outLine
	for _, l := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		var o outLine
		if err := json.Unmarshal(l, &o); err != nil {
			h.t.Fatalf("file %s: line %q: %v", id, l, err)
		}
		out = append(out, o)
	}
	return out
}

func custom(o outLine) string {
	if o.CustomID == nil {
		return "<null>"
	}
	return *o.CustomID
}

// metric reads a metric with one label from the harness's registry.
func metric(t *testing.T, h *harness, name, label string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label {
				if g := m.GetGauge(); g != nil {
					return g.GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s{%s}", name, label)
	return 0
}
