package classify

import (
	"errors"
	"math"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestEvaluateHandMade(t *testing.T) {
	// Two requests: only the first gains from the strong model (1 vs 0); the second is
	// answered equally well by both. Strong mean 1, weak mean 0.5.
	right := []Item{{Score: 0.9, Strong: 1, Weak: 0}, {Score: 0.1, Strong: 1, Weak: 1}}
	wrong := []Item{{Score: 0.1, Strong: 1, Weak: 0}, {Score: 0.9, Strong: 1, Weak: 1}}
	tied := []Item{{Score: 0.5, Strong: 1, Weak: 0}, {Score: 0.5, Strong: 1, Weak: 1}}
	tests := []struct {
		name      string
		items     []Item
		apgr      float64
		shareAt95 float64
		curve     []Point
	}{
		{
			// PGR 0 at share 0, 1 at 0.5, 1 at 1: area 0.5·(0+1)/2 + 0.5·(1+1)/2.
			name: "gain first", items: right, apgr: 0.75,
			// 95% of 1 is 0.95: on the segment 0.5→1 quality at share 0.45.
			shareAt95: 0.45,
			curve:     []Point{{0, 0.5, 0}, {0.5, 1, 1}, {1, 1, 1}},
		},
		{
			name: "gain last", items: wrong, apgr: 0.25, shareAt95: 0.95,
			curve: []Point{{0, 0.5, 0}, {0.5, 0.5, 0}, {1, 1, 1}},
		},
		{
			// Equal scores move together: the straight line random routing gets on average.
			name: "tied", items: tied, apgr: 0.5, shareAt95: 0.9,
			curve: []Point{{0, 0.5, 0}, {1, 1, 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := Evaluate(tt.items)
			if err != nil {
				t.Fatal(err)
			}
			if !near(ev.APGR, tt.apgr) || !near(ev.ShareAt95, tt.shareAt95) {
				t.Errorf("APGR %v, share@95 %v; want %v, %v", ev.APGR, ev.ShareAt95, tt.apgr, tt.shareAt95)
			}
			if !near(ev.Strong, 1) || !near(ev.Weak, 0.5) || ev.N != 2 {
				t.Errorf("strong %v weak %v n %d", ev.Strong, ev.Weak, ev.N)
			}
			if len(ev.Curve) != len(tt.curve) {
				t.Fatalf("curve %v, want %v", ev.Curve, tt.curve)
			}
			for i, p := range tt.curve {
				if c := ev.Curve[i]; !near(c.Share, p.Share) || !near(c.Quality, p.Quality) || !near(c.PGR, p.PGR) {
					t.Errorf("curve[%d] = %+v, want %+v", i, c, p)
				}
			}
		})
	}
}

func TestEvaluatePGRAboveOne(t *testing.T) {
	// The weak model is better on one request: sending only the other one to the strong
	// model beats the strong model alone, so PGR exceeds 1 mid-curve.
	items := []Item{
		{Score: 3, Strong: 10, Weak: 4}, // gain 6
		{Score: 2, Strong: 8, Weak: 8},  // no gain
		{Score: 1, Strong: 6, Weak: 8},  // loss 2
	}
	ev, err := Evaluate(items)
	if err != nil {
		t.Fatal(err)
	}
	// strong 8, weak 20/3; gap 4/3. Qualities at 1/3, 2/3: (20+6)/3 = 26/3 → PGR 1.5.
	if !near(ev.Curve[1].PGR, 1.5) || !near(ev.Curve[2].PGR, 1.5) || !near(ev.Curve[3].PGR, 1) {
		t.Errorf("curve %+v", ev.Curve)
	}
	// Area: 1/3·(0+1.5)/2 + 1/3·1.5 + 1/3·(1.5+1)/2 = 0.25 + 0.5 + 0.41666…
	if want := 0.25 + 0.5 + 2.5/6; !near(ev.APGR, want) {
		t.Errorf("APGR %v, want %v", ev.APGR, want)
	}
	// 95% of 8 = 7.6; weak 6.667 → reached on the first segment at share (7.6-20/3)/(26/3-20/3)/3.
	if want := (7.6 - 20.0/3) / 2 / 3; !near(ev.ShareAt95, want) {
		t.Errorf("share@95 %v, want %v", ev.ShareAt95, want)
	}
	if q := ev.QualityAt(0.5); !near(q, 26.0/3) {
		t.Errorf("QualityAt(0.5) = %v", q)
	}
}

func TestEvaluateErrors(t *testing.T) {
	if _, err := Evaluate(nil); err == nil {
		t.Error("empty: no error")
	}
	if _, err := Evaluate([]Item{{Score: 1, Strong: 5, Weak: 5}}); !errors.Is(err, ErrNoGap) {
		t.Errorf("no gap: %v", err)
	}
	if _, err := Evaluate([]Item{{Score: math.NaN(), Strong: 1, Weak: 0}}); err == nil {
		t.Error("NaN score: no error")
	}
}

func TestExpectedAndRandom(t *testing.T) {
	var items []Item
	for i := range 60 {
		items = append(items, Item{Score: float64(i), Strong: float64(i % 3), Weak: float64(i%3) - float64(i%2)})
	}
	exp, err := Expected(items)
	if err != nil {
		t.Fatal(err)
	}
	if !near(exp.APGR, 0.5) {
		t.Errorf("expected APGR %v, want 0.5", exp.APGR)
	}
	a1, s1, err := RandomRouter(items, 400, 7)
	if err != nil {
		t.Fatal(err)
	}
	a2, s2, _ := RandomRouter(items, 400, 7)
	if a1 != a2 || s1 != s2 {
		t.Error("RandomRouter is not reproducible for a seed")
	}
	if math.Abs(a1-0.5) > 0.03 {
		t.Errorf("mean random APGR %v, want about 0.5", a1)
	}
	if math.Abs(s1-exp.ShareAt95) > 0.1 {
		t.Errorf("mean random share@95 %v, expected line %v", s1, exp.ShareAt95)
	}
}

func TestAUC(t *testing.T) {
	pos := func(s float64) Item { return Item{Score: s, Strong: 1, Weak: 0} }
	neg := func(s float64) Item { return Item{Score: s, Strong: 1, Weak: 1} }
	for _, tt := range []struct {
		items []Item
		want  float64
	}{
		{[]Item{pos(2), neg(1)}, 1},
		{[]Item{pos(1), neg(2)}, 0},
		{[]Item{pos(1), neg(1)}, 0.5},
		{[]Item{pos(3), neg(2), pos(1), neg(0)}, 0.75},
	} {
		if got := AUC(tt.items); !near(got, tt.want) {
			t.Errorf("AUC(%v) = %v, want %v", tt.items, got, tt.want)
		}
	}
	if !math.IsNaN(AUC([]Item{pos(1)})) {
		t.Error("AUC with one class is not NaN")
	}
}

func TestBootstrapAPGR(t *testing.T) {
	var items []Item
	var cluster []string
	for i := range 40 {
		gain := 0.0
		if i%4 == 0 {
			gain = 2
		}
		// A router that is mostly right: the gaining requests score high, with noise.
		items = append(items, Item{Score: gain + float64(i%7)/4, Strong: 8 + gain, Weak: 8})
		cluster = append(cluster, string(rune('a'+i/2))) // pairs drawn together
	}
	ev, err := Evaluate(items)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi, err := BootstrapAPGR(items, cluster, 500, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !(lo <= ev.APGR && ev.APGR <= hi && lo < hi) {
		t.Errorf("interval [%v, %v] around APGR %v", lo, hi, ev.APGR)
	}
	lo2, hi2, _ := BootstrapAPGR(items, cluster, 500, 3)
	if lo != lo2 || hi != hi2 {
		t.Error("not reproducible for a seed")
	}
	if _, _, err := BootstrapAPGR(items, cluster[:3], 500, 3); err == nil {
		t.Error("cluster count mismatch: no error")
	}
	if _, _, err := BootstrapAPGR(items, cluster, 5, 3); err == nil {
		t.Error("5 draws: no error")
	}
}
