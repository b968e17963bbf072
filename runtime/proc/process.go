package proc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Spec describes an engine process.
type Spec struct {
	Name   string   // for logs, e.g. "llama-server/local"
	Binary string   // path
	Args   []string // command line; "{port}" is replaced by the port
	// BaseEnv and Env are the engine's whole environment: it inherits nothing from
	// sluice's own, which may hold secrets (API keys, cloud credentials). BaseEnv is
	// what sluice passes on (config.EngineEnviron: PATH, HOME, locale, CUDA_*, ...), Env
	// the engine's own settings (e.g. CUDA_VISIBLE_DEVICES=0), which win.
	BaseEnv []string
	Env     []string
	Port    int // loopback port; 0 picks a free one once, kept across restarts
	// HealthPath is polled on 127.0.0.1:port until it answers 200 (default "/health").
	HealthPath string
	// StartTimeout bounds the wait for health after a launch (default 2 minutes).
	StartTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between restarts (default 500ms, 30s).
	MinBackoff, MaxBackoff time.Duration
	// MaxFailures is how many launches in a row may fail before giving up (default 10).
	MaxFailures int
	// InFlight, when set, reports requests in flight; Stop waits for it to reach zero.
	InFlight func() int
	Logger   *slog.Logger
	// LogLevel is the level engine output is logged at (default Debug).
	LogLevel slog.Level
}

// Process is one supervised engine process.
type Process struct {
	spec Spec
	log  *slog.Logger

	mu       sync.Mutex
	state    State
	reason   string
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the current process ends
	changed  chan struct{} // closed and replaced at every state change
	restarts int
	tail     []string // last lines of output
}

// New prepares a process; Run starts it.
func New(spec Spec) (*Process, error) {
	if spec.Binary == "" {
		return nil, errors.New("proc: no binary given")
	}
	if _, err := exec.LookPath(spec.Binary); err != nil {
		return nil, fmt.Errorf("proc: %s: %w", spec.Name, err)
	}
	if spec.Port == 0 {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		spec.Port = p
	}
	if spec.HealthPath == "" {
		spec.HealthPath = "/health"
	}
	if spec.StartTimeout <= 0 {
		spec.StartTimeout = 2 * time.Minute
	}
	if spec.MinBackoff <= 0 {
		spec.MinBackoff = 500 * time.Millisecond
	}
	if spec.MaxBackoff <= 0 {
		spec.MaxBackoff = 30 * time.Second
	}
	if spec.MaxFailures <= 0 {
		spec.MaxFailures = 10
	}
	if spec.Logger == nil {
		spec.Logger = slog.New(slog.DiscardHandler)
	}
	return &Process{spec: spec, log: spec.Logger.With("engine", spec.Name), changed: make(chan struct{})}, nil
}

// FreePort asks the kernel for a free loopback port.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("proc: no free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Port is the loopback port the engine listens on.
func (p *Process) Port() int { return p.spec.Port }

// URL is http://127.0.0.1:port.
func (p *Process) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", p.spec.Port) }

// State returns the current state and why (for failed or backoff states).
func (p *Process) State() (State, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state, p.reason
}

// Restarts counts launches after the first.
func (p *Process) Restarts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.restarts
}

// Changed returns a channel closed at the next state change.
func (p *Process) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

func (p *Process) setLocked(to State, reason string) error {
	if p.state == to {
		p.reason = reason
		return nil
	}
	if !CanTransition(p.state, to) {
		return fmt.Errorf("proc: %s: illegal transition %s -> %s", p.spec.Name, p.state, to)
	}
	p.log.Info("engine state", "from", p.state.String(), "to", to.String(), "reason", reason)
	p.state, p.reason = to, reason
	close(p.changed)
	p.changed = make(chan struct{})
	return nil
}

func (p *Process) set(to State, reason string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.setLocked(to, reason)
}

// WaitReady blocks until the process is Ready, Failed or ctx ends.
func (p *Process) WaitReady(ctx context.Context) error {
	for {
		p.mu.Lock()
		st, reason, ch := p.state, p.reason, p.changed
		p.mu.Unlock()
		switch st {
		case Ready:
			return nil
		case Failed:
			return fmt.Errorf("proc: %s failed: %s", p.spec.Name, reason)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("proc: %s not ready (%s): %w", p.spec.Name, st, ctx.Err())
		case <-ch:
		}
	}
}

// Run starts the process and keeps it running until ctx ends; then it drains (waiting
// for InFlight to reach zero, at most drainTimeout) and stops it. It returns when the
// process has exited for good.
func (p *Process) Run(ctx context.Context, drainTimeout time.Duration) error {
	failures := 0
	backoff := p.spec.MinBackoff
	for {
		if ctx.Err() != nil {
			return p.stop(drainTimeout)
		}
		if err := p.set(Starting, ""); err != nil {
			return err
		}
		started := time.Now()
		err := p.launch()
		if err == nil {
			err = p.waitHealthy(ctx)
		}
		if err == nil {
			_ = p.set(Ready, "")
			failures = 0
			select {
			case <-ctx.Done():
				return p.stop(drainTimeout)
			case <-p.exitedCh():
				err = fmt.Errorf("exited: %s", p.exitReason())
			}
		}
		if ctx.Err() != nil {
			return p.stop(drainTimeout)
		}
		p.kill()
		if time.Since(started) > time.Minute {
			backoff = p.spec.MinBackoff // it ran a good while: start the backoff over
		}
		failures++
		p.log.Warn("engine died", "err", err, "attempt", failures, "output", p.lastOutput(8))
		if failures >= p.spec.MaxFailures {
			_ = p.set(Backoff, err.Error())
			_ = p.set(Failed, fmt.Sprintf("%d failed starts in a row; last: %v; output: %s", failures, err, p.lastOutput(4)))
			<-ctx.Done()
			return p.stop(drainTimeout)
		}
		_ = p.set(Backoff, err.Error())
		select {
		case <-ctx.Done():
			return p.stop(drainTimeout)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, p.spec.MaxBackoff)
		p.mu.Lock()
		p.restarts++
		p.mu.Unlock()
	}
}

func (p *Process) exitedCh() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}

func (p *Process) exitReason() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.cmd.ProcessState != nil {
		return p.cmd.ProcessState.String()
	}
	return "unknown"
}

func (p *Process) launch() error {
	args := make([]string, len(p.spec.Args))
	port := fmt.Sprint(p.spec.Port)
	for i, a := range p.spec.Args {
		args[i] = strings.ReplaceAll(a, "{port}", port)
	}
	cmd := exec.Command(p.spec.Binary, args...)
	cmd.Env = make([]string, 0, len(p.spec.BaseEnv)+len(p.spec.Env)) // never nil: nil inherits everything
	cmd.Env = append(append(cmd.Env, p.spec.BaseEnv...), p.spec.Env...)
	// The engine dies with sluice, and lives in its own process group so a kill reaches
	// its children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.spec.Binary, err)
	}
	exited := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	go func() {
		p.capture(out)
		_ = cmd.Wait()
		close(exited)
	}()
	return nil
}

// capture logs the engine's output line by line, keeping the last lines for errors.
func (p *Process) capture(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		p.log.Log(context.Background(), p.spec.LogLevel, "["+p.spec.Name+"] "+line)
		p.mu.Lock()
		if len(p.tail) >= 40 {
			p.tail = p.tail[1:]
		}
		p.tail = append(p.tail, line)
		p.mu.Unlock()
	}
}

func (p *Process) lastOutput(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.tail
	if len(t) > n {
		t = t[len(t)-n:]
	}
	return strings.Join(t, " | ")
}

func (p *Process) waitHealthy(ctx context.Context) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	url := p.URL() + p.spec.HealthPath
	deadline := time.NewTimer(p.spec.StartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	exited := p.exitedCh()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := hc.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return fmt.Errorf("exited while starting (%s): %s", p.exitReason(), p.lastOutput(6))
		case <-deadline.C:
			return fmt.Errorf("not healthy after %v: %s", p.spec.StartTimeout, p.lastOutput(6))
		case <-tick.C:
		}
	}
}

// kill ends the current process at once.
func (p *Process) kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
}

// Kill sends SIGKILL to the running engine (for tests and operators); the supervisor
// restarts it.
func (p *Process) Kill() {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// PID of the running engine (0 if none).
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// stop drains and terminates the process: SIGTERM, then SIGKILL after 5 seconds.
func (p *Process) stop(drainTimeout time.Duration) error {
	p.mu.Lock()
	st := p.state
	if st == Ready || st == Starting {
		_ = p.setLocked(Draining, "stopping")
	}
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if st == Ready && p.spec.InFlight != nil && drainTimeout > 0 {
		deadline := time.Now().Add(drainTimeout)
		for p.spec.InFlight() > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond) // polling a counter owned by the caller
		}
	}
	if cmd != nil && cmd.Process != nil {
		select {
		case <-exited:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-exited
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != Stopped {
		if !CanTransition(p.state, Stopped) {
			_ = p.setLocked(Draining, "stopping")
		}
		_ = p.setLocked(Stopped, "")
	}
	return nil
}
