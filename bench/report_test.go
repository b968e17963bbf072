package bench

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// TestSummarizePeers: a peer's errors are its own (not sluice's, and not the gate's), a
// peer adding less than sluice at p50 in any mode fails the run and is named, and a
// target that delivered under the offered rate is reported as saturated.
func TestSummarizePeers(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	rows := func(streamPeerP50 float64) []Row {
		return []Row{
			{Rate: 2000, Mode: NonStream, Target: TargetDirect, Requests: 100, AchievedRPS: 2000},
			{Rate: 2000, Mode: NonStream, Target: TargetNull, Requests: 100, AchievedRPS: 2000, AddedP50US: 100},
			{Rate: 2000, Mode: NonStream, Target: TargetSluice, Requests: 100, AchievedRPS: 2000, AddedP50US: 120, RatioP50: f(1.2)},
			{Rate: 2000, Mode: NonStream, Target: "caddy", Requests: 100, AchievedRPS: 2000, AddedP50US: 200, Errors: 3},
			{Rate: 2000, Mode: Stream, Target: TargetDirect, Requests: 100, AchievedRPS: 1990},
			{Rate: 2000, Mode: Stream, Target: TargetNull, Requests: 100, AchievedRPS: 1150, AddedP50US: 300000},
			{Rate: 2000, Mode: Stream, Target: TargetSluice, Requests: 100, AchievedRPS: 1520, AddedP50US: 150000, RatioP50: f(0.5)},
			{Rate: 2000, Mode: Stream, Target: "caddy", Requests: 100, AchievedRPS: 1990, AddedP50US: streamPeerP50, WarmupErrors: 1},
		}
	}

	r := &Report{Runs: rows(-3000)}
	r.summarize(1.5, rssScopeSluice)
	if r.Errors != 0 || r.PeerErrors != 4 || len(r.Peers) != 1 || r.Peers[0].Errors != 4 {
		t.Errorf("errors %d, peer errors %d, peers %+v; want 0, 4 and caddy's 4", r.Errors, r.PeerErrors, r.Peers)
	}
	if r.PeersP50Met == nil || *r.PeersP50Met || !slices.Equal(r.PeersBehind, []string{"stream/caddy"}) {
		t.Errorf("peers met %v, behind %q; want false, [stream/caddy]", r.PeersP50Met, r.PeersBehind)
	}
	if r.Pass {
		t.Error("pass with a peer ahead of sluice")
	}
	if want := []string{"stream/null 1150/s", "stream/sluice 1520/s"}; !slices.Equal(r.Saturated, want) {
		t.Errorf("saturated %q, want %q", r.Saturated, want)
	}
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"errors: 0 (peers' not counted: 4)", "missed (behind in stream/caddy)",
		"under 2000 RPS (their added latency is mostly queueing): stream/null 1150/s, stream/sluice 1520/s", "FAIL"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}

	r = &Report{Runs: rows(200000)}
	r.summarize(1.5, rssScopeSluice)
	if r.PeersP50Met == nil || !*r.PeersP50Met || len(r.PeersBehind) != 0 || !r.Pass {
		t.Errorf("peers met %v, behind %q, pass %v; want true, none, true (a peer's errors do not fail the run)", r.PeersP50Met, r.PeersBehind, r.Pass)
	}

	r = &Report{Runs: rows(200000)[:3]}
	r.summarize(1.5, rssScopeSluice)
	if r.PeersP50Met != nil || r.Saturated != nil || !r.Pass {
		t.Errorf("without peers: met %v, saturated %q, pass %v", r.PeersP50Met, r.Saturated, r.Pass)
	}
}
