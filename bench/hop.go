package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// Hops a benchmark can run in a process of its own (Config.Exec): the fake engine, a
// do-nothing proxy, or sluice's pipeline.
const (
	HopEngine = "engine"
	HopNull   = "null"
	HopSluice = "sluice"
)

// hopStats is what a hop process reports about itself on request.
type hopStats struct {
	CPUNS        int64  `json:"cpu_ns"`
	AllocBytes   uint64 `json:"alloc_bytes"`
	AllocObjects uint64 `json:"alloc_objects"`
	EngineConns  int64  `json:"engine_conns"` // the fake engine only: connections accepted
	RSSBytes     int64  `json:"rss_bytes"`    // peak (VmHWM)
	RSSNowBytes  int64  `json:"rss_now_bytes"`
	Goroutines   int    `json:"goroutines"`
	HeapBytes    uint64 `json:"heap_bytes"` // Go heap in use (live and not yet swept)
	StackBytes   uint64 `json:"stack_bytes"`
	RSSFileBytes int64  `json:"rss_file_bytes"` // resident file-backed pages (mmapped files)
	// IdleWorkers ("stats idle" only) are fasthttp's worker goroutines waiting for a
	// connection: a server keeps one 10 to 20 s after its connection closed, so they are
	// left out of a leak count.
	IdleWorkers int `json:"idle_workers,omitempty"`
}

// HopOptions are what a hop process needs to know besides its kind and upstream; Run
// passes them as one JSON argument.
type HopOptions struct {
	Engine EngineOptions `json:"engine"`  // the fake engine's answer and pace
	APIKey string        `json:"api_key"` // sluice's: the key requests must carry ("": auth off)
	// KeyLimits gives sluice's key rate limits (never reached; checked per request).
	KeyLimits bool `json:"key_limits,omitempty"`
	// Slots is the fake engine's slot count in sluice's scheduler (default 256).
	Slots int `json:"slots,omitempty"`
	// NoCache leaves the answer cache out of sluice's pipeline (serve's cache.enabled: false).
	NoCache bool `json:"no_cache,omitempty"`
	// CPUProfile, for the sluice hop: write a CPU profile of the whole run to this file.
	CPUProfile string `json:"cpu_profile,omitempty"`
	// Listen is the fake engine's address ("": a free loopback port).
	Listen string `json:"listen,omitempty"`
}

// ParseHopOptions reads the JSON argument Run gives a hop process ("" or "-": defaults).
func ParseHopOptions(s string) (HopOptions, error) {
	var o HopOptions
	if s == "" || s == "-" {
		return o, nil
	}
	if err := json.Unmarshal([]byte(s), &o); err != nil {
		return o, fmt.Errorf("bench: hop options: %w", err)
	}
	return o, nil
}

// ServeHop runs one hop of the benchmark in this process, for Run with Config.Exec set:
// the fake engine (upstream is ignored), a do-nothing proxy or sluice's pipeline in front
// of the engine at upstream. It listens on a loopback port and writes "listening ADDR"
// to out; then each line "stats" on in is answered with one JSON line on out, and the
// end of in (the parent went away) stops the hop.
func ServeHop(ctx context.Context, hop, upstream string, o HopOptions, in io.Reader, out io.Writer) error {
	var (
		addr   string
		conns  func() int64
		closer func()
	)
	switch hop {
	case HopEngine:
		up, err := startUpstream(o.Engine, o.Listen)
		if err != nil {
			return err
		}
		addr, conns, closer = up.addr(), up.accepted.Load, up.close
	case HopNull:
		p, err := startNullProxy(hop, upstream)
		if err != nil {
			return err
		}
		addr, closer = p.addr(), p.close
	case HopSluice:
		if o.CPUProfile != "" {
			f, err := os.Create(o.CPUProfile)
			if err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
				return err
			}
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
		pl, err := newPipeline(ctx, upstream, o)
		if err != nil {
			return err
		}
		if err := pl.serve(); err != nil {
			pl.close()
			return err
		}
		addr, closer = pl.addr(), pl.close
	default:
		return fmt.Errorf("bench: unknown hop %q (want %s, %s or %s)", hop, HopEngine, HopNull, HopSluice)
	}
	defer closer()
	if _, err := fmt.Fprintf(out, "listening %s\n", addr); err != nil {
		return err
	}
	held := make(chan struct{}) // closed when the hop ends: the "hold" goroutines return
	defer close(held)
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if arg, ok := strings.CutPrefix(line, "hold "); ok {
			// "hold N", a test hook: N goroutines that wait until the hop ends, as a
			// leak would (the soak's test checks that it reports them).
			n, err := strconv.Atoi(arg)
			msg := "ok"
			if err != nil || n < 0 || n > 1<<16 {
				msg = fmt.Sprintf("error bad count %q", arg)
				n = 0
			}
			for range n {
				go func() { <-held }()
			}
			if _, err := fmt.Fprintln(out, msg); err != nil {
				return err
			}
			continue
		}
		if arg, ok := strings.CutPrefix(line, "profile "); ok {
			// A profile of the hop now ("profile heap PATH", "profile goroutine PATH"),
			// for finding what holds memory or goroutines.
			name, path, _ := strings.Cut(arg, " ")
			err := writeProfile(name, path)
			msg := "ok"
			if err != nil {
				msg = "error " + err.Error()
			}
			if _, err := fmt.Fprintln(out, msg); err != nil {
				return err
			}
			continue
		}
		switch line {
		case "stats", "stats idle":
			st := hopStats{CPUNS: int64(processCPU())}
			st.AllocBytes, st.AllocObjects = heapAllocs()
			if conns != nil {
				st.EngineConns = conns()
			}
			st.RSSBytes, _ = peakRSS()
			st.RSSNowBytes, _ = currentRSS()
			st.Goroutines = runtime.NumGoroutine()
			st.HeapBytes, st.StackBytes = heapInUse()
			st.RSSFileBytes, _ = statusBytes("RssFile:")
			if line == "stats idle" {
				// Both counts from one goroutine profile, so that they agree.
				if total, idle, ok := idleWorkers(); ok {
					st.Goroutines, st.IdleWorkers = total, idle
				}
			}
			b, err := json.Marshal(st)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(out, "%s\n", b); err != nil {
				return err
			}
		case "":
		default:
			if _, err := fmt.Fprintf(out, "error unknown command %q\n", sc.Text()); err != nil {
				return err
			}
		}
	}
	return sc.Err()
}

// idleWorkers counts, in one goroutine profile, every goroutine and fasthttp's worker
// goroutines waiting for their next connection (in workerFunc's range over its channel,
// nothing above it but the runtime's frames).
func idleWorkers() (total, idle int, ok bool) {
	var b bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		return 0, 0, false
	}
	p := b.String()
	head, _, _ := strings.Cut(p, "\n")
	total, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(head, "goroutine profile: total ")))
	if err != nil {
		return 0, 0, false
	}
	return total, countIdleWorkers(p), true
}

// countIdleWorkers reads a debug=1 goroutine profile: records of "N @ pcs" followed by
// "#\tpc\tfunction+off\tfile:line" frames, innermost first (the runtime's own frames,
// such as the channel receive, are usually left out of it).
func countIdleWorkers(profile string) int {
	total, n, first := 0, 0, false
	for line := range strings.Lines(profile) {
		fields := strings.Fields(line)
		switch {
		case len(fields) >= 2 && fields[1] == "@":
			c, err := strconv.Atoi(fields[0])
			n, first = c, err == nil
		case first && len(fields) >= 3 && fields[0] == "#" && fields[1] != "labels:":
			fn, _, _ := strings.Cut(fields[2], "+")
			if strings.HasPrefix(fn, "runtime.") {
				continue
			}
			if strings.HasSuffix(fn, "fasthttp.(*workerPool).workerFunc") {
				total += n
			}
			first = false // only the innermost frame outside the runtime counts
		}
	}
	return total
}

// writeProfile writes the named runtime/pprof profile to path: goroutines as text
// (one entry per distinct stack), the others in the protobuf format.
func writeProfile(name, path string) error {
	p := pprof.Lookup(name)
	if p == nil || path == "" {
		return fmt.Errorf("no profile %q or no path", name)
	}
	debug := 0
	if name == "goroutine" {
		debug = 1
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := p.WriteTo(f, debug); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// profile asks the hop for its profile name ("heap", "goroutine") written to path.
func (h *hopProc) profile(name, path string) error {
	return h.command("profile "+name+" "+path, 30*time.Second)
}

// command sends the hop one command line and waits up to d for its "ok".
func (h *hopProc) command(cmd string, d time.Duration) error {
	if _, err := io.WriteString(h.in, cmd+"\n"); err != nil {
		return err
	}
	line, err := h.line(d)
	if err != nil {
		return err
	}
	if line != "ok" {
		return fmt.Errorf("bench: %s hop: %s", h.name, line)
	}
	return nil
}

// heapInUse is the Go heap's bytes in objects (live or not yet swept) and the
// goroutine stacks' bytes.
func heapInUse() (heap, stacks uint64) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		heap = s[0].Value.Uint64()
	}
	if s[1].Value.Kind() == metrics.KindUint64 {
		stacks = s[1].Value.Uint64()
	}
	return heap, stacks
}

// heapAllocs are the process's cumulative heap allocations (bytes, objects).
func heapAllocs() (bytes, objects uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/allocs:objects"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		bytes = s[0].Value.Uint64()
	}
	if s[1].Value.Kind() == metrics.KindUint64 {
		objects = s[1].Value.Uint64()
	}
	return bytes, objects
}

// hopProc is a hop running in a child process.
type hopProc struct {
	name  string
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	addr  string
	waitc chan error
}

// startHop starts exe... hop upstream options and waits for its "listening" line.
func startHop(exe []string, name, hop, upstream string, o HopOptions) (*hopProc, error) {
	if upstream == "" {
		upstream = "-"
	}
	ob, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	args := append(append([]string{}, exe[1:]...), hop, upstream, string(ob))
	cmd := exec.Command(exe[0], args...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outR, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s hop: %w", name, err)
	}
	h := &hopProc{name: name, cmd: cmd, in: in, out: bufio.NewReader(outR), waitc: make(chan error, 1)}
	line, err := h.line(10 * time.Second)
	if err != nil {
		h.close()
		return nil, fmt.Errorf("bench: %s hop did not start: %w", name, err)
	}
	addr, ok := strings.CutPrefix(line, "listening ")
	if !ok {
		h.close()
		return nil, fmt.Errorf("bench: %s hop: unexpected first line %q", name, line)
	}
	h.addr = addr
	return h, nil
}

// line reads one line of the hop's output within d.
func (h *hopProc) line(d time.Duration) (string, error) {
	type res struct {
		s   string
		err error
	}
	c := make(chan res, 1)
	go func() {
		s, err := h.out.ReadString('\n')
		c <- res{strings.TrimSpace(s), err}
	}()
	select {
	case r := <-c:
		if r.err != nil {
			return "", fmt.Errorf("reading its output: %w", r.err)
		}
		return r.s, nil
	case <-time.After(d):
		_ = h.cmd.Process.Kill() // unblocks the reader
		<-c
		return "", fmt.Errorf("no answer within %v", d)
	}
}

func (h *hopProc) stats() (hopStats, error) { return h.query("stats") }

// statsIdle is stats with IdleWorkers counted (a goroutine profile of the hop).
func (h *hopProc) statsIdle() (hopStats, error) { return h.query("stats idle") }

// hold asks the hop for n goroutines that wait until it ends (a leak, for tests).
func (h *hopProc) hold(n int) error { return h.command("hold "+strconv.Itoa(n), 10*time.Second) }

func (h *hopProc) query(cmd string) (hopStats, error) {
	var st hopStats
	if _, err := io.WriteString(h.in, cmd+"\n"); err != nil {
		return st, fmt.Errorf("bench: %s hop: %w", h.name, err)
	}
	line, err := h.line(10 * time.Second)
	if err != nil {
		return st, fmt.Errorf("bench: %s hop stats: %w", h.name, err)
	}
	if err := json.Unmarshal([]byte(line), &st); err != nil {
		return st, fmt.Errorf("bench: %s hop stats %q: %w", h.name, line, err)
	}
	return st, nil
}

// close ends the hop: closing its input asks it to stop; it is killed if it has not
// within five seconds.
func (h *hopProc) close() {
	_ = h.in.Close()
	go func() { h.waitc <- h.cmd.Wait() }()
	select {
	case <-h.waitc:
	case <-time.After(5 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.waitc
	}
}
