package ledger

import (
	"context"
	"encoding/csv"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/models"
)

// TestReportSavingsByCause checks a report against figures worked out by hand.
func TestReportSavingsByCause(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	day := time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC)
	at := day.Add(10 * time.Hour)
	recs := []Record{
		// A cache hit: the whole baseline is saved by the cache.
		{UID: "1", Time: at, KeyID: "k1", Feature: "a", Cache: "hit-exact", ReferenceUSD: 0.01, RefCompressedUSD: 0.01, ServedRefUSD: 0.01, Status: 200},
		// Local, compressed and routed to a small model: baseline 0.02 on gpt-4o, 0.015
		// for the compressed prompt, 0.001 on the small class's reference.
		{UID: "2", Time: at, KeyID: "k1", Feature: "a", Pool: "box", Target: "local", CostUSD: 0.001,
			ReferenceUSD: 0.02, RefCompressedUSD: 0.015, ServedRefUSD: 0.001, PromptTokens: 500, PromptTokensBefore: 2000, Status: 200,
			Latency: 100 * time.Millisecond, TTFT: 20 * time.Millisecond},
		{UID: "3", Time: at, KeyID: "k2", Feature: "b", Pool: "box", Target: "local", CostUSD: 0.001,
			ReferenceUSD: 0.003, RefCompressedUSD: 0.003, ServedRefUSD: 0.003, Status: 200, Latency: 300 * time.Millisecond},
		// Cloud: a cheaper model than the baseline, paid per token.
		{UID: "4", Time: at, KeyID: "k1", Feature: "a", Target: "cloud", CostUSD: 0.005, BilledUSD: 0.005,
			ReferenceUSD: 0.008, RefCompressedUSD: 0.008, ServedRefUSD: 0.005, Status: 200},
		// A remote engine without a price: flagged, not counted as free.
		{UID: "5", Time: at, KeyID: "k2", Feature: "c", Target: "remote", Unpriced: true, ReferenceUSD: 0.01,
			RefCompressedUSD: 0.01, ServedRefUSD: 0.01, Status: 200},
		{UID: "6", Time: at, KeyID: "k2", Feature: "c", Target: "local", Status: 429},
	}
	if err := s.Apply(ctx, recs); err != nil {
		t.Fatal(err)
	}
	// The box cost 0.004 that day (twice what its requests held: k = 2) and 0.5 on a day
	// it served nothing.
	if err := s.AddHardware(ctx, []HardwareCost{{Pool: "box", Minute: at, USD: 0.004},
		{Pool: "box", Minute: day.Add(-12 * time.Hour), USD: 0.5}}); err != nil {
		t.Fatal(err)
	}
	q := Query{From: day.Add(-24 * time.Hour), To: day.Add(24 * time.Hour), GroupBy: []string{"feature"}}
	rep, err := BuildReport(ctx, s, q)
	if err != nil {
		t.Fatal(err)
	}
	tot := rep.Total
	check := func(name string, got, want float64) {
		t.Helper()
		if !near(got, want) {
			t.Errorf("%s = %.6f, want %.6f", name, got, want)
		}
	}
	check("reference", tot.ReferenceUSD, 0.041)
	check("marginal cost", tot.CostUSD, 0.007)
	check("effective cost", tot.EffectiveCostUSD, 0.009)
	check("billed", tot.BilledUSD, 0.005)
	check("savings", tot.SavingsUSD, 0.032)
	check("cache", tot.Savings.Cache, 0.01)
	check("compression", tot.Savings.Compression, 0.005)
	check("routing", tot.Savings.Routing, 0.017)
	check("local", tot.Savings.Local, 0)
	check("hardware", rep.HardwareUSD, 0.504)
	check("idle", rep.IdleUSD, 0.5)
	if tot.Requests != 6 || tot.Errors != 1 || tot.Unpriced != 1 || tot.CacheHits != 1 || tot.PromptBefore != 2000 {
		t.Errorf("total = %+v", tot)
	}
	if len(rep.Rows) != 3 || rep.Rows[0].Group["feature"] != "a" || rep.Rows[2].Group["feature"] != "c" {
		t.Fatalf("rows = %+v", rep.Rows)
	}
	a, b := rep.Rows[0], rep.Rows[1]
	// Feature a's local request costs 0.002 effective against 0.001 on the small
	// reference: a negative local saving, shown as it is.
	check("a local", a.Savings.Local, -0.001)
	check("b local", b.Savings.Local, 0.001)
	check("a effective", a.EffectiveCostUSD, 0.007)
	if b.LatencyMsAvg != 300 || a.TTFTMsAvg != 20 {
		t.Errorf("latency %v, ttft %v", b.LatencyMsAvg, a.TTFTMsAvg)
	}

	// Filters and grouping by day and key.
	q = Query{From: day, To: day.Add(24 * time.Hour), GroupBy: []string{"day", "key"}, Key: "k2"}
	rep, err = BuildReport(ctx, s, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 1 || rep.Rows[0].Group["day"] != "2026-06-15" || rep.Rows[0].Group["key"] != "k2" || rep.Rows[0].Requests != 3 {
		t.Fatalf("by day and key = %+v", rep.Rows)
	}
	lines, err := csv.NewReader(strings.NewReader(string(rep.CSV()))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || lines[0][0] != "day" || lines[0][2] != "requests" || lines[1][1] != "k2" || lines[1][2] != "3" {
		t.Fatalf("csv = %q", lines)
	}
}

func TestParseQuery(t *testing.T) {
	now := time.Date(2026, 6, 15, 10, 0, 0, 0, time.UTC)
	q, f, err := ParseQuery("group_by=key,feature&from=2026-06-01&to=2026-06-10T00:00:00Z&feature=search&format=csv", now)
	if err != nil {
		t.Fatal(err)
	}
	if f != "csv" || q.Feature != "search" || len(q.GroupBy) != 2 || !q.From.Equal(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)) ||
		!q.To.Equal(time.Date(2026, 6, 10, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("query = %+v, %s", q, f)
	}
	q, _, _ = ParseQuery("", now)
	if !q.From.Equal(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)) || !q.To.Equal(now) {
		t.Errorf("default period %v..%v", q.From, q.To)
	}
	for _, bad := range []string{"group_by=secret", "from=yesterday", "nope=1", "format=xml", "from=2026-06-10&to=2026-06-01", "%zz"} {
		if _, _, err := ParseQuery(bad, now); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "group_by=key,day&from=2026-01-01", "to=2026-06-01T00:00:00Z&key=k&format=csv", "a=%zz", "group_by=,,"} {
		f.Add(s)
	}
	now := time.Date(2026, 6, 15, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		q, format, err := ParseQuery(s, now)
		if err != nil {
			var me *models.Error
			if !asModelsError(err, &me) || me.Param == "" {
				t.Fatalf("error without a parameter: %v", err)
			}
			return
		}
		if !q.To.After(q.From) || (format != "json" && format != "csv") {
			t.Fatalf("accepted %q as %+v %s", s, q, format)
		}
		for _, g := range q.GroupBy {
			if _, ok := groupColumns[g]; !ok {
				t.Fatalf("group %q reaches SQL", g)
			}
		}
		if v, err := url.ParseQuery(s); err == nil && v.Get("key") != "" && q.Key == "" {
			t.Fatalf("key filter lost")
		}
	})
}

func asModelsError(err error, me **models.Error) bool {
	e, ok := err.(*models.Error)
	*me = e
	return ok
}

// TestReportWorkedExample is docs/gpu.md's example made honest: an H100 at $2.69/h
// serves one request (1,000 + 500 tokens, 2 s alone on the GPU) and idles 8 s. Its
// marginal cost is $0.001494 against $0.0075 on GPT-4o; over the 10 s the box cost
// $0.007472, all carried by that request, and the saving all but disappears.
func TestReportWorkedExample(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	at := time.Date(2026, 6, 15, 10, 0, 0, 0, time.UTC)
	perSec := 2.69 / 3600
	ref := (1000*2.5 + 500*10.0) / 1e6
	if err := s.Apply(ctx, []Record{{UID: "1", Time: at, Pool: "box", Target: "local", CostUSD: 2 * perSec,
		PromptTokens: 1000, PromptTokensBefore: 1000, CompletionTokens: 500, ReferenceModel: "gpt-4o",
		ReferenceUSD: ref, RefCompressedUSD: ref, ServedRefUSD: ref, Status: 200}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddHardware(ctx, []HardwareCost{{Pool: "box", Minute: at, USD: 10 * perSec}}); err != nil {
		t.Fatal(err)
	}
	rep, err := BuildReport(ctx, s, Query{From: at.Add(-time.Hour), To: at.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	tot := rep.Total
	if !near(tot.CostUSD, 0.0014944444) && !near(tot.CostUSD, 2*perSec) {
		t.Errorf("marginal %.7f", tot.CostUSD)
	}
	if !near(tot.EffectiveCostUSD, 10*perSec) || !near(tot.SavingsUSD, ref-10*perSec) || !near(tot.Savings.Local, ref-10*perSec) {
		t.Errorf("effective %.7f, savings %.7f (local %.7f); want %.7f and %.7f", tot.EffectiveCostUSD, tot.SavingsUSD,
			tot.Savings.Local, 10*perSec, ref-10*perSec)
	}
	t.Logf("marginal $%.6f, effective $%.6f, reference $%.4f: saving $%.6f (marginal would claim $%.4f)",
		tot.CostUSD, tot.EffectiveCostUSD, ref, tot.SavingsUSD, ref-tot.CostUSD)
}
