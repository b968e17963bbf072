package e2e

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/internal/enginetest"
	"github.com/sluice-llm/sluice/models/tinymodel"
	_ "modernc.org/sqlite" // to read the ledger's file
)

// buildSluice builds the sluice binary (cmd/sluice) into a test directory.
func buildSluice(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sluice")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "../cmd/sluice")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// sluiceProc is a `sluice serve` process.
type sluiceProc struct {
	cmd    *exec.Cmd
	URL    string // http://127.0.0.1:port
	stderr *lockedBuf
	exited chan error
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startSluice runs `sluice serve --config cfg` and returns once it says it is ready.
func startSluice(t *testing.T, bin, cfg, dataDir string) *sluiceProc {
	t.Helper()
	port := listenPort(t, cfg)
	p := &sluiceProc{URL: "http://127.0.0.1:" + port, stderr: &lockedBuf{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(bin, "serve", "--config", cfg, "--log-level", "debug")
	p.cmd.Env = append(os.Environ(), "SLUICE_CACHE="+dataDir, "SLUICE_DATA="+dataDir)
	p.cmd.Stderr = p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		said := false
		for sc.Scan() {
			if !said && strings.HasPrefix(sc.Text(), "sluice ready") {
				said = true
				ready <- true
			}
		}
		if !said {
			ready <- false
		}
		p.exited <- p.cmd.Wait()
	}()
	t.Cleanup(func() { p.stop(t) })
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("sluice exited before it was ready:\n%s", tailOf(p.stderr.String(), 3000))
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("sluice not ready in 3 minutes:\n%s", tailOf(p.stderr.String(), 3000))
	}
	return p
}

// kill9 kills sluice with SIGKILL (its llama-server dies with it: Pdeathsig).
func (p *sluiceProc) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	p.exited <- nil
}

// stop ends sluice with SIGTERM (once).
func (p *sluiceProc) stop(t *testing.T) {
	select {
	case err := <-p.exited:
		p.exited <- err
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err
	case <-time.After(45 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Errorf("sluice did not stop on SIGTERM")
	}
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func listenPort(t *testing.T, cfg string) string {
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "listen: 127.0.0.1:"); ok {
			return v
		}
	}
	t.Fatalf("config %s has no listen: 127.0.0.1:PORT", cfg)
	return ""
}

// ledgerConfig writes a config for `sluice serve`: a managed llama-server with the tiny
// model ("tiny"), optionally a fake cloud serving "gpt-4o-mini" per token, keys, the
// admin key and the ledger at dir/ledger.db. extra is appended (more YAML).
func ledgerConfig(t *testing.T, dir string, cloudURL string, keys string, extra string) string {
	t.Helper()
	port := enginetest.FreePort(t)
	var b strings.Builder
	fmt.Fprintf(&b, "server:\n  listen: 127.0.0.1:%d\n  admin_keys: [%q]\n", port, adminKey)
	if keys != "" {
		b.WriteString("  api_keys:\n" + keys)
	}
	fmt.Fprintf(&b, "engines:\n  - name: local\n    kind: llamacpp\n    model_path: %s\n    binary: %s\n    slots: 4\n    threads: 1\n    context: 1024\n    models: [{name: tiny}]\n",
		enginetest.TinyModel(t, tinymodel.Options{}), enginetest.LlamaServerPath(t))
	if cloudURL != "" {
		fmt.Fprintf(&b, "  - name: cloud\n    kind: openai\n    cloud: true\n    url: %s\n    max_concurrency: 16\n    models: [{name: gpt-4o-mini}]\n", cloudURL)
	}
	fmt.Fprintf(&b, "ledger:\n  path: %s\n", filepath.Join(dir, "ledger.db"))
	b.WriteString(extra)
	p := filepath.Join(dir, "sluice-"+strconv.Itoa(port)+".yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const adminKey = "sk-admin-e2e"

// fakeCloud is an OpenAI-compatible cloud API on loopback: GET /v1/models and POST
// /v1/chat/completions, streamed (SSE, a usage chunk when asked) or not, in OpenAI's
// wire format. Every answer reports 10 prompt tokens and max_tokens completion tokens.
type fakeCloud struct {
	URL  string
	srv  *http.Server
	mu   sync.Mutex
	hits int
}

func startFakeCloud(t *testing.T) *fakeCloud {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeCloud{URL: "http://" + ln.Addr().String() + "/v1"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1721172741,"owned_by":"system"}]}`)
	})
	mux.HandleFunc("POST /v1/chat/completions", f.chat)
	f.srv = &http.Server{Handler: mux}
	go func() { _ = f.srv.Serve(ln) }()
	t.Cleanup(func() { _ = f.srv.Close() })
	return f
}

func (f *fakeCloud) chat(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model         string `json:"model"`
		Stream        bool   `json:"stream"`
		MaxTokens     int    `json:"max_tokens"`
		StreamOptions *struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		w.WriteHeader(400)
		io.WriteString(w, `{"error":{"message":"bad json","type":"invalid_request_error","param":null,"code":null}}`)
		return
	}
	f.mu.Lock()
	f.hits++
	n := f.hits
	f.mu.Unlock()
	completion := req.MaxTokens
	if completion == 0 {
		completion = 16
	}
	id := fmt.Sprintf("chatcmpl-fake%d", n)
	usage := fmt.Sprintf(`{"prompt_tokens":10,"completion_tokens":%d,"total_tokens":%d,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}`, completion, completion+10)
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"object":"chat.completion","created":1721172741,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the cloud.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":%s,"system_fingerprint":"fp_0ba0d124f1"}`, id, usage)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	chunk := func(choices string) {
		fmt.Fprintf(w, "data: {\"id\":%q,\"object\":\"chat.completion.chunk\",\"created\":1721172741,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":%s}\n\n", id, choices)
		w.(http.Flusher).Flush()
	}
	chunk(`[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]`)
	chunk(`[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]`)
	chunk(`[{"index":0,"delta":{"content":" from the cloud."},"logprobs":null,"finish_reason":null}]`)
	chunk(`[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]`)
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		fmt.Fprintf(w, "data: {\"id\":%q,\"object\":\"chat.completion.chunk\",\"created\":1721172741,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[],\"usage\":%s}\n\n", id, usage)
	}
	io.WriteString(w, "data: [DONE]\n\n")
}

// openLedgerDB opens the ledger's SQLite file to read it as an auditor would.
func openLedgerDB(t *testing.T, dir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "ledger.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
