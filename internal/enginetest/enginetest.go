package enginetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
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

	"github.com/sluice-llm/sluice/models/tinymodel"
)

// Versions the scripts build; keep in step with scripts/common.sh.
const (
	LlamaVersion  = "3.21.1"
	OllamaVersion = "0.17.4"
)

// CacheDir is $SLUICE_CACHE or ~/.cache/sluice.
func CacheDir() string {
	if d := os.Getenv("SLUICE_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "sluice")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "sluice")
}

func missing(t testing.TB, what, hint string) {
	t.Helper()
	msg := fmt.Sprintf("%s not found (%s); run `make engines` or set the path", what, hint)
	if os.Getenv("SLUICE_ALLOW_MISSING_ENGINES") == "1" {
		t.Skip(msg)
	}
	t.Fatal(msg)
}

func find(t testing.TB, env, cached, what string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", env, p, err)
		}
		return p
	}
	if _, err := os.Stat(cached); err == nil {
		return cached
	}
	missing(t, what, env+" unset and "+cached+" absent")
	return ""
}

// LlamaServerPath returns the llama-server binary.
func LlamaServerPath(t testing.TB) string {
	return find(t, "SLUICE_LLAMA_SERVER",
		filepath.Join(CacheDir(), "engines", "llama-server-"+LlamaVersion+"-cpu", "llama-server"), "llama-server")
}

// OllamaPath returns the ollama binary.
func OllamaPath(t testing.TB) string {
	return find(t, "SLUICE_OLLAMA", filepath.Join(CacheDir(), "engines", "ollama-"+OllamaVersion, "ollama"), "ollama")
}

// VocabPath returns the Llama-2 tokenizer.json.
func VocabPath(t testing.TB) string {
	return find(t, "SLUICE_VOCAB", filepath.Join(CacheDir(), "vocab", "llama2", "tokenizer.json"), "Llama-2 tokenizer.json")
}

var modelMu sync.Mutex // serialises generation within one test binary

// TinyModel returns the path of a generated model with opts, generating it once into
// the cache (the generator is deterministic, so the file is shared by all tests).
func TinyModel(t testing.TB, opts tinymodel.Options) string {
	t.Helper()
	vocab := VocabPath(t)
	key := sha256.Sum256([]byte(fmt.Sprintf("%+v", opts)))
	dir := filepath.Join(CacheDir(), "models", "test")
	path := filepath.Join(dir, fmt.Sprintf("tiny-%x.gguf", key[:6]))
	modelMu.Lock()
	defer modelMu.Unlock()
	if _, err := os.Stat(path); err == nil {
		return path
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	v, err := tinymodel.LoadVocab(vocab)
	if err != nil {
		t.Fatal(err)
	}
	tmp, err := os.CreateTemp(dir, "gen-*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(tmp)
	if err := tinymodel.Generate(bw, v, opts); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = tmp.Close()
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatal(err)
	}
	return path
}

// FreePort returns a free loopback TCP port.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Proc is a started engine process.
type Proc struct {
	Cmd  *exec.Cmd
	Port int
	URL  string   // http://127.0.0.1:port
	Env  []string // extra environment the process runs with
	log  *syncBuffer
	done chan struct{}
}

// Log returns what the process printed so far.
func (p *Proc) Log() string { return p.log.String() }

// Kill stops the process at once (SIGKILL) and waits for it.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 {
		s.b.Reset()
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t testing.TB, name string, port int, env []string, bin string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	lb := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = lb, lb
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Proc{Cmd: cmd, Port: port, URL: "http://127.0.0.1:" + strconv.Itoa(port), Env: env, log: lb, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("%s log (tail):\n%s", name, tail(lb.String(), 3000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// WaitHTTP polls url until it answers 200 or the timeout passes.
func WaitHTTP(t testing.TB, p *Proc, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(deadline) {
		if p.Exited() {
			t.Fatalf("engine exited before it was ready:\n%s", tail(p.Log(), 3000))
		}
		resp, err := c.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond) // polling an external process; no event to wait on
	}
	t.Fatalf("engine at %s not ready after %v:\n%s", url, timeout, tail(p.Log(), 3000))
}

// LlamaOptions configure StartLlamaServer.
type LlamaOptions struct {
	Model     string // GGUF path (default: the tiny chat model)
	Slots     int    // --parallel (default 2)
	Ctx       int    // total context (default 2048 * slots)
	Threads   int    // default 1
	Embedding bool
	Alias     string
	Extra     []string
}

// StartLlamaServer starts llama-server and waits until /health answers.
func StartLlamaServer(t testing.TB, o LlamaOptions) *Proc {
	t.Helper()
	bin := LlamaServerPath(t)
	if o.Model == "" {
		o.Model = TinyModel(t, tinymodel.Options{Embedding: o.Embedding})
	}
	if o.Slots == 0 {
		o.Slots = 2
	}
	if o.Ctx == 0 {
		o.Ctx = 2048 * o.Slots
	}
	if o.Threads == 0 {
		o.Threads = 1
	}
	port := FreePort(t)
	args := []string{"-m", o.Model, "--host", "127.0.0.1", "--port", strconv.Itoa(port),
		"-c", strconv.Itoa(o.Ctx), "--parallel", strconv.Itoa(o.Slots), "-t", strconv.Itoa(o.Threads), "--metrics"}
	if o.Embedding {
		args = append(args, "--embeddings")
	}
	if o.Alias != "" {
		args = append(args, "--alias", o.Alias)
	}
	args = append(args, o.Extra...)
	p := start(t, "llama-server", port, nil, bin, args...)
	WaitHTTP(t, p, p.URL+"/health", 60*time.Second)
	return p
}

// StartOllama starts `ollama serve` with a private model store.
func StartOllama(t testing.TB, parallel int) *Proc {
	t.Helper()
	return StartOllamaEnv(t, parallel)
}

// StartOllamaEnv is StartOllama with extra environment (OLLAMA_MAX_QUEUE=1, ...).
func StartOllamaEnv(t testing.TB, parallel int, extra ...string) *Proc {
	t.Helper()
	bin := OllamaPath(t)
	home := t.TempDir()
	port := FreePort(t)
	if parallel == 0 {
		parallel = 2
	}
	env := []string{"HOME=" + home, "OLLAMA_HOST=127.0.0.1:" + strconv.Itoa(port),
		"OLLAMA_MODELS=" + filepath.Join(home, "models"), "OLLAMA_NUM_PARALLEL=" + strconv.Itoa(parallel),
		"OLLAMA_KEEP_ALIVE=10m", "OLLAMA_NOPRUNE=1"}
	env = append(env, extra...)
	p := start(t, "ollama", port, env, bin, "serve")
	WaitHTTP(t, p, p.URL+"/api/version", 30*time.Second)
	return p
}

// OllamaCreate registers gguf as model name in the Ollama server p.
func OllamaCreate(t testing.TB, p *Proc, name, gguf string) {
	t.Helper()
	dir := t.TempDir()
	mf := filepath.Join(dir, "Modelfile")
	content := "FROM " + gguf + "\nPARAMETER num_ctx 2048\n"
	if err := os.WriteFile(mf, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, OllamaPath(t), "create", name, "-f", mf)
	cmd.Env = append(os.Environ(), p.Env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ollama create %s: %v\n%s", name, err, out)
	}
	if !strings.Contains(string(out), "success") {
		t.Logf("ollama create output: %s", out)
	}
}
