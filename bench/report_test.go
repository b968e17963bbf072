package bench

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// reportRows are one reference-rate run with a peer ("caddy"), sluice adding 120 µs and
// 150 ms at p50 (non-streaming, streaming) and the peer the given added p50s (µs). A
// negative added p50 is measured; the peer's rows fail every request when peerFails.
func reportRows(peerNS, peerST float64, peerFails bool) []Row {
	f := func(v float64) *float64 { return &v }
	row := func(m Mode, target string, achieved, direct, added float64) Row {
		return Row{Rate: 2000, Mode: m, Target: target, Requests: 100, AchievedRPS: achieved, P50US: direct + added, AddedP50US: added}
	}
	sl, sls := row(NonStream, TargetSluice, 2000, 100, 120), row(Stream, TargetSluice, 1520, 5000, 150000)
	sl.RatioP50, sls.RatioP50 = f(1.2), f(0.5)
	pn, ps := row(NonStream, "caddy", 2000, 100, peerNS), row(Stream, "caddy", 1990, 5000, peerST)
	pn.Errors, ps.WarmupErrors = 3, 1
	if peerFails {
		pn = Row{Rate: 2000, Mode: NonStream, Target: "caddy", Requests: 100, Errors: 100}
		ps = Row{Rate: 2000, Mode: Stream, Target: "caddy", Requests: 100, Errors: 100}
	}
	return []Row{
		row(NonStream, TargetDirect, 2000, 100, 0), row(NonStream, TargetNull, 2000, 100, 100), sl, pn,
		row(Stream, TargetDirect, 1990, 5000, 0), row(Stream, TargetNull, 1150, 5000, 300000), sls, ps,
	}
}

// TestSummarizePeers: a peer's errors are its own (not sluice's, and not the gate's), a
// peer adding less than sluice (or as much) at p50 in any mode fails the run and is
// named, a peer with no successful request is not compared, and a gateway that delivered
// under the offered rate is reported as saturated (direct apart: the load fell short).
func TestSummarizePeers(t *testing.T) {
	for _, tc := range []struct {
		name           string
		peerNS, peerST float64
		fails          bool
		met            *bool
		behind         []string
		pass           bool
	}{
		{"behind in stream", 200, -3000, false, new(false), []string{"stream/caddy"}, false},
		{"behind in non-streaming", 100, 200000, false, new(false), []string{"nonstream/caddy"}, false},
		{"a tie is not ahead", 120, 150000, false, new(false), []string{"nonstream/caddy", "stream/caddy"}, false},
		{"ahead of the peer", 200, 200000, false, new(true), nil, true},
		{"the peer failed every request", 0, 0, true, nil, nil, true},
	} {
		r := &Report{Runs: reportRows(tc.peerNS, tc.peerST, tc.fails)}
		r.summarize(1.5, rssScopeSluice)
		wantPeerErrors := 4
		if tc.fails {
			wantPeerErrors = 200
		}
		if r.Errors != 0 || r.PeerErrors != wantPeerErrors || len(r.Peers) != 1 || r.Peers[0].Errors != wantPeerErrors {
			t.Errorf("%s: errors %d, peer errors %d, peers %+v; want 0 and %d", tc.name, r.Errors, r.PeerErrors, r.Peers, wantPeerErrors)
		}
		if (r.PeersP50Met == nil) != (tc.met == nil) || (tc.met != nil && *r.PeersP50Met != *tc.met) || !slices.Equal(r.PeersBehind, tc.behind) {
			t.Errorf("%s: peers met %v, behind %q; want %v, %q", tc.name, r.PeersP50Met, r.PeersBehind, tc.met, tc.behind)
		}
		if r.Pass != tc.pass {
			t.Errorf("%s: pass %v, want %v", tc.name, r.Pass, tc.pass)
		}
		var b bytes.Buffer
		if err := r.WriteTable(&b); err != nil {
			t.Fatal(err)
		}
		line := "sluice adds less than every peer at p50: met"
		switch {
		case tc.met == nil:
			line = "sluice adds less than every peer at p50: not measured"
		case !*tc.met:
			line = "missed (behind in " + strings.Join(tc.behind, ", ") + ")"
		}
		if !strings.Contains(b.String(), line) {
			t.Errorf("%s: table lacks %q:\n%s", tc.name, line, b.String())
		}
	}

	r := &Report{Runs: reportRows(200, -3000, false)}
	r.summarize(1.5, rssScopeSluice)
	if want := []string{"stream/null 1150/s", "stream/sluice 1520/s"}; !slices.Equal(r.Saturated, want) || r.LoadShort != nil {
		t.Errorf("saturated %q, load short %q; want %q and none", r.Saturated, r.LoadShort, want)
	}
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"errors: 0 (peers' not counted: 4)",
		"under 2000 RPS (their added latency is mostly queueing): stream/null 1150/s, stream/sluice 1520/s", "FAIL"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}

	rows := reportRows(200, 200000, false)
	rows[4].AchievedRPS = 1500 // direct streaming fell short
	r = &Report{Runs: rows[:3]}
	r.Runs = append(r.Runs, rows[4])
	r.summarize(1.5, rssScopeSluice)
	if r.PeersP50Met != nil || r.Saturated != nil || !slices.Equal(r.LoadShort, []string{"stream 1500/s"}) || !r.Pass {
		t.Errorf("without peers: met %v, saturated %q, load short %q, pass %v", r.PeersP50Met, r.Saturated, r.LoadShort, r.Pass)
	}
}
