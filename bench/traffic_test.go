package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

const sharedData = "../../shared/data"

// TestLoadTraffic builds the default traffic from the shared data: distinct, valid
// chat requests of the intended sizes (median about 1 KB, some of 4 KB and more), each
// with its ticket mark where stamp looks for it, and a 200-piece answer.
func TestLoadTraffic(t *testing.T) {
	if _, err := os.Stat(sharedData); err != nil {
		t.Fatalf("no shared data at %s (the repository sits beside shared/, as in CI): %v", sharedData, err)
	}
	tr, err := LoadTraffic(TrafficOptions{Data: sharedData, Chunks: 200, Requests: 512})
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Answer.Pieces) != 200 {
		t.Errorf("%d answer pieces, want 200", len(tr.Answer.Pieces))
	}
	if s := tr.Sizes; s.Requests != 512 || s.Median < 700 || s.Median > 1600 || s.Over4KB < 0.05 || s.Max < 4096 {
		t.Errorf("sizes %+v: want 512 requests, median about 1 KB, some at 4 KB or more", s)
	}
	seen := map[string]bool{}
	for i := range tr.marks {
		for _, m := range []Mode{NonStream, Stream} {
			body, mark := tr.body(m, uint64(i))
			b := bytes.Clone(body)
			stamp(b, mark, uint64(i)+7)
			var req struct {
				Model    string `json:"model"`
				Stream   bool   `json:"stream"`
				Messages []struct{ Role, Content string }
			}
			if err := json.Unmarshal(b, &req); err != nil {
				t.Fatalf("request %d (%s) is not JSON: %v\n%s", i, m, err, b)
			}
			if req.Model != "bench" || req.Stream != (m == Stream) || len(req.Messages) != 2 ||
				!strings.HasSuffix(req.Messages[1].Content, fmt.Sprintf("\n\nTicket #%010d", i+7)) {
				t.Fatalf("request %d (%s): %+v", i, m, req)
			}
			if m == NonStream {
				seen[req.Messages[1].Content] = true
			}
		}
	}
	if len(seen) != len(tr.marks) {
		t.Errorf("%d distinct stamped requests of %d", len(seen), len(tr.marks))
	}
	// The fake engine serves that answer, and the checker accepts it whole.
	up, err := startUpstream(EngineOptions{Answer: tr.Answer}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer up.close()
	g, err := newGenerator(1, tr, "")
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	lt := newLoadTarget("direct", "http://"+up.addr(), 2)
	defer lt.close()
	if err := g.ready(t.Context(), lt, time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTraffic(TrafficOptions{Data: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "--data") {
		t.Errorf("missing data: %v, want an error naming --data", err)
	}
}

func TestParsePeer(t *testing.T) {
	p, err := ParsePeer("llama-swap=http://127.0.0.1:9001/")
	if err != nil || p.Name != "llama-swap" || p.URL != "http://127.0.0.1:9001" {
		t.Errorf("ParsePeer = %+v, %v", p, err)
	}
	for _, bad := range []string{"x", "=http://a:1", "Bad=http://a:1", "sluice2=ftp://a", "a=http://"} {
		if _, err := ParsePeer(bad); err == nil {
			t.Errorf("ParsePeer(%q) = nil error", bad)
		}
	}
	if _, err := Run(t.Context(), Config{Rates: []int{10}, Peers: []Peer{{Name: "sluice", URL: "http://127.0.0.1:1"}},
		EngineAddr: "127.0.0.1:1"}); err == nil || !strings.Contains(err.Error(), "taken") {
		t.Errorf("a peer named sluice: %v, want taken", err)
	}
	if _, err := Run(t.Context(), Config{Rates: []int{10}, Peers: []Peer{{Name: "p", URL: "http://127.0.0.1:1"}}}); err == nil ||
		!strings.Contains(err.Error(), "fixed address") {
		t.Errorf("a peer without an engine address: %v", err)
	}
}

// TestPidListening finds this very process behind a port it listens on, and reads its
// CPU time and peak RSS from /proc.
func TestPidListening(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pid, err := pidListening("http://" + ln.Addr().String() + "/base")
	if err != nil || pid != os.Getpid() {
		t.Fatalf("pidListening = %d, %v; want %d", pid, err, os.Getpid())
	}
	cpu, rss, err := procUsage(pid)
	if err != nil || cpu <= 0 || rss <= 0 {
		t.Errorf("procUsage = %v, %d, %v", cpu, rss, err)
	}
	ln.Close()
	if _, err := pidListening("http://" + ln.Addr().String()); err == nil {
		t.Error("a closed port still has a listener")
	}
}

// TestRunWithPeer measures a peer (a do-nothing proxy started before the run, pointed
// at the fake engine's fixed address) beside the benchmark's own targets: it gets rows,
// a summary and its JSON key.
func TestRunWithPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	engineAddr := ln.Addr().String()
	ln.Close()
	np, err := startNullProxy("peer", engineAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer np.close()
	rep, err := Run(t.Context(), Config{Rates: []int{100}, Duration: 200 * time.Millisecond, Warmup: 50 * time.Millisecond,
		Workers: 4, Rounds: 1, EngineAddr: engineAddr, Peers: []Peer{{Name: "nullpeer", URL: "http://" + np.addr()}}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors != 0 || len(rep.Runs) != 10 || len(rep.Peers) != 1 || rep.Peers[0].Name != "nullpeer" {
		t.Fatalf("errors %d, %d rows, peers %+v", rep.Errors, len(rep.Runs), rep.Peers)
	}
	b, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"peer_nullpeer_added_p50_us", "sluice_added_p50_us", "sluice_over_null_p50_us", "sluice_cpu_us_per_req", "null_cpu_us_per_req"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON has no %s: %s", k, b)
		}
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "nullpeer") || !strings.Contains(table.String(), "without the baseline") {
		t.Errorf("table:\n%s", table.String())
	}
}

// TestPeerHeaders: --peer-header values parse, and every request to that peer carries
// them beside the API key; the peer's idle connections close before Node's keep-alive
// timeout would close them under a request.
func TestPeerHeaders(t *testing.T) {
	name, h, err := ParsePeerHeader("portkey=x-portkey-custom-host: http://127.0.0.1:9/v1")
	if err != nil || name != "portkey" || h.Name != "x-portkey-custom-host" || h.Value != "http://127.0.0.1:9/v1" {
		t.Fatalf("ParsePeerHeader = %q, %+v, %v", name, h, err)
	}
	for _, bad := range []string{"portkey", "portkey=x-a", "=x-a:b", "p=:b", "p=x a:b", "p=x-a:b\r\nx-b: c"} {
		if _, _, err := ParsePeerHeader(bad); err == nil {
			t.Errorf("ParsePeerHeader(%q) = nil error", bad)
		}
	}
	tg := newPeerTarget(Peer{Name: "portkey", URL: "http://127.0.0.1:9", Headers: []Header{{"x-portkey-provider", "openai"}, h}}, 2)
	g := &generator{auth: "Bearer k"}
	var req fasthttp.Request
	g.setHeaders(&req, tg)
	for k, want := range map[string]string{"x-portkey-provider": "openai", "x-portkey-custom-host": "http://127.0.0.1:9/v1",
		"Authorization": "Bearer k", "Content-Type": "application/json"} {
		if got := string(req.Header.Peek(k)); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if !req.Header.IsPost() {
		t.Error("not a POST")
	}
	for m, c := range tg.clients {
		if c.MaxIdleConnDuration != peerIdleConn {
			t.Errorf("%s client keeps idle connections %v", m, c.MaxIdleConnDuration)
		}
	}
	// Other targets send no peer headers.
	req.Reset()
	g.setHeaders(&req, newLoadTarget("sluice", "http://127.0.0.1:9", 2))
	if req.Header.Peek("x-portkey-provider") != nil {
		t.Error("a peer header on another target")
	}
}
