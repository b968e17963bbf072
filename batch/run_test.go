package batch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/batch"
	"github.com/sluice-llm/sluice/models"
)

// TestBatchThroughGateway: a batch of good and bad lines runs through the real gateway
// and llama-server: good lines land in the output file with the engine's answers, each
// bad line in the error file (not a failed batch), every request is recorded with the
// batch as its feature at batch priority, and the batch object tells the story.
func TestBatchThroughGateway(t *testing.T) {
	e := startEngine(t)
	h := openManager(t, t.TempDir(), nil, batch.Options{Concurrency: 2, MaxLineBytes: 4096})
	var in []string
	for i := range 6 {
		in = append(in, chatLine(i))
	}
	in = append(in,
		// Over MaxLineBytes (server.max_body_bytes): refused as the endpoint would.
		`{"custom_id":"too-large","method":"POST","url":"/v1/chat/completions","body":{"model":"tiny","messages":[{"role":"user","content":"`+strings.Repeat("x", 5000)+`"}]}}`,
		`{"custom_id":"bad-json","method":"POST",`,
		`{"custom_id":"bad-url","method":"POST","url":"/v1/embeddings","body":{"model":"tiny","input":"x"}}`,
		`{"custom_id":"bad-method","method":"GET","url":"/v1/chat/completions","body":{}}`,
		`{"method":"POST","url":"/v1/chat/completions","body":{"model":"tiny","messages":[{"role":"user","content":"x"}]}}`,
		chatLine(0), // duplicate custom_id
		`{"custom_id":"bad-model","method":"POST","url":"/v1/chat/completions","body":{"model":"nope","messages":[{"role":"user","content":"x"}]}}`,
		`{"custom_id":"bad-stream","method":"POST","url":"/v1/chat/completions","body":{"model":"tiny","stream":true,"messages":[{"role":"user","content":"x"}]}}`,
	)
	file := h.upload("", jsonl(in...))
	b := h.create("", file, `,"metadata":{"job":"nightly"}`)
	if b.Status != batch.StatusValidating || b.Metadata["job"] != "nightly" || b.CreatedAt == nil || b.InProgressAt != nil {
		t.Fatalf("created: %+v", b)
	}
	h.run(e.gw)
	b = h.awaitStatus("", b.ID, batch.StatusCompleted)
	if b.RequestCounts.Total != 14 || b.RequestCounts.Completed != 6 || b.RequestCounts.Failed != 8 {
		t.Fatalf("counts %+v", b.RequestCounts)
	}
	if b.InProgressAt == nil || b.FinalizingAt == nil || b.CompletedAt == nil || *b.InProgressAt < *b.CreatedAt ||
		*b.FinalizingAt < *b.InProgressAt || *b.CompletedAt < *b.FinalizingAt || b.Usage.InputTokens == 0 || b.Usage.OutputTokens == 0 {
		t.Fatalf("timestamps or usage: %+v", b)
	}
	out := h.lines("", b.OutputFileID)
	if len(out) != 6 {
		t.Fatalf("output has %d lines", len(out))
	}
	for i, o := range out {
		var body struct {
			Object  string
			Model   string
			Choices []struct{ Message struct{ Content string } }
		}
		if o.Response == nil || json.Unmarshal(o.Response.Body, &body) != nil {
			t.Fatalf("line %d: %+v", i, o)
		}
		if custom(o) != fmt.Sprintf("req-%d", i) || o.Response.StatusCode != 200 || o.Error != nil || o.Response.RequestID == "" ||
			body.Object != "chat.completion" || body.Model != "tiny" || len(body.Choices) != 1 || !strings.HasPrefix(o.ID, "batch_req_") {
			t.Fatalf("line %d: %+v %+v", i, o, body)
		}
	}
	errs := h.lines("", b.ErrorFileID)
	got := map[string]string{}
	for _, o := range errs {
		switch {
		case o.Error != nil && o.Response == nil:
			got[custom(o)] = o.Error.Code
		case o.Response != nil && o.Error == nil:
			got[custom(o)] = fmt.Sprint(o.Response.StatusCode)
		default:
			t.Fatalf("error line with both or neither: %+v", o)
		}
	}
	want := map[string]string{"<null>": "invalid_json,missing_custom_id,duplicate_custom_id", "too-large": "request_too_large", "bad-url": "invalid_url",
		"bad-method": "invalid_method", "bad-model": "404", "bad-stream": "invalid_body"}
	if len(errs) != 8 {
		t.Fatalf("error file: %d lines: %v", len(errs), got)
	}
	for k, v := range want {
		if !strings.Contains(v, got[k]) || got[k] == "" {
			t.Errorf("error for %s: %q, want %q", k, got[k], v)
		}
	}
	// Every line went through the gateway's recording path, marked as this batch's.
	e.mu.Lock()
	statuses := map[int]int{}
	for _, r := range e.recs {
		if r.Feature != "batch:"+b.ID || r.Priority != models.PriorityBatch || r.Key == nil || r.Key.Residency != models.ResidencyLocalOnly {
			t.Errorf("record: feature %q priority %v key %+v", r.Feature, r.Priority, r.Key)
		}
		statuses[r.Trace.Status]++
	}
	e.mu.Unlock()
	if len(statuses) != 2 || statuses[200] != 6 || statuses[404] != 1 {
		t.Errorf("requests recorded by status: %v, want 6×200 and the unknown model's 404", statuses)
	}
	// The output files are listed as the owner's, with purpose batch_output.
	list, err := h.m.Files(context.Background(), "", "batch_output", "", 0, false)
	if err != nil || !bytes.Contains(list, []byte(b.OutputFileID)) || !bytes.Contains(list, []byte(b.ErrorFileID)) || bytes.Contains(list, []byte(file)) {
		t.Fatalf("files: %s %v", list, err)
	}
	if v := metric(t, h, "sluice_batch_batches", "completed"); v != 1 {
		t.Errorf("sluice_batch_batches{status=completed} = %v", v)
	}
}

// TestResumeAfterStop: sluice stops mid-batch (lines held in flight); a new Manager on
// the same directory finishes it. Lines committed before the stop never run again, the
// rest run, and the output has every line exactly once.
func TestResumeAfterStop(t *testing.T) {
	e := startEngine(t)
	dir := t.TempDir()
	h := openManager(t, dir, nil, batch.Options{Concurrency: 2, DrainTimeout: time.Millisecond})
	var in []string
	for i := range 8 {
		in = append(in, chatLine(i))
	}
	file := h.upload("", jsonl(in...))
	b := h.create("", file, "")
	first := &counting{next: e.gw, calls: map[string]int{}, gate: make(chan struct{})}
	h.run(first)
	for i := range 3 {
		first.gate <- struct{}{}
		h.await("", b.ID, fmt.Sprintf("%d done", i+1), func(b batchObj) bool { return b.RequestCounts.Completed == i+1 })
	}
	h.stop() // two lines are held in flight: abandoned, as in a crash
	if n := first.count("line-3") + first.count("line-4"); n != 2 {
		t.Fatalf("lines in flight at the stop: %d", n)
	}

	h2 := openManager(t, dir, nil, batch.Options{Concurrency: 2})
	if s := h2.get("", b.ID); s.Status != batch.StatusInProgress || s.RequestCounts.Completed != 3 {
		t.Fatalf("after restart: %+v", s)
	}
	second := &counting{next: e.gw, calls: map[string]int{}}
	h2.run(second)
	b = h2.awaitStatus("", b.ID, batch.StatusCompleted)
	for i := range 8 {
		m := fmt.Sprintf("line-%d", i)
		want := 1
		if i < 3 {
			want = 0 // done before the stop
		}
		if second.count(m) != want {
			t.Errorf("%s ran %d times after the restart, want %d", m, second.count(m), want)
		}
	}
	out := h2.lines("", b.OutputFileID)
	var ids []string
	for _, o := range out {
		ids = append(ids, custom(o))
	}
	want := []string{"req-0", "req-1", "req-2", "req-3", "req-4", "req-5", "req-6", "req-7"}
	if !slices.Equal(ids, want) || b.RequestCounts.Completed != 8 || b.RequestCounts.Failed != 0 || b.ErrorFileID != "" {
		t.Fatalf("output %v, batch %+v", ids, b)
	}
}

// TestCrashPoints: a crash before validation commits, and one after the output files
// are written but before the commit that names them: after a restart the batch ends
// once, with one output file, and the half-written files are gone.
func TestCrashPoints(t *testing.T) {
	e := startEngine(t)
	dir := t.TempDir()
	h := openManager(t, dir, nil, batch.Options{Concurrency: 2, DrainTimeout: time.Millisecond})
	file := h.upload("", jsonl(chatLine(0), chatLine(1), `not json`))
	b := h.create("", file, "")
	crashed := batch.CrashAt(h.m, "validate")
	h.run(e.gw)
	<-crashed
	h.stop()

	h = openManager(t, dir, nil, batch.Options{Concurrency: 2, DrainTimeout: time.Millisecond})
	if s := h.get("", b.ID); s.Status != batch.StatusValidating {
		t.Fatalf("after a crash in validation: %+v", s)
	}
	crashed = batch.CrashAt(h.m, "finalize")
	h.run(e.gw)
	<-crashed // the lines are done and the files written
	h.stop()
	ents, _ := os.ReadDir(filepath.Join(dir, "files"))
	if len(ents) < 3 {
		t.Fatalf("expected the unnamed output files on disk, have %d entries", len(ents))
	}

	h = openManager(t, dir, nil, batch.Options{Concurrency: 2})
	ents, _ = os.ReadDir(filepath.Join(dir, "files"))
	if len(ents) != 1 {
		t.Fatalf("after the sweep: %d files, want only the input", len(ents))
	}
	count := &counting{next: e.gw, calls: map[string]int{}}
	h.run(count)
	b = h.awaitStatus("", b.ID, batch.StatusCompleted)
	if count.count("line-0")+count.count("line-1") != 0 {
		t.Fatal("lines ran again after a crash in finalization")
	}
	if out, errs := h.lines("", b.OutputFileID), h.lines("", b.ErrorFileID); len(out) != 2 || len(errs) != 1 || b.RequestCounts.Failed != 1 {
		t.Fatalf("output %d lines, errors %d, batch %+v", len(out), len(errs), b)
	}
	ents, _ = os.ReadDir(filepath.Join(dir, "files"))
	if len(ents) != 3 {
		t.Fatalf("%d files on disk, want input, output and error", len(ents))
	}
}

// TestCancel: a cancelled batch starts no new line, lets those in flight finish and
// keeps their results.
func TestCancel(t *testing.T) {
	e := startEngine(t)
	h := openManager(t, t.TempDir(), nil, batch.Options{Concurrency: 2})
	var in []string
	for i := range 6 {
		in = append(in, chatLine(i))
	}
	b := h.create("", h.upload("", jsonl(in...)), "")
	c := &counting{next: e.gw, calls: map[string]int{}, gate: make(chan struct{}), entered: make(chan string, 8)}
	h.run(c)
	<-c.entered
	<-c.entered
	out, err := h.m.CancelBatch(context.Background(), "", b.ID)
	if err != nil || !bytes.Contains(out, []byte(`"status":"cancelling"`)) || !bytes.Contains(out, []byte(`"cancelling_at":1`)) {
		t.Fatalf("cancel: %s %v", out, err)
	}
	if _, err := h.m.CancelBatch(context.Background(), "", b.ID); err != nil {
		t.Fatalf("cancelling twice: %v", err)
	}
	c.gate <- struct{}{}
	c.gate <- struct{}{}
	b = h.awaitStatus("", b.ID, batch.StatusCancelled)
	if b.RequestCounts.Completed != 2 || b.CancelledAt == nil || len(h.lines("", b.OutputFileID)) != 2 || b.ErrorFileID != "" {
		t.Fatalf("cancelled: %+v", b)
	}
	for i := 2; i < 6; i++ {
		if n := c.count(fmt.Sprintf("line-%d", i)); n != 0 {
			t.Errorf("line-%d ran after the cancel", i)
		}
	}
	_, err = h.m.CancelBatch(context.Background(), "", b.ID)
	if err != nil {
		t.Fatalf("cancel a cancelled batch: %v", err)
	}
	done := h.create("", h.upload("", jsonl(chatLine(9))), "")
	close(c.gate)
	h.awaitStatus("", done.ID, batch.StatusCompleted)
	_, err = h.m.CancelBatch(context.Background(), "", done.ID)
	if !errors.Is(err, models.ErrInvalid) {
		t.Fatalf("cancel a completed batch: %v", err)
	}
}

// TestExpiry: when the 24h window closes, the lines not run go to the error file as
// batch_expired and the batch expires with what it finished.
func TestExpiry(t *testing.T) {
	e := startEngine(t)
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	h := openManager(t, t.TempDir(), clk, batch.Options{Concurrency: 1})
	b := h.create("", h.upload("", jsonl(chatLine(0), chatLine(1), chatLine(2))), "")
	c := &counting{next: e.gw, calls: map[string]int{}, gate: make(chan struct{}), entered: make(chan string, 4)}
	h.run(c)
	<-c.entered
	clk.add(25 * time.Hour)
	c.gate <- struct{}{}
	b = h.awaitStatus("", b.ID, batch.StatusExpired)
	if b.RequestCounts.Completed != 1 || b.RequestCounts.Failed != 2 || b.ExpiredAt == nil {
		t.Fatalf("expired: %+v", b)
	}
	errs := h.lines("", b.ErrorFileID)
	if len(errs) != 2 || custom(errs[0]) != "req-1" || custom(errs[1]) != "req-2" || errs[0].Error.Code != "batch_expired" {
		t.Fatalf("error file %+v", errs)
	}
	if out := h.lines("", b.OutputFileID); len(out) != 1 || custom(out[0]) != "req-0" {
		t.Fatalf("output %+v", out)
	}
}

// TestRetry: a line that finds no capacity (503) runs again and succeeds; it is not an
// error line.
func TestRetry(t *testing.T) {
	e := startEngine(t)
	h := openManager(t, t.TempDir(), nil, batch.Options{Concurrency: 2})
	b := h.create("", h.upload("", jsonl(chatLine(0), chatLine(1), chatLine(2))), "")
	c := &counting{next: e.gw, calls: map[string]int{}, refuse: "line-1"}
	h.run(c)
	b = h.awaitStatus("", b.ID, batch.StatusCompleted)
	if b.RequestCounts.Completed != 3 || b.ErrorFileID != "" || c.count("line-1") != 2 || c.count("line-0") != 1 {
		t.Fatalf("batch %+v, line-1 ran %d times", b, c.count("line-1"))
	}
	if v := metric(t, h, "sluice_batch_lines_total", "retried"); v != 1 {
		t.Fatalf("retried lines metric %v", v)
	}
}
