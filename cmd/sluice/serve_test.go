package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/sluice-llm/sluice/internal/enginetest"
	"github.com/sluice-llm/sluice/models/tinymodel"
	"go.uber.org/goleak"
)

// TestServeManaged runs `sluice serve --model FILE` as a user would: sluice starts and
// supervises llama-server, answers a streamed chat through the OpenAI Go SDK, and on
// shutdown stops the engine and leaves no goroutine behind.
func TestServeManaged(t *testing.T) {
	// fasthttp keeps a process-wide Date-header ticker and lets its worker-pool cleaner
	// finish its current sleep after shutdown; goroutines that earlier tests of this
	// package left (the bench tests' fasthttp clients sleep out their idle-connection
	// cleaners for minutes) are not this test's; everything else must be gone.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"))
	model := enginetest.TinyModel(t, tinymodel.Options{})
	bin := enginetest.LlamaServerPath(t)
	dir := t.TempDir()
	link := filepath.Join(dir, "demo.gguf")
	if err := os.Symlink(model, link); err != nil {
		t.Fatal(err)
	}
	port := enginetest.FreePort(t)
	cache := t.TempDir()
	t.Setenv("SLUICE_CACHE", cache)      // the admin key file goes there
	t.Setenv("SLUICE_DATA", t.TempDir()) // and the ledger here
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"serve", "--model", link, "--llama-server", bin, "--slots", "2",
			"--listen", "127.0.0.1:" + itoa(port), "--log-level", "warn"}, pw, io.Discard)
		pw.Close()
	}()
	lines := bufio.NewScanner(pr)
	var out []string
	ready := false
	for !ready && lines.Scan() {
		out = append(out, lines.Text())
		ready = strings.HasPrefix(lines.Text(), "sluice ready")
	}
	if !ready {
		t.Fatalf("no ready line; output:\n%s", strings.Join(out, "\n"))
	}
	if lines.Scan() {
		out = append(out, lines.Text())
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if !strings.Contains(strings.Join(out, "\n"), "try: curl -N http://127.0.0.1:") {
		t.Errorf("ready output lacks the sample curl:\n%s", strings.Join(out, "\n"))
	}

	c := oai.NewClient(option.WithBaseURL("http://127.0.0.1:"+itoa(port)+"/v1/"), option.WithAPIKey("x"), option.WithMaxRetries(0))
	rctx, rcancel := context.WithTimeout(ctx, time.Minute)
	defer rcancel()
	s := c.Chat.Completions.NewStreaming(rctx, oai.ChatCompletionNewParams{
		Model:         "demo",
		Messages:      []oai.ChatCompletionMessageParamUnion{oai.UserMessage("Hello!")},
		MaxTokens:     oai.Int(20),
		StreamOptions: oai.ChatCompletionStreamOptionsParam{IncludeUsage: oai.Bool(true)},
	})
	text, tokens := "", int64(0)
	for s.Next() {
		ch := s.Current()
		if len(ch.Choices) > 0 {
			text += ch.Choices[0].Delta.Content
		}
		tokens += ch.Usage.CompletionTokens
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if text == "" || tokens == 0 {
		t.Fatalf("text %q, completion tokens %d", text, tokens)
	}
	// The managed engine is a child of this process: find it before shutdown.
	pid := llamaChild(t, port)
	resp, err := http.Get("http://127.0.0.1:" + itoa(port) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, re := range []string{
		`sluice_tokens_total\{engine="local",model="demo",type="completion"\} [1-9]`,
		`sluice_cost_usd_total\{engine="local",gpu="cpu",model="demo",phase="completion"\} [1-9]`,
		`sluice_cost_usd_total\{engine="local",gpu="cpu",model="",phase="idle"\} [1-9]`,
		`sluice_engine_price_usd_per_hour\{engine="local",gpu="cpu"\} 0.05`,
		`sluice_savings_usd\{model="demo",reference="gpt-4o-mini"\} -?[0-9]`, // a small model, a small reference
		`sluice_box_cost_usd_total\{pool="box:[^"]+"\} [0-9]`,
		`sluice_gpus 0`,
	} {
		if !regexp.MustCompile(re).Match(b) {
			t.Errorf("metrics lack %s", re)
		}
	}
	// A non-streamed answer reports its cost in a header; sluice status shows the tables.
	resp, err = http.Post("http://127.0.0.1:"+itoa(port)+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"demo","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c, err := strconv.ParseFloat(resp.Header.Get("X-Sluice-Cost-USD"), 64); err != nil || c <= 0 || resp.Header.Get("X-Sluice-Reference-Model") != "gpt-4o-mini" {
		t.Errorf("cost headers: %v", resp.Header)
	}
	var status strings.Builder
	t.Setenv("SLUICE_CACHE", cache)
	if code := run(ctx, []string{"status", "--url", "http://127.0.0.1:" + itoa(port)}, &status, &status); code != 0 ||
		!strings.Contains(status.String(), "demo") || !strings.Contains(status.String(), "$/M TOKENS") {
		t.Errorf("sluice status (exit %d):\n%s", code, status.String())
	}

	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("exit code %d", c)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	if pid > 0 {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Fatalf("llama-server %d still running after shutdown", pid)
		}
	}
}

// llamaChild finds the pid of the llama-server child (0 if /proc is unavailable).
func llamaChild(t *testing.T, _ int) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	me := itoa(os.Getpid())
	for _, e := range entries {
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat))
		if len(f) > 3 && f[3] == me && strings.Contains(f[1], "llama-server") {
			pid := 0
			for _, c := range e.Name() {
				pid = pid*10 + int(c-'0')
			}
			return pid
		}
	}
	t.Fatal("no llama-server child process found")
	return 0
}

func itoa(i int) string { return strconv.Itoa(i) }
