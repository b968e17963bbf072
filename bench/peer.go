package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// peerName is what a peer may be called: it becomes a JSON key (peer_<name>_...).
var peerName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// ParsePeer reads NAME=URL (the --peer flag).
func ParsePeer(s string) (Peer, error) {
	name, u, ok := strings.Cut(s, "=")
	if !ok {
		return Peer{}, fmt.Errorf("bench: peer %q: want NAME=URL", s)
	}
	p := Peer{Name: strings.TrimSpace(name), URL: strings.TrimRight(strings.TrimSpace(u), "/")}
	return p, checkPeer(p)
}

// ParsePeerHeader reads NAME=Header:Value (the --peer-header flag): a header for peer NAME.
func ParsePeerHeader(s string) (name string, h Header, err error) {
	name, hv, ok := strings.Cut(s, "=")
	if ok {
		h.Name, h.Value, ok = strings.Cut(hv, ":")
	}
	name, h.Name, h.Value = strings.TrimSpace(name), strings.TrimSpace(h.Name), strings.TrimSpace(h.Value)
	if !ok || name == "" || h.Name == "" || strings.ContainsAny(h.Name, " \t\r\n") || strings.ContainsAny(h.Value, "\r\n") {
		return "", Header{}, fmt.Errorf("bench: peer header %q: want NAME=Header:Value", s)
	}
	return name, h, nil
}

func checkPeer(p Peer) error {
	if !peerName.MatchString(p.Name) {
		return fmt.Errorf("bench: peer name %q: want lower-case letters, digits, - or _ (up to 32)", p.Name)
	}
	u, err := url.Parse(p.URL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("bench: peer %s: URL %q: want http://HOST:PORT[/base path]", p.Name, p.URL)
	}
	return nil
}

// ready sends t one request per mode until both are answered correctly, for up to
// wait: a peer that was just started, or that checks its upstream's health on a timer,
// may refuse at first.
func (g *generator) ready(ctx context.Context, t *loadTarget, wait time.Duration) error {
	w := g.workers[0]
	deadline := time.Now().Add(wait)
	for _, mode := range []Mode{NonStream, Stream} {
		for {
			w.req.Reset()
			w.req.SetRequestURI(t.url)
			g.setHeaders(&w.req, t)
			n := g.seq.Add(1)
			body, mark := g.traffic.body(mode, n)
			w.req.SetBody(body)
			stamp(w.req.Body(), mark, n)
			_, _, err := w.do(t.clients[mode], g.check, mode, time.Now())
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("bench: peer %s (%s) did not answer a %s request correctly within %v: %w", t.name, t.url, mode, wait, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// peerResources reads a peer process's CPU time and peak RSS from /proc (pid 0:
// unknown, zeros), and the fake engine's connection count.
func peerResources(pid int, engine *hopProc) (resources, error) {
	var r resources
	if pid > 0 {
		r.cpu, r.rss, _ = procUsage(pid)
	}
	es, err := engine.stats()
	if err != nil {
		return r, err
	}
	r.engineConns = es.EngineConns
	return r, nil
}

// procUsage reads a process's CPU time (user + system) and peak RSS (VmHWM).
func procUsage(pid int) (cpu time.Duration, rss int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name may hold spaces: fields are counted after its closing paren.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, errors.New("bench: unreadable /proc stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, 0, errors.New("bench: short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // utime: field 14 of stat, 12th after the name
	st, _ := strconv.ParseInt(f[12], 10, 64)
	cpu = time.Duration(ut+st) * time.Second / clockTicks
	st2, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return cpu, 0, err
	}
	return cpu, statusKB(string(st2), "VmHWM:") * 1024, nil
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// statusKB reads a "Name:   123 kB" line of /proc/PID/status.
func statusKB(status, name string) int64 {
	for line := range strings.Lines(status) {
		if rest, ok := strings.CutPrefix(line, name); ok {
			v, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return v
		}
	}
	return 0
}

// pidListening finds the process listening on rawURL's TCP port on this machine (Linux:
// /proc/net/tcp{,6} for the socket, then each process's open files for it).
func pidListening(rawURL string) (int, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0, err
	}
	_, ps, err := net.SplitHostPort(u.Host)
	if err != nil {
		ps = "80"
	}
	port, err := strconv.Atoi(ps)
	if err != nil {
		return 0, err
	}
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		listeningInodes(f, port, inodes)
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no process listens on port %d here", port)
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		l, err := os.Readlink(fd)
		if err != nil || !strings.HasPrefix(l, "socket:[") {
			continue
		}
		if inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] {
			pid, err := strconv.Atoi(strings.Split(fd, "/")[2])
			if err == nil {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("the socket listening on port %d belongs to no process visible here", port)
}

// listeningInodes adds the inodes of sockets listening on port in a /proc/net/tcp file.
func listeningInodes(path string, port int, out map[string]bool) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	want := fmt.Sprintf(":%04X", port)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		if len(fs) < 10 || fs[3] != "0A" || !strings.HasSuffix(fs[1], want) {
			continue
		}
		out[fs[9]] = true
	}
}
