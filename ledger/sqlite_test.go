package ledger

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/models"
)

func openTestStore(t testing.TB) (*SQLite, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := OpenSQLite(path, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func window(t *testing.T, s *SQLite, key, span string, start int64) (reqs, tokens int64, usd float64) {
	t.Helper()
	err := s.db.QueryRow(`SELECT requests, tokens, usd FROM windows WHERE key_id = ? AND span = ? AND start = ?`,
		key, span, start).Scan(&reqs, &tokens, &usd)
	if err != nil {
		t.Fatalf("window %s %s %d: %v", key, span, start, err)
	}
	return
}

func TestApplyIsIdempotent(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	at := time.Now().UTC() // minute windows older than an hour are pruned
	r := Record{UID: "p-1", Time: at, KeyID: "key-a", PromptTokens: 10, CompletionTokens: 5, BilledUSD: 0.25, Status: 200}
	if err := s.Apply(ctx, []Record{r, r}); err != nil {
		t.Fatal(err)
	}
	// A replayed journal applies records that may already be stored.
	if err := s.Apply(ctx, []Record{r}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.db.QueryRow(`SELECT count(*) FROM records`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("records = %d, %v", n, err)
	}
	for _, w := range []struct {
		span  string
		start time.Time
	}{{"m", at.Truncate(time.Minute)}, {"d", at.Truncate(24 * time.Hour)},
		{"M", time.Date(at.Year(), at.Month(), 1, 0, 0, 0, 0, time.UTC)}} {
		reqs, tokens, usd := window(t, s, "key-a", w.span, w.start.Unix())
		if reqs != 1 || tokens != 15 || usd != 0.25 {
			t.Errorf("window %s = %d requests, %d tokens, $%g", w.span, reqs, tokens, usd)
		}
	}
}

func TestReserveLimits(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 6, 30, 23, 59, 30, 0, time.UTC)
	exp := at.Add(time.Hour)
	tests := []struct {
		name      string
		lim       Limits
		res       Reservation
		before    []Reservation // admitted first
		limit     string
		reset     time.Time
		wantKind  error
		wantAfter time.Duration
	}{
		{name: "requests per minute", lim: Limits{RequestsPerMinute: 2},
			before: []Reservation{{UID: "a"}, {UID: "b"}}, res: Reservation{UID: "c"},
			limit: LimitRequests, reset: at.Truncate(time.Minute).Add(time.Minute), wantKind: models.ErrRejected, wantAfter: 30 * time.Second},
		{name: "tokens per minute", lim: Limits{TokensPerMinute: 100},
			before: []Reservation{{UID: "a", Tokens: 60}}, res: Reservation{UID: "c", Tokens: 41},
			limit: LimitTokens, reset: at.Truncate(time.Minute).Add(time.Minute), wantKind: models.ErrRejected},
		{name: "daily dollars", lim: Limits{DailyUSD: 1},
			before: []Reservation{{UID: "a", USD: 0.6}}, res: Reservation{UID: "c", USD: 0.5},
			limit: LimitDaily, reset: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC), wantKind: models.ErrOverBudget},
		{name: "monthly dollars", lim: Limits{DailyUSD: 10, MonthlyUSD: 1},
			before: []Reservation{{UID: "a", USD: 0.6}}, res: Reservation{UID: "c", USD: 0.5},
			limit: LimitMonthly, reset: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC), wantKind: models.ErrOverBudget},
		{name: "free request passes a spent budget", lim: Limits{DailyUSD: 1},
			before: []Reservation{{UID: "a", USD: 1}}, res: Reservation{UID: "c", USD: 0}},
		{name: "fits exactly", lim: Limits{DailyUSD: 1, RequestsPerMinute: 2},
			before: []Reservation{{UID: "a", USD: 0.5}}, res: Reservation{UID: "c", USD: 0.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTestStore(t)
			for _, r := range tt.before {
				r.KeyID, r.Time, r.Expires = "key-a", at, exp
				if err := s.Reserve(ctx, r, tt.lim, at); err != nil {
					t.Fatalf("reserve %s: %v", r.UID, err)
				}
			}
			tt.res.KeyID, tt.res.Time, tt.res.Expires = "key-a", at, exp
			err := s.Reserve(ctx, tt.res, tt.lim, at)
			if tt.limit == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			le, ok := AsLimit(err)
			if !ok || le.Limit != tt.limit || !le.Reset.Equal(tt.reset) || !errors.Is(err, tt.wantKind) {
				t.Fatalf("err = %v (%+v), want %s until %v", err, le, tt.limit, tt.reset)
			}
			var me *models.Error
			if !errors.As(err, &me) || me.RetryAfter <= 0 || (tt.wantAfter > 0 && me.RetryAfter != tt.wantAfter) {
				t.Errorf("retry after = %v", me.RetryAfter)
			}
			// A key apart is not affected.
			other := tt.res
			other.KeyID = "key-b"
			if err := s.Reserve(ctx, other, tt.lim, at); err != nil {
				t.Errorf("another key refused: %v", err)
			}
		})
	}
}

func TestReservationsExpireAndSettle(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	at := time.Date(2026, 6, 15, 10, 0, 0, 0, time.UTC)
	lim := Limits{DailyUSD: 1}
	r := Reservation{UID: "a", KeyID: "k", Time: at, Expires: at.Add(time.Minute), USD: 0.9}
	if err := s.Reserve(ctx, r, lim, at); err != nil {
		t.Fatal(err)
	}
	r2 := Reservation{UID: "b", KeyID: "k", Time: at, Expires: at.Add(time.Hour), USD: 0.2}
	if err := s.Reserve(ctx, r2, lim, at); err == nil {
		t.Fatal("over the budget, admitted")
	}
	// The record replaces the estimate with what the request cost.
	if err := s.Apply(ctx, []Record{{UID: "a", KeyID: "k", Time: at, BilledUSD: 0.3, Status: 200}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Reserve(ctx, r2, lim, at); err != nil {
		t.Fatalf("after settling: %v", err)
	}
	// A reservation whose process died expires.
	r3 := Reservation{UID: "c", KeyID: "k", Time: at, Expires: at.Add(time.Minute), USD: 0.5}
	if err := s.Reserve(ctx, r3, lim, at); err != nil {
		t.Fatal(err)
	}
	r4 := Reservation{UID: "d", KeyID: "k", Time: at, Expires: at.Add(time.Hour), USD: 0.4}
	if err := s.Reserve(ctx, r4, lim, at); err == nil {
		t.Fatal("admitted while c holds its reservation")
	}
	if err := s.Reserve(ctx, r4, lim, at.Add(2*time.Minute)); err != nil {
		t.Fatalf("after c expired: %v", err)
	}
}

func TestKeysInStore(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	v0, _ := s.KeysVersion(ctx)
	k := StoredKey{Digest: [32]byte{1, 2, 3}, Key: models.Key{ID: "key-010203000000", Name: "bot", Tenant: "acme",
		Residency: "eu", Tiers: []string{"small"}, Models: []string{"tiny", "t2"}, NoCache: true, RequestsPerMinute: 5,
		TokensPerMinute: 6, DailyUSD: 7, MonthlyUSD: 8}, Created: time.Unix(1780000000, 0).UTC()}
	if err := s.CreateKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateKey(ctx, k); err == nil {
		t.Fatal("the same key twice")
	}
	got, err := s.Keys(ctx)
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	g := got[0]
	if g.Digest != k.Digest || g.Key.Name != "bot" || g.Key.Residency != "eu" || g.Key.Models[1] != "t2" || !g.Key.NoCache ||
		g.Key.MonthlyUSD != 8 || !g.Created.Equal(k.Created) || !g.Revoked.IsZero() {
		t.Errorf("stored key = %+v", g)
	}
	if ok, err := s.RevokeKey(ctx, k.Key.ID, time.Unix(1780000100, 0)); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, _ := s.RevokeKey(ctx, k.Key.ID, time.Unix(1780000200, 0)); ok {
		t.Error("revoked twice")
	}
	got, _ = s.Keys(ctx)
	if got[0].Revoked.Unix() != 1780000100 {
		t.Errorf("revoked = %v", got[0].Revoked)
	}
	if v, _ := s.KeysVersion(ctx); v != v0+2 {
		t.Errorf("keys version %d -> %d", v0, v)
	}
}

// TestSlowReportsDoNotStallBudgets: usage reports (GET /v1/usage, any key may ask, as
// often as it likes) over a month of records take seconds each. While as many as may
// run at once are in progress, budget checks on the request path and the ledger's
// writer still get a connection.
func TestSlowReportsDoNotStallBudgets(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	// Reports in progress: each holds a connection of the reports' pool.
	var held []*sql.Conn
	for range reportConns {
		c, err := s.reports.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	// Four more reports waiting for a connection.
	waiting := make(chan error, 4)
	for range 4 {
		go func() {
			_, err := s.Aggregate(ctx, Query{From: time.Unix(0, 0), To: time.Now()})
			waiting <- err
		}()
	}
	// Budget checks and writes are not queued behind them. (On failure this waits for
	// the deadline: generous, it only bounds a hang.)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	now := time.Now()
	for i := range 8 {
		uid := "r" + strconv.Itoa(i)
		if err := s.Reserve(wctx, Reservation{UID: uid, KeyID: "key-a", Time: now, Expires: now.Add(time.Hour), Tokens: 1},
			Limits{RequestsPerMinute: 100}, now); err != nil {
			t.Fatalf("a budget check waited behind reports: %v", err)
		}
		r := sampleRecord(uid)
		if err := s.Apply(wctx, []Record{r}); err != nil {
			t.Fatalf("the ledger's writer waited behind reports: %v", err)
		}
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	for range 4 {
		if err := <-waiting; err != nil {
			t.Fatal(err)
		}
	}
}

// TestApplyBatchSizes applies batches of sizes that are not a power of two (Apply's
// prepared statements carry 2^i rows each), with repeats across and within batches and
// reservations to settle: every record is stored once, counted once in its windows, and
// settles its reservation.
func TestApplyBatchSizes(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	at := time.Now().UTC()
	var all []Record
	for i := range 150 {
		all = append(all, Record{UID: "u" + strconv.Itoa(i), Time: at, KeyID: "key-b", PromptTokens: 2, CompletionTokens: 1, Status: 200})
	}
	for _, r := range all {
		if err := s.Reserve(ctx, Reservation{UID: r.UID, KeyID: r.KeyID, Time: at, Expires: at.Add(time.Hour), Tokens: 3},
			Limits{RequestsPerMinute: 1000}, at); err != nil {
			t.Fatal(err)
		}
	}
	// 1, 77 (with a repeat inside), then 150 (the first 78 again, and 72 new).
	batches := [][]Record{all[:1], append(append([]Record{}, all[1:77]...), all[5]), all}
	for _, b := range batches {
		if err := s.Apply(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	var n, open int
	if err := s.db.QueryRow(`SELECT count(*) FROM records`).Scan(&n); err != nil || n != 150 {
		t.Fatalf("records = %d, %v; want 150", n, err)
	}
	if err := s.db.QueryRow(`SELECT count(*) FROM reservations`).Scan(&open); err != nil || open != 0 {
		t.Fatalf("open reservations = %d, %v; want 0", open, err)
	}
	if reqs, tokens, _ := window(t, s, "key-b", "m", at.Truncate(time.Minute).Unix()); reqs != 150 || tokens != 450 {
		t.Errorf("minute window = %d requests, %d tokens; want 150, 450", reqs, tokens)
	}
}
