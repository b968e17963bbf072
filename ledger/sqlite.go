package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/bits"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluice-llm/sluice/models"
	_ "modernc.org/sqlite" // the pure-Go SQLite driver ("sqlite")
)

// SQLite is the Store in one SQLite file (WAL mode), which several processes may share:
// every write is a transaction started with BEGIN IMMEDIATE, so budget checks in two
// processes serialise on the file's lock.
type SQLite struct {
	db *sql.DB // writes, budget checks, keys
	// reports runs usage reports on connections of their own (read-only): a report
	// over a month of records can take seconds, and must not hold the connections
	// that budget checks on the request path and the ledger's writer need.
	reports *sql.DB
	pruned  atomic.Int64 // unix seconds minute windows were last pruned
	// Reserve's statements, prepared once (parsing them per request cost more than
	// running them), and when expired reservations were last deleted (unix seconds).
	reserve   reserveStmts
	resPruned atomic.Int64
	// Apply's statements, prepared once: an insert of 2^i records and a delete of 2^i
	// settled reservations for each i (a batch of any size is a sum of them), and the
	// window upsert. Parsing a multi-row statement per batch cost a quarter of Apply.
	apply applyStmts
}

// applyStmts are Apply's statements.
type applyStmts struct {
	insert, settle [applyLevels]*sql.Stmt // by log2 of the rows
	window         *sql.Stmt
}

// reportConns is how many reports may read at once; more wait for a connection.
const reportConns = 2

// reserveStmts are Reserve's statements.
type reserveStmts struct {
	prune, insert *sql.Stmt
	used          map[string]*sql.Stmt // by span: m, d, M
}

// The statements behind Reserve. used reads a key's window and what its unexpired
// reservations hold in that window, in one query.
const (
	reservePrune = `DELETE FROM reservations WHERE expires < ?`
	// reserveUsed is completed with the reservations' column for the span.
	reserveUsed = `SELECT
		(SELECT requests FROM windows WHERE key_id = ?1 AND span = ?2 AND start = ?3),
		(SELECT tokens FROM windows WHERE key_id = ?1 AND span = ?2 AND start = ?3),
		(SELECT usd FROM windows WHERE key_id = ?1 AND span = ?2 AND start = ?3),
		count(*), sum(tokens), sum(usd)
		FROM reservations WHERE key_id = ?1 AND expires >= ?4 AND `
	reserveInsert = `INSERT OR REPLACE INTO reservations(uid, key_id, minute, day, month, expires, tokens, usd)
		VALUES (?,?,?,?,?,?,?,?)`
)

var _ Store = (*SQLite)(nil)

const schema = `
CREATE TABLE IF NOT EXISTS records(
	uid TEXT NOT NULL UNIQUE,
	time INTEGER NOT NULL,            -- unix microseconds (arrival)
	request_id TEXT NOT NULL,
	key_id TEXT NOT NULL, tenant TEXT NOT NULL, end_user TEXT NOT NULL, feature TEXT NOT NULL,
	kind TEXT NOT NULL, model TEXT NOT NULL, served TEXT NOT NULL, target TEXT NOT NULL,
	region TEXT NOT NULL, pool TEXT NOT NULL, cache TEXT NOT NULL,
	prompt_tokens INTEGER NOT NULL, prompt_tokens_before INTEGER NOT NULL,
	completion_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL, estimated INTEGER NOT NULL,
	latency_us INTEGER NOT NULL, ttft_us INTEGER NOT NULL,
	cost_usd REAL NOT NULL, billed_usd REAL NOT NULL, unpriced INTEGER NOT NULL,
	reference_model TEXT NOT NULL, reference_usd REAL NOT NULL, ref_compressed_usd REAL NOT NULL,
	served_ref_model TEXT NOT NULL, served_ref_usd REAL NOT NULL,
	status INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS records_time ON records(time);
CREATE INDEX IF NOT EXISTS records_key_time ON records(key_id, time);
CREATE TABLE IF NOT EXISTS windows(
	key_id TEXT NOT NULL, span TEXT NOT NULL, start INTEGER NOT NULL,
	requests INTEGER NOT NULL, tokens INTEGER NOT NULL, usd REAL NOT NULL,
	PRIMARY KEY(key_id, span, start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reservations(
	uid TEXT PRIMARY KEY, key_id TEXT NOT NULL,
	minute INTEGER NOT NULL, day INTEGER NOT NULL, month INTEGER NOT NULL,
	expires INTEGER NOT NULL, tokens INTEGER NOT NULL, usd REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reservations_key ON reservations(key_id);
CREATE INDEX IF NOT EXISTS reservations_key_minute ON reservations(key_id, minute);
CREATE TABLE IF NOT EXISTS hardware(
	pool TEXT NOT NULL, minute INTEGER NOT NULL, usd REAL NOT NULL,
	PRIMARY KEY(pool, minute)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS keys(
	id TEXT PRIMARY KEY, digest BLOB NOT NULL UNIQUE,
	name TEXT NOT NULL, tenant TEXT NOT NULL, residency TEXT NOT NULL,
	tiers TEXT NOT NULL, models TEXT NOT NULL, no_cache INTEGER NOT NULL,
	rpm INTEGER NOT NULL, tpm INTEGER NOT NULL, daily_usd REAL NOT NULL, monthly_usd REAL NOT NULL,
	created INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta(name, value) VALUES ('keys_version', 0);
`

// OpenSQLite opens (creating if needed) the store at path. power makes every commit
// reach the disk (synchronous=FULL); otherwise a commit survives a crash of the process
// but not of the machine (synchronous=NORMAL, WAL).
func OpenSQLite(path string, power bool) (*SQLite, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	sync := "NORMAL"
	if power {
		sync = "FULL"
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(30000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+sync+")")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", path, err)
	}
	// Idle connections are kept (database/sql keeps 2 by default): a reopened one would
	// run its pragmas and prepare Apply's and Reserve's statements again.
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	s := &SQLite{db: db}
	if err := s.tx(context.Background(), func(tx *sql.Tx) error {
		_, err := tx.Exec(schema)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("ledger: open %s: %w", path, err)
	}
	if err := s.prepareReserve(); err != nil {
		db.Close()
		return nil, fmt.Errorf("ledger: open %s: %w", path, err)
	}
	if err := s.prepareApply(); err != nil {
		db.Close()
		return nil, fmt.Errorf("ledger: open %s: %w", path, err)
	}
	q.Add("_pragma", "query_only(1)")
	q.Del("_txlock")
	if s.reports, err = sql.Open("sqlite", "file:"+path+"?"+q.Encode()); err != nil {
		db.Close()
		return nil, fmt.Errorf("ledger: open %s: %w", path, err)
	}
	s.reports.SetMaxOpenConns(reportConns)
	s.reports.SetMaxIdleConns(reportConns)
	_ = os.Chmod(path, 0o600)
	return s, nil
}

// prepareApply prepares Apply's statements.
func (s *SQLite) prepareApply() error {
	var err error
	for i := range applyLevels {
		if s.apply.insert[i], err = s.db.Prepare(insertRows(1 << i)); err != nil {
			return err
		}
		n := 1 << i
		if s.apply.settle[i], err = s.db.Prepare(`DELETE FROM reservations WHERE uid IN (` + strings.Repeat("?,", n-1) + `?)`); err != nil {
			return err
		}
	}
	s.apply.window, err = s.db.Prepare(addWindow)
	return err
}

// prepareReserve prepares Reserve's statements.
func (s *SQLite) prepareReserve() error {
	var err error
	if s.reserve.prune, err = s.db.Prepare(reservePrune); err != nil {
		return err
	}
	if s.reserve.insert, err = s.db.Prepare(reserveInsert); err != nil {
		return err
	}
	s.reserve.used = map[string]*sql.Stmt{}
	for span, col := range map[string]string{"m": "minute", "d": "day", "M": "month"} {
		if s.reserve.used[span], err = s.db.Prepare(reserveUsed + col + " = ?3"); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the database.
func (s *SQLite) Close() error {
	err := s.db.Close()
	if rerr := s.reports.Close(); err == nil {
		err = rerr
	}
	return err
}

// tx runs f in a write transaction (BEGIN IMMEDIATE: it holds the file's write lock from
// the start, so two processes never both read a budget and then both spend it).
func (s *SQLite) tx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func micros(t time.Time) int64 { return t.UnixMicro() }

// Window starts, in unix seconds (UTC).
func minuteOf(t time.Time) int64 { return t.Unix() - t.Unix()%60 }
func dayOf(t time.Time) int64    { return t.Unix() - t.Unix()%86400 }
func monthOf(t time.Time) int64 {
	u := t.UTC()
	return time.Date(u.Year(), u.Month(), 1, 0, 0, 0, 0, time.UTC).Unix()
}

const recordColumns = `uid, time, request_id, key_id, tenant, end_user, feature, kind, model, served, target,
	region, pool, cache, prompt_tokens, prompt_tokens_before, completion_tokens, cached_tokens, estimated, latency_us,
	ttft_us, cost_usd, billed_usd, unpriced, reference_model, reference_usd, ref_compressed_usd, served_ref_model,
	served_ref_usd, status`

const nRecordColumns = 30

// insertRows is an INSERT of n records that skips UIDs already stored and returns the
// UIDs it inserted.
func insertRows(n int) string {
	row := "(" + strings.Repeat("?,", nRecordColumns-1) + "?)"
	rows := strings.Repeat(row+",", n-1) + row
	return `INSERT INTO records(` + recordColumns + `) VALUES ` + rows + ` ON CONFLICT(uid) DO NOTHING RETURNING uid`
}

const addWindow = `INSERT INTO windows(key_id, span, start, requests, tokens, usd) VALUES (?,?,?,?,?,?)
	ON CONFLICT(key_id, span, start) DO UPDATE SET requests = requests + excluded.requests,
	tokens = tokens + excluded.tokens, usd = usd + excluded.usd`

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// recordArgs appends r's column values.
func recordArgs(args []any, r *Record) []any {
	return append(args, r.UID, micros(r.Time), r.RequestID, r.KeyID, r.Tenant, r.User, r.Feature,
		r.Kind, r.Model, r.Served, r.Target, r.Region, r.Pool, r.Cache, r.PromptTokens, r.PromptTokensBefore,
		r.CompletionTokens, r.CachedTokens, b2i(r.Estimated), r.Latency.Microseconds(), r.TTFT.Microseconds(),
		r.CostUSD, r.BilledUSD, b2i(r.Unpriced), r.ReferenceModel, r.ReferenceUSD, r.RefCompressedUSD,
		r.ServedRefModel, r.ServedRefUSD, r.Status)
}

type windowKey struct {
	key   string
	span  string
	start int64
}

type windowSum struct {
	requests, tokens int64
	usd              float64
}

// applyLevels: one statement carries at most 2^(applyLevels-1) records (32).
const applyLevels = 6

// applyChunk is how many records one INSERT statement carries at most.
const applyChunk = 1 << (applyLevels - 1)

// chunk is the size of the next statement's part of n rows: the largest power of two
// not over n or applyChunk, and its level.
func chunk(n int) (size, level int) {
	level = min(bits.Len(uint(n))-1, applyLevels-1)
	return 1 << level, level
}

// Apply implements Store: records go in by the chunk; the usage windows of the ones
// that were new are summed in memory and added with one upsert per window; the
// reservations they settle are deleted together.
func (s *SQLite) Apply(ctx context.Context, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		inserted := make(map[string]bool, len(recs))
		args := make([]any, 0, applyChunk*nRecordColumns)
		for start := 0; start < len(recs); {
			n, level := chunk(len(recs) - start)
			part := recs[start : start+n]
			start += n
			args = args[:0]
			for i := range part {
				args = recordArgs(args, &part[i])
			}
			rows, err := tx.StmtContext(ctx, s.apply.insert[level]).QueryContext(ctx, args...)
			if err != nil {
				return fmt.Errorf("insert records: %w", err)
			}
			for rows.Next() {
				var uid string
				if err := rows.Scan(&uid); err != nil {
					rows.Close()
					return err
				}
				inserted[uid] = true
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("insert records: %w", err)
			}
		}
		wins := map[windowKey]*windowSum{}
		var settled []any
		for i := range recs {
			r := &recs[i]
			if r.KeyID == "" {
				continue
			}
			settled = append(settled, r.UID)
			// Requests refused before any work (429) do not use up the windows.
			if !inserted[r.UID] || r.Status == 429 {
				continue
			}
			delete(inserted, r.UID) // a UID twice in one batch counts once
			for _, w := range [...]windowKey{{r.KeyID, "m", minuteOf(r.Time)}, {r.KeyID, "d", dayOf(r.Time)}, {r.KeyID, "M", monthOf(r.Time)}} {
				ws := wins[w]
				if ws == nil {
					ws = &windowSum{}
					wins[w] = ws
				}
				ws.requests++
				ws.tokens += int64(r.PromptTokens + r.CompletionTokens)
				ws.usd += r.BilledUSD
			}
		}
		if len(wins) > 0 {
			win := tx.StmtContext(ctx, s.apply.window)
			for k, w := range wins {
				if _, err := win.ExecContext(ctx, k.key, k.span, k.start, w.requests, w.tokens, w.usd); err != nil {
					return fmt.Errorf("usage window: %w", err)
				}
			}
		}
		for len(settled) > 0 {
			n, level := chunk(len(settled))
			if _, err := tx.StmtContext(ctx, s.apply.settle[level]).ExecContext(ctx, settled[:n]...); err != nil {
				return err
			}
			settled = settled[n:]
		}
		// Minute windows older than an hour are never read again.
		if now := time.Now(); now.Unix()-s.pruned.Load() > 60 {
			s.pruned.Store(now.Unix())
			if _, err := tx.ExecContext(ctx, `DELETE FROM windows WHERE span = 'm' AND start < ?`, minuteOf(now)-3600); err != nil {
				return err
			}
		}
		return nil
	})
}

// AddHardware implements Store.
func (s *SQLite) AddHardware(ctx context.Context, rows []HardwareCost) error {
	if len(rows) == 0 {
		return nil
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, r := range rows {
			if _, err := tx.ExecContext(ctx, `INSERT INTO hardware(pool, minute, usd) VALUES (?,?,?)
				ON CONFLICT(pool, minute) DO UPDATE SET usd = max(usd, excluded.usd)`, r.Pool, minuteOf(r.Minute), r.USD); err != nil {
				return err
			}
		}
		return nil
	})
}

// Reserve implements Store. Expired reservations are left out of the sums and deleted
// at most once a second.
func (s *SQLite) Reserve(ctx context.Context, res Reservation, lim Limits, now time.Time) error {
	var over *LimitError
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if sec := now.Unix(); sec != s.resPruned.Load() {
			s.resPruned.Store(sec)
			if _, err := tx.StmtContext(ctx, s.reserve.prune).ExecContext(ctx, sec); err != nil {
				return err
			}
		}
		m, d, mo := minuteOf(res.Time), dayOf(res.Time), monthOf(res.Time)
		used := func(span string, start int64) (reqs, tokens int64, usd float64, err error) {
			var r, t, rr, rt sql.NullInt64
			var u, ru sql.NullFloat64
			st := tx.StmtContext(ctx, s.reserve.used[span])
			if err := st.QueryRowContext(ctx, res.KeyID, span, start, now.Unix()).Scan(&r, &t, &u, &rr, &rt, &ru); err != nil {
				return 0, 0, 0, err
			}
			return r.Int64 + rr.Int64, t.Int64 + rt.Int64, u.Float64 + ru.Float64, nil
		}
		nextMonth := time.Unix(mo, 0).UTC().AddDate(0, 1, 0)
		if lim.RequestsPerMinute > 0 || lim.TokensPerMinute > 0 {
			reqs, tokens, _, err := used("m", m)
			if err != nil {
				return err
			}
			reset := time.Unix(m+60, 0)
			if lim.RequestsPerMinute > 0 && reqs+1 > int64(lim.RequestsPerMinute) {
				over = &LimitError{Limit: LimitRequests, Used: float64(reqs), Max: float64(lim.RequestsPerMinute), Reset: reset}
				return nil
			}
			if lim.TokensPerMinute > 0 && tokens+int64(res.Tokens) > int64(lim.TokensPerMinute) {
				over = &LimitError{Limit: LimitTokens, Used: float64(tokens), Max: float64(lim.TokensPerMinute), Reset: reset}
				return nil
			}
		}
		if lim.DailyUSD > 0 && res.USD > 0 {
			_, _, usd, err := used("d", d)
			if err != nil {
				return err
			}
			if usd+res.USD > lim.DailyUSD {
				over = &LimitError{Limit: LimitDaily, Used: usd, Max: lim.DailyUSD, Reset: time.Unix(d+86400, 0)}
				return nil
			}
		}
		if lim.MonthlyUSD > 0 && res.USD > 0 {
			_, _, usd, err := used("M", mo)
			if err != nil {
				return err
			}
			if usd+res.USD > lim.MonthlyUSD {
				over = &LimitError{Limit: LimitMonthly, Used: usd, Max: lim.MonthlyUSD, Reset: nextMonth}
				return nil
			}
		}
		_, err := tx.StmtContext(ctx, s.reserve.insert).ExecContext(ctx, res.UID, res.KeyID, m, d, mo, res.Expires.Unix(), res.Tokens, res.USD)
		return err
	})
	if err != nil {
		return fmt.Errorf("ledger: reserve: %w", err)
	}
	if over != nil {
		return overLimit(res.KeyID, over, now)
	}
	return nil
}

// CreateKey implements Store.
func (s *SQLite) CreateKey(ctx context.Context, k StoredKey) error {
	tiers, _ := json.Marshal(nonNil(k.Key.Tiers))
	mods, _ := json.Marshal(nonNil(k.Key.Models))
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO keys(id, digest, name, tenant, residency, tiers, models, no_cache,
			rpm, tpm, daily_usd, monthly_usd, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			k.Key.ID, k.Digest[:], k.Key.Name, k.Key.Tenant, k.Key.Residency, string(tiers), string(mods), b2i(k.Key.NoCache),
			k.Key.RequestsPerMinute, k.Key.TokensPerMinute, k.Key.DailyUSD, k.Key.MonthlyUSD, k.Created.Unix()); err != nil {
			if strings.Contains(err.Error(), "UNIQUE") {
				return models.Errorf(models.ErrInvalid, "a key with id %s already exists", k.Key.ID)
			}
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE meta SET value = value + 1 WHERE name = 'keys_version'`)
		return err
	})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// RevokeKey implements Store.
func (s *SQLite) RevokeKey(ctx context.Context, id string, at time.Time) (bool, error) {
	var ok bool
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE keys SET revoked = ? WHERE id = ? AND revoked = 0`, at.Unix(), id)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		if ok = n == 1; ok {
			_, err = tx.ExecContext(ctx, `UPDATE meta SET value = value + 1 WHERE name = 'keys_version'`)
		}
		return err
	})
	return ok, err
}

// Keys implements Store.
func (s *SQLite) Keys(ctx context.Context) ([]StoredKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, digest, name, tenant, residency, tiers, models, no_cache, rpm, tpm,
		daily_usd, monthly_usd, created, revoked FROM keys ORDER BY created, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []StoredKey
	for rows.Next() {
		var k StoredKey
		var digest []byte
		var tiers, mods string
		var noCache int
		var created, revoked int64
		if err := rows.Scan(&k.Key.ID, &digest, &k.Key.Name, &k.Key.Tenant, &k.Key.Residency, &tiers, &mods, &noCache,
			&k.Key.RequestsPerMinute, &k.Key.TokensPerMinute, &k.Key.DailyUSD, &k.Key.MonthlyUSD, &created, &revoked); err != nil {
			return nil, err
		}
		copy(k.Digest[:], digest)
		_ = json.Unmarshal([]byte(tiers), &k.Key.Tiers)
		_ = json.Unmarshal([]byte(mods), &k.Key.Models)
		k.Key.NoCache = noCache != 0
		k.Created = time.Unix(created, 0).UTC()
		if revoked != 0 {
			k.Revoked = time.Unix(revoked, 0).UTC()
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// KeysVersion implements Store.
func (s *SQLite) KeysVersion(ctx context.Context) (int64, error) {
	var v int64
	err := s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = 'keys_version'`).Scan(&v)
	return v, err
}

// groupColumns maps report dimensions to columns (a fixed list: nothing from a query
// string reaches SQL text).
var groupColumns = map[string]string{
	"key": "key_id", "tenant": "tenant", "user": "end_user", "feature": "feature", "model": "model",
	"target": "target", "region": "region", "day": "time / 86400000000",
}

const usdPerDay = 86400000000

// Aggregate implements Store.
func (s *SQLite) Aggregate(ctx context.Context, q Query) ([]Aggregate, error) {
	sel := make([]string, 0, len(q.GroupBy)+2)
	for _, g := range q.GroupBy {
		c, ok := groupColumns[g]
		if !ok {
			return nil, models.InvalidParam("group_by", "cannot group by %q", g)
		}
		sel = append(sel, "CAST("+c+" AS TEXT)")
	}
	sel = append(sel, "pool", "time / 86400000000")
	where := []string{"time >= ?", "time < ?"}
	args := []any{micros(q.From), micros(q.To)}
	for _, f := range []struct{ col, v string }{{"key_id", q.Key}, {"tenant", q.Tenant}, {"end_user", q.User},
		{"feature", q.Feature}, {"model", q.Model}, {"target", q.Target}, {"region", q.Region}} {
		if f.v != "" {
			where = append(where, f.col+" = ?")
			args = append(args, f.v)
		}
	}
	const hit = "(cache LIKE 'hit%')"
	const priced = "unpriced = 0"
	stmt := `SELECT ` + strings.Join(sel, ", ") + `,
		count(*), sum(status >= 400), sum(unpriced), sum(` + hit + `),
		sum(prompt_tokens), sum(prompt_tokens_before), sum(completion_tokens), sum(cached_tokens),
		sum(latency_us), sum(ttft_us), sum(ttft_us > 0),
		sum(cost_usd), sum(billed_usd),
		total(CASE WHEN ` + priced + ` THEN reference_usd END),
		total(CASE WHEN ` + priced + ` AND ` + hit + ` THEN reference_usd END),
		total(CASE WHEN ` + priced + ` AND NOT ` + hit + ` THEN reference_usd - ref_compressed_usd END),
		total(CASE WHEN ` + priced + ` AND NOT ` + hit + ` THEN ref_compressed_usd - served_ref_usd END),
		total(CASE WHEN ` + priced + ` AND NOT ` + hit + ` THEN served_ref_usd END),
		total(CASE WHEN ` + priced + ` AND NOT ` + hit + ` THEN cost_usd END)
		FROM records WHERE ` + strings.Join(where, " AND ") + `
		GROUP BY ` + strings.Join(sel, ", ")
	rows, err := s.reports.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Aggregate
	for rows.Next() {
		a := Aggregate{Group: make([]string, len(q.GroupBy))}
		dst := make([]any, 0, len(q.GroupBy)+24)
		gv := make([]sql.NullString, len(q.GroupBy))
		for i := range gv {
			dst = append(dst, &gv[i])
		}
		dst = append(dst, &a.Pool, &a.Day, &a.Requests, &a.Errors, &a.Unpriced, &a.CacheHits,
			&a.PromptTokens, &a.PromptTokensBefore, &a.CompletionTokens, &a.CachedTokens,
			&a.LatencyUS, &a.TTFTUS, &a.TTFTCount, &a.CostUSD, &a.BilledUSD,
			&a.ReferenceUSD, &a.RefHitUSD, &a.RefSavedCompress, &a.RefSavedRouting, &a.ServedRefUSD, &a.MissCostUSD)
		if err := rows.Scan(dst...); err != nil {
			return nil, err
		}
		for i := range gv {
			a.Group[i] = gv[i].String
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// PoolDays implements Store.
func (s *SQLite) PoolDays(ctx context.Context, from, to time.Time) ([]PoolDay, error) {
	type k struct {
		pool string
		day  int64
	}
	m := map[k]*PoolDay{}
	get := func(pool string, day int64) *PoolDay {
		p := m[k{pool, day}]
		if p == nil {
			p = &PoolDay{Pool: pool, Day: day}
			m[k{pool, day}] = p
		}
		return p
	}
	rows, err := s.reports.QueryContext(ctx, `SELECT pool, minute / 86400, sum(usd) FROM hardware
		WHERE minute >= ? AND minute < ? GROUP BY 1, 2`, from.Unix(), to.Unix())
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var pool string
		var day int64
		var usd float64
		if err := rows.Scan(&pool, &day, &usd); err != nil {
			rows.Close()
			return nil, err
		}
		get(pool, day).HardwareUSD = usd
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = s.reports.QueryContext(ctx, `SELECT pool, time / 86400000000, sum(cost_usd) FROM records
		WHERE time >= ? AND time < ? AND pool != '' GROUP BY 1, 2`, micros(from), micros(to))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var pool string
		var day int64
		var usd float64
		if err := rows.Scan(&pool, &day, &usd); err != nil {
			return nil, err
		}
		get(pool, day).BusyUSD = usd
	}
	out := make([]PoolDay, 0, len(m))
	for _, p := range m {
		out = append(out, *p)
	}
	return out, rows.Err()
}
