package e2e

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
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
	"github.com/sluice-llm/sluice/internal/fakecloud"
	"github.com/sluice-llm/sluice/models/tinymodel"
	_ "modernc.org/sqlite" // to read the ledger's file
)

// builtSluice is the sluice binary built once for the package's tests (buildSluice).
type builtSluice struct {
	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

// testBinary is the package's one build of sluice (tests share it).
var testBinary builtSluice

// TestMain runs the package's tests, then removes the binary they shared.
func TestMain(m *testing.M) {
	code := m.Run()
	if testBinary.dir != "" {
		os.RemoveAll(testBinary.dir)
	}
	os.Exit(code)
}

// buildSluice builds the sluice binary (cmd/sluice) once for the package's tests and
// returns its path (TestMain removes it).
func buildSluice(t *testing.T) string {
	t.Helper()
	b := &testBinary
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "sluice-e2e-bin-"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "sluice")
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		b.out, b.err = exec.CommandContext(ctx, "go", "build", "-o", b.path, "../cmd/sluice").CombinedOutput()
	})
	if b.err != nil {
		t.Fatalf("go build: %v\n%s", b.err, b.out)
	}
	return b.path
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

// startSluice runs `sluice serve --config cfg` with its cache and data in dataDir (and
// env added) and returns once it says it is ready. The config's free port may be taken
// meanwhile by another process of a parallel test package (an engine picking its own
// port): sluice then exits with "address already in use", and the config moves to
// another free port for the next try.
func startSluice(t *testing.T, bin, cfg, dataDir string, env ...string) *sluiceProc {
	t.Helper()
	for try := 1; ; try++ {
		p, busy := startSluiceOnce(t, bin, cfg, dataDir, env...)
		if !busy {
			return p
		}
		if try == 3 {
			t.Fatalf("sluice could not bind its port in 3 tries:\n%s", tailOf(p.stderr.String(), 3000))
		}
		port := listenPort(t, cfg)
		b, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.Replace(b, []byte("listen: 127.0.0.1:"+port+"\n"), []byte(fmt.Sprintf("listen: 127.0.0.1:%d\n", enginetest.FreePort(t))), 1)
		if err := os.WriteFile(cfg, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// startSluiceOnce is one try of startSluice; busy: sluice exited because its port was
// taken.
func startSluiceOnce(t *testing.T, bin, cfg, dataDir string, env ...string) (_ *sluiceProc, busy bool) {
	t.Helper()
	port := listenPort(t, cfg)
	p := &sluiceProc{URL: "http://127.0.0.1:" + port, stderr: &lockedBuf{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(bin, "serve", "--config", cfg, "--log-level", "debug")
	p.cmd.Env = append(append(os.Environ(), "SLUICE_CACHE="+dataDir, "SLUICE_DATA="+dataDir), env...)
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
			<-p.exited
			p.exited <- nil // for stop at cleanup
			if strings.Contains(p.stderr.String(), "listen 127.0.0.1:"+port+": listen tcp 127.0.0.1:"+port+": bind: address already in use") {
				return p, true
			}
			t.Fatalf("sluice exited before it was ready:\n%s", tailOf(p.stderr.String(), 3000))
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("sluice not ready in 3 minutes:\n%s", tailOf(p.stderr.String(), 3000))
	}
	return p, false
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
// model ("tiny"), optionally a cloud in region eu serving "gpt-4o-mini" per token (which
// is also the tiny model's overflow), keys, the
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
		fmt.Fprintf(&b, "  - name: cloud\n    kind: openai\n    region: eu\n    url: %s\n    api_key: sk-fake\n    max_concurrency: 16\n    models: [{name: gpt-4o-mini}]\n", cloudURL)
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

// startCloud starts a fake cloud API (internal/fakecloud, OpenAI's wire format).
func startCloud(t *testing.T) *fakecloud.Server {
	t.Helper()
	f, err := fakecloud.Start(fakecloud.Options{Name: "fakeai"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
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

// TestStartSluiceBusyPort: when the config's port is taken before sluice binds it, the
// helper moves the config to another free port and sluice starts there.
func TestStartSluiceBusyPort(t *testing.T) {
	bin := buildSluice(t)
	dir := t.TempDir()
	cfg := ledgerConfig(t, dir, "", "", "")
	taken, err := net.Listen("tcp", "127.0.0.1:"+listenPort(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	p := startSluice(t, bin, cfg, dir)
	if strings.HasSuffix(p.URL, ":"+strings.Split(taken.Addr().String(), ":")[1]) {
		t.Fatalf("sluice claims the taken port: %s", p.URL)
	}
	resp, err := http.Get(p.URL + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
}
