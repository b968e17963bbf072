package batch

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fastjson"
)

// Statuses of a batch.
const (
	StatusValidating = "validating"
	StatusInProgress = "in_progress"
	StatusFinalizing = "finalizing"
	StatusCompleted  = "completed"
	StatusFailed     = "failed"
	StatusExpired    = "expired"
	StatusCancelling = "cancelling"
	StatusCancelled  = "cancelled"
)

// transitions lists the status changes a batch may make; every change goes through
// canTransition.
var transitions = map[string][]string{
	StatusValidating: {StatusInProgress, StatusFailed, StatusCancelling},
	StatusInProgress: {StatusFinalizing, StatusCancelling, StatusExpired},
	StatusFinalizing: {StatusCompleted},
	StatusCancelling: {StatusCancelled},
}

func canTransition(from, to string) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Statuses returns every status, for metrics.
func Statuses() []string {
	return []string{StatusValidating, StatusInProgress, StatusFinalizing, StatusCompleted, StatusFailed,
		StatusExpired, StatusCancelling, StatusCancelled}
}

// window is the only completion window (OpenAI's).
const window = "24h"

// batchRow is a batch as stored.
type batchRow struct {
	Seq                                      int64
	ID, Owner                                string
	Cred                                     []byte
	Endpoint, InputFileID, CompletionWindow  string
	Metadata                                 []byte // JSON object or nil
	Status                                   string
	CreatedAt, InProgressAt, ExpiresAt       int64
	FinalizingAt, CompletedAt, FailedAt      int64
	ExpiredAt, CancellingAt, CancelledAt     int64
	OutputFileID, ErrorFileID                string
	Errors                                   []byte // JSON array of batch errors or nil
	Total, Completed, Failed                 int64
	PromptTokens, CompletionTokens, CachedTk int64
	CostUSD                                  float64
}

const batchCols = `seq, id, owner, cred, endpoint, input_file_id, completion_window, metadata, status,
	created_at, in_progress_at, expires_at, finalizing_at, completed_at, failed_at, expired_at, cancelling_at, cancelled_at,
	output_file_id, error_file_id, errors, total, completed, failed, prompt_tokens, completion_tokens, cached_tokens, cost_usd`

type scanner interface{ Scan(dest ...any) error }

func scanBatch(s scanner) (*batchRow, error) {
	b := &batchRow{}
	err := s.Scan(&b.Seq, &b.ID, &b.Owner, &b.Cred, &b.Endpoint, &b.InputFileID, &b.CompletionWindow, &b.Metadata, &b.Status,
		&b.CreatedAt, &b.InProgressAt, &b.ExpiresAt, &b.FinalizingAt, &b.CompletedAt, &b.FailedAt, &b.ExpiredAt, &b.CancellingAt, &b.CancelledAt,
		&b.OutputFileID, &b.ErrorFileID, &b.Errors, &b.Total, &b.Completed, &b.Failed, &b.PromptTokens, &b.CompletionTokens, &b.CachedTk, &b.CostUSD)
	return b, err
}

// batchJSON is OpenAI's Batch object (with sluice's cost in usage).
type batchJSON struct {
	ID               string          `json:"id"`
	Object           string          `json:"object"`
	Endpoint         string          `json:"endpoint"`
	Errors           *errorsJSON     `json:"errors"`
	InputFileID      string          `json:"input_file_id"`
	CompletionWindow string          `json:"completion_window"`
	Status           string          `json:"status"`
	OutputFileID     *string         `json:"output_file_id"`
	ErrorFileID      *string         `json:"error_file_id"`
	CreatedAt        int64           `json:"created_at"`
	InProgressAt     *int64          `json:"in_progress_at"`
	ExpiresAt        *int64          `json:"expires_at"`
	FinalizingAt     *int64          `json:"finalizing_at"`
	CompletedAt      *int64          `json:"completed_at"`
	FailedAt         *int64          `json:"failed_at"`
	ExpiredAt        *int64          `json:"expired_at"`
	CancellingAt     *int64          `json:"cancelling_at"`
	CancelledAt      *int64          `json:"cancelled_at"`
	RequestCounts    countsJSON      `json:"request_counts"`
	Usage            usageJSON       `json:"usage"`
	Metadata         json.RawMessage `json:"metadata"`
}

type errorsJSON struct {
	Object string          `json:"object"`
	Data   json.RawMessage `json:"data"`
}

// batchError is one entry of a failed batch's errors.
type batchError struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Param   *string `json:"param"`
	Line    *int64  `json:"line"`
}

type countsJSON struct {
	Total     int64 `json:"total"`
	Completed int64 `json:"completed"`
	Failed    int64 `json:"failed"`
}

type usageJSON struct {
	InputTokens         int64   `json:"input_tokens"`
	InputTokensDetails  cached  `json:"input_tokens_details"`
	OutputTokens        int64   `json:"output_tokens"`
	OutputTokensDetails reason  `json:"output_tokens_details"`
	TotalTokens         int64   `json:"total_tokens"`
	CostUSD             float64 `json:"cost_usd"`
}

type cached struct {
	CachedTokens int64 `json:"cached_tokens"`
}
type reason struct {
	ReasoningTokens int64 `json:"reasoning_tokens"`
}

func ts(v int64) *int64 {
	if v == 0 {
		return nil
	}
	return &v
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (b *batchRow) json() batchJSON {
	j := batchJSON{ID: b.ID, Object: "batch", Endpoint: b.Endpoint, InputFileID: b.InputFileID,
		CompletionWindow: b.CompletionWindow, Status: b.Status, OutputFileID: optString(b.OutputFileID),
		ErrorFileID: optString(b.ErrorFileID), CreatedAt: b.CreatedAt, InProgressAt: ts(b.InProgressAt),
		ExpiresAt: ts(b.ExpiresAt), FinalizingAt: ts(b.FinalizingAt), CompletedAt: ts(b.CompletedAt),
		FailedAt: ts(b.FailedAt), ExpiredAt: ts(b.ExpiredAt), CancellingAt: ts(b.CancellingAt), CancelledAt: ts(b.CancelledAt),
		RequestCounts: countsJSON{b.Total, b.Completed, b.Failed},
		Usage: usageJSON{InputTokens: b.PromptTokens, InputTokensDetails: cached{b.CachedTk}, OutputTokens: b.CompletionTokens,
			TotalTokens: b.PromptTokens + b.CompletionTokens, CostUSD: b.CostUSD},
		Metadata: json.RawMessage("null"),
	}
	if len(b.Metadata) > 0 {
		j.Metadata = b.Metadata
	}
	if len(b.Errors) > 0 {
		j.Errors = &errorsJSON{Object: "list", Data: b.Errors}
	}
	return j
}

func notFoundBatch(id string) error {
	return &models.Error{Kind: models.ErrNotFound, Code: "batch_not_found", Param: "batch_id",
		Msg: fmt.Sprintf("no batch with id %q", id)}
}

// CreateBatch starts a batch (POST /v1/batches) from body ({"input_file_id",
// "endpoint", "completion_window", "metadata"}) for owner; cred is handed back to the
// Executor for each line. It answers at once with the batch in status validating.
func (m *Manager) CreateBatch(ctx context.Context, owner string, cred []byte, body []byte) ([]byte, error) {
	req, err := parseCreate(body)
	if err != nil {
		return nil, err
	}
	input, endpoint, win, meta := req.input, req.endpoint, req.window, req.metadata
	now := m.now()
	b := &batchRow{ID: newID("batch_"), Owner: owner, Cred: cred, Endpoint: endpoint, InputFileID: input,
		CompletionWindow: win, Metadata: meta, Status: StatusValidating, CreatedAt: now.Unix(),
		ExpiresAt: now.Add(24 * time.Hour).Unix()}
	err = m.st.tx(ctx, func(tx *sql.Tx) error {
		f, err := m.getFile(ctx, tx, owner, input)
		if err != nil {
			var me *models.Error
			if errors.As(err, &me) {
				return models.InvalidParam("input_file_id", "no file with id %q", input)
			}
			return err
		}
		if f.Purpose != PurposeBatch {
			return models.InvalidParam("input_file_id", "the file %q has purpose %q; a batch reads a file uploaded with purpose \"batch\"", input, f.Purpose)
		}
		res, err := tx.Exec(`INSERT INTO batches(id, owner, cred, endpoint, input_file_id, completion_window, metadata, status, created_at, expires_at)
			VALUES(?,?,?,?,?,?,?,?,?,?)`, b.ID, b.Owner, b.Cred, b.Endpoint, b.InputFileID, b.CompletionWindow, nullable(b.Metadata),
			b.Status, b.CreatedAt, b.ExpiresAt)
		if err != nil {
			return err
		}
		b.Seq, err = res.LastInsertId()
		return err
	})
	if err != nil {
		var me *models.Error
		if errors.As(err, &me) {
			return nil, err
		}
		return nil, m.internal("create batch", err)
	}
	m.m.created.Inc()
	m.notify()
	return json.Marshal(b.json())
}

// createRequest is the body of POST /v1/batches.
type createRequest struct {
	input, endpoint, window string
	metadata                []byte // a JSON object, or nil
}

// parseCreate reads and checks the body of POST /v1/batches.
func parseCreate(body []byte) (createRequest, error) {
	var r createRequest
	var p fastjson.Parser
	v, err := p.ParseBytes(body)
	if err != nil {
		return r, models.InvalidParam("", "request body is not valid JSON: %v", err)
	}
	if v.Type() != fastjson.TypeObject {
		return r, models.InvalidParam("", "request body must be a JSON object")
	}
	get := func(k string) (string, error) {
		x := v.Get(k)
		if x == nil || x.Type() == fastjson.TypeNull {
			return "", models.InvalidParam(k, "%s is required", k)
		}
		if x.Type() != fastjson.TypeString {
			return "", models.InvalidParam(k, "%s must be a string, got %s", k, x.Type())
		}
		return string(x.GetStringBytes()), nil
	}
	if r.input, err = get("input_file_id"); err != nil {
		return r, err
	}
	if r.endpoint, err = get("endpoint"); err != nil {
		return r, err
	}
	if !endpoints[r.endpoint] {
		return r, models.InvalidParam("endpoint", "endpoint must be /v1/chat/completions, /v1/completions or /v1/embeddings, got %q", r.endpoint)
	}
	if r.window, err = get("completion_window"); err != nil {
		return r, err
	}
	if r.window != window {
		return r, models.InvalidParam("completion_window", "completion_window must be %q, got %q", window, r.window)
	}
	r.metadata, err = metadata(v.Get("metadata"))
	return r, err
}

func nullable(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// metadata checks OpenAI's metadata rules: at most 16 string pairs, keys up to 64
// characters and values up to 512.
func metadata(v *fastjson.Value) ([]byte, error) {
	if v == nil || v.Type() == fastjson.TypeNull {
		return nil, nil
	}
	o, err := v.Object()
	if err != nil {
		return nil, models.InvalidParam("metadata", "metadata must be an object of strings")
	}
	if o.Len() > 16 {
		return nil, models.InvalidParam("metadata", "metadata has %d keys; at most 16 are allowed", o.Len())
	}
	var bad error
	o.Visit(func(k []byte, x *fastjson.Value) {
		switch {
		case bad != nil:
		case utf8.RuneCount(k) > 64:
			bad = models.InvalidParam("metadata", "metadata keys must be at most 64 characters")
		case x.Type() != fastjson.TypeString:
			bad = models.InvalidParam("metadata."+string(k), "metadata values must be strings")
		case utf8.RuneCount(x.GetStringBytes()) > 512:
			bad = models.InvalidParam("metadata."+string(k), "metadata values must be at most 512 characters")
		}
	})
	if bad != nil {
		return nil, bad
	}
	return v.MarshalTo(nil), nil
}

func (m *Manager) getBatch(ctx context.Context, q querier, owner, id string) (*batchRow, error) {
	if !validID(id, "batch_") {
		return nil, notFoundBatch(id)
	}
	b, err := scanBatch(q.QueryRowContext(ctx, `SELECT `+batchCols+` FROM batches WHERE id=? AND owner=?`, id, owner))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFoundBatch(id)
	}
	if err != nil {
		return nil, m.internal("read batch", err)
	}
	return b, nil
}

// Batch returns a Batch object (GET /v1/batches/{id}).
func (m *Manager) Batch(ctx context.Context, owner, id string) ([]byte, error) {
	b, err := m.getBatch(ctx, m.st.db, owner, id)
	if err != nil {
		return nil, err
	}
	return json.Marshal(b.json())
}

// Batches lists owner's batches, newest first (GET /v1/batches), paged by after (the
// last id of the previous page) and limit (1 to 100, default 20).
func (m *Manager) Batches(ctx context.Context, owner, after string, limit int) ([]byte, error) {
	limit = clampLimit(limit, 100)
	q := `SELECT ` + batchCols + ` FROM batches WHERE owner=?`
	args := []any{owner}
	if after != "" {
		if !validID(after, "batch_") {
			return nil, models.InvalidParam("after", "after must be a batch id, got %q", after)
		}
		q += ` AND seq < (SELECT seq FROM batches WHERE id=?)`
		args = append(args, after)
	}
	q += ` ORDER BY seq DESC LIMIT ?`
	args = append(args, limit+1)
	rows, err := m.st.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, m.internal("list batches", err)
	}
	defer rows.Close()
	data := []batchJSON{}
	for rows.Next() {
		b, err := scanBatch(rows)
		if err != nil {
			return nil, m.internal("list batches", err)
		}
		data = append(data, b.json())
	}
	if err := rows.Err(); err != nil {
		return nil, m.internal("list batches", err)
	}
	more := len(data) > limit
	if more {
		data = data[:limit]
	}
	return json.Marshal(listJSON(data, more, func(b batchJSON) string { return b.ID }))
}

// CancelBatch cancels a batch (POST /v1/batches/{id}/cancel): it turns cancelling, no
// new line starts, and once the lines in flight are done it turns cancelled with their
// results in its output and error files. Cancelling twice is harmless; a batch that has
// ended cannot be cancelled.
func (m *Manager) CancelBatch(ctx context.Context, owner, id string) ([]byte, error) {
	var b *batchRow
	err := m.st.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if b, err = m.getBatch(ctx, tx, owner, id); err != nil {
			return err
		}
		switch {
		case b.Status == StatusCancelling || b.Status == StatusCancelled:
			return nil
		case !canTransition(b.Status, StatusCancelling):
			return &models.Error{Kind: models.ErrInvalid, Code: "batch_not_cancellable",
				Msg: fmt.Sprintf("the batch is %s; only a validating or in-progress batch can be cancelled", b.Status)}
		}
		b.Status, b.CancellingAt = StatusCancelling, m.now().Unix()
		_, err = tx.Exec(`UPDATE batches SET status=?, cancelling_at=? WHERE seq=?`, b.Status, b.CancellingAt, b.Seq)
		return err
	})
	if err != nil {
		var me *models.Error
		if errors.As(err, &me) {
			return nil, err
		}
		return nil, m.internal("cancel batch", err)
	}
	m.notify()
	return json.Marshal(b.json())
}
