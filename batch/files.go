package batch

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/sluice-llm/sluice/models"
)

// Purposes of files: what clients upload for batches, and what sluice writes.
const (
	PurposeBatch       = "batch"
	PurposeBatchOutput = "batch_output"
)

// fileRow is a file's metadata.
type fileRow struct {
	ID, Owner, Filename, Purpose string
	Bytes, CreatedAt             int64
	Deleted                      bool
}

// fileJSON is OpenAI's File object.
type fileJSON struct {
	ID            string  `json:"id"`
	Object        string  `json:"object"`
	Bytes         int64   `json:"bytes"`
	CreatedAt     int64   `json:"created_at"`
	ExpiresAt     *int64  `json:"expires_at"`
	Filename      string  `json:"filename"`
	Purpose       string  `json:"purpose"`
	Status        string  `json:"status"`
	StatusDetails *string `json:"status_details"`
}

func (f *fileRow) json() fileJSON {
	return fileJSON{ID: f.ID, Object: "file", Bytes: f.Bytes, CreatedAt: f.CreatedAt, Filename: f.Filename,
		Purpose: f.Purpose, Status: "processed"}
}

func notFoundFile(id string) error {
	return &models.Error{Kind: models.ErrNotFound, Code: "file_not_found", Param: "file_id",
		Msg: fmt.Sprintf("no file with id %q", id)}
}

// CreateFile stores an upload (POST /v1/files) and returns its File object. Only
// purpose "batch" is accepted; the contents are kept as sent, up to MaxFileBytes.
func (m *Manager) CreateFile(ctx context.Context, owner, filename, purpose string, r io.Reader) ([]byte, error) {
	if purpose != PurposeBatch {
		return nil, models.InvalidParam("purpose", "purpose must be %q (sluice stores files for the Batch API only), got %q", PurposeBatch, purpose)
	}
	if filename == "" {
		filename = "upload.jsonl"
	}
	if len(filename) > 255 || !utf8.ValidString(filename) {
		return nil, models.InvalidParam("file", "the file name must be valid UTF-8 of at most 255 bytes")
	}
	id := newID("file-")
	n, err := m.writeFile(id, func(w io.Writer) (int64, error) {
		n, err := io.Copy(w, io.LimitReader(r, m.opts.MaxFileBytes+1))
		if err == nil && n > m.opts.MaxFileBytes {
			return n, models.Errorf(models.ErrTooLarge, "the file is larger than the %d-byte limit (batch.max_file_bytes)", m.opts.MaxFileBytes)
		}
		return n, err
	})
	if err != nil {
		return nil, err
	}
	f := fileRow{ID: id, Owner: owner, Filename: filename, Purpose: purpose, Bytes: n, CreatedAt: m.now().Unix()}
	if err := m.st.tx(ctx, func(tx *sql.Tx) error { return insertFile(tx, &f) }); err != nil {
		_ = os.Remove(m.st.path(id))
		return nil, m.internal("store file", err)
	}
	m.m.files.Inc()
	return json.Marshal(f.json())
}

func insertFile(tx *sql.Tx, f *fileRow) error {
	_, err := tx.Exec(`INSERT INTO files(id, owner, filename, purpose, bytes, created_at) VALUES(?,?,?,?,?,?)`,
		f.ID, f.Owner, f.Filename, f.Purpose, f.Bytes, f.CreatedAt)
	return err
}

// writeFile writes a file's contents durably under its id: to a temporary name, synced,
// renamed, and the directory synced. Nothing names it until its row is committed; the
// startup sweep removes contents without a row.
func (m *Manager) writeFile(id string, fill func(io.Writer) (int64, error)) (int64, error) {
	tmp := m.st.path(id) + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, m.internal("create file", err)
	}
	n, err := fill(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, m.st.path(id))
	}
	if err == nil {
		err = syncDir(m.st.files)
	}
	if err != nil {
		_ = os.Remove(tmp)
		var me *models.Error
		if errors.As(err, &me) {
			return n, err
		}
		return n, m.internal("write file", err)
	}
	return n, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// getFile returns a live (not deleted) file of owner's.
func (m *Manager) getFile(ctx context.Context, q querier, owner, id string) (*fileRow, error) {
	if !validID(id, "file-") {
		return nil, notFoundFile(id)
	}
	f := &fileRow{}
	err := q.QueryRowContext(ctx, `SELECT id, owner, filename, purpose, bytes, created_at, deleted FROM files WHERE id=? AND owner=?`,
		id, owner).Scan(&f.ID, &f.Owner, &f.Filename, &f.Purpose, &f.Bytes, &f.CreatedAt, &f.Deleted)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && f.Deleted) {
		return nil, notFoundFile(id)
	}
	if err != nil {
		return nil, m.internal("read file", err)
	}
	return f, nil
}

// querier is *sql.DB or *sql.Tx.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// File returns a File object (GET /v1/files/{id}).
func (m *Manager) File(ctx context.Context, owner, id string) ([]byte, error) {
	f, err := m.getFile(ctx, m.st.db, owner, id)
	if err != nil {
		return nil, err
	}
	return json.Marshal(f.json())
}

// FileContent opens a file's contents (GET /v1/files/{id}/content); the caller closes it.
func (m *Manager) FileContent(ctx context.Context, owner, id string) (io.ReadCloser, int64, error) {
	f, err := m.getFile(ctx, m.st.db, owner, id)
	if err != nil {
		return nil, 0, err
	}
	fh, err := os.Open(m.st.path(f.ID))
	if err != nil {
		return nil, 0, m.internal("open file", err)
	}
	return fh, f.Bytes, nil
}

// DeleteFile deletes a file (DELETE /v1/files/{id}). The input of a batch still running
// disappears from the API at once and from the disk when the batch ends.
func (m *Manager) DeleteFile(ctx context.Context, owner, id string) ([]byte, error) {
	err := m.st.tx(ctx, func(tx *sql.Tx) error {
		if _, err := m.getFile(ctx, tx, owner, id); err != nil {
			return err
		}
		_, err := tx.Exec(`UPDATE files SET deleted=1 WHERE id=?`, id)
		return err
	})
	if err != nil {
		var me *models.Error
		if errors.As(err, &me) {
			return nil, err
		}
		return nil, m.internal("delete file", err)
	}
	m.reap(ctx)
	return json.Marshal(struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Deleted bool   `json:"deleted"`
	}{id, "file", true})
}

// Files lists owner's files, newest first unless asc (GET /v1/files), paged by after
// (the last id of the previous page) and limit; purpose filters when set.
func (m *Manager) Files(ctx context.Context, owner, purpose, after string, limit int, asc bool) ([]byte, error) {
	limit = clampLimit(limit, 10000)
	cmp, order := "<", "DESC"
	if asc {
		cmp, order = ">", "ASC"
	}
	q := `SELECT id, owner, filename, purpose, bytes, created_at, deleted FROM files WHERE owner=? AND deleted=0`
	args := []any{owner}
	if purpose != "" {
		q += ` AND purpose=?`
		args = append(args, purpose)
	}
	if after != "" {
		if !validID(after, "file-") {
			return nil, models.InvalidParam("after", "after must be a file id, got %q", after)
		}
		q += ` AND seq ` + cmp + ` (SELECT seq FROM files WHERE id=?)`
		args = append(args, after)
	}
	q += ` ORDER BY seq ` + order + ` LIMIT ?`
	args = append(args, limit+1)
	rows, err := m.st.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, m.internal("list files", err)
	}
	defer rows.Close()
	data := []fileJSON{}
	for rows.Next() {
		var f fileRow
		if err := rows.Scan(&f.ID, &f.Owner, &f.Filename, &f.Purpose, &f.Bytes, &f.CreatedAt, &f.Deleted); err != nil {
			return nil, m.internal("list files", err)
		}
		data = append(data, f.json())
	}
	if err := rows.Err(); err != nil {
		return nil, m.internal("list files", err)
	}
	more := len(data) > limit
	if more {
		data = data[:limit]
	}
	return json.Marshal(listJSON(data, more, func(f fileJSON) string { return f.ID }))
}

// page is OpenAI's list object.
type page[T any] struct {
	Object  string  `json:"object"`
	Data    []T     `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

func listJSON[T any](data []T, more bool, id func(T) string) page[T] {
	p := page[T]{Object: "list", Data: data, HasMore: more}
	if len(data) > 0 {
		first, last := id(data[0]), id(data[len(data)-1])
		p.FirstID, p.LastID = &first, &last
	}
	return p
}

func clampLimit(limit, max int) int {
	if limit <= 0 {
		return 20
	}
	return min(limit, max)
}

// reap removes deleted files that no unfinished batch reads any more.
func (m *Manager) reap(ctx context.Context) {
	rows, err := m.st.db.QueryContext(ctx, `SELECT id FROM files WHERE deleted=1 AND id NOT IN
		(SELECT input_file_id FROM batches WHERE status IN ('validating','in_progress','finalizing','cancelling'))`)
	if err != nil {
		m.log.Warn("batch: reap files", "err", err)
		return
	}
	var ids []string
	for rows.Next() {
		var id string
		if rows.Scan(&id) == nil {
			ids = append(ids, id)
		}
	}
	rows.Close()
	for _, id := range ids {
		if err := os.Remove(m.st.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			m.log.Warn("batch: remove file", "id", id, "err", err)
			continue
		}
		if _, err := m.st.db.ExecContext(ctx, `DELETE FROM files WHERE id=? AND deleted=1`, id); err != nil {
			m.log.Warn("batch: reap files", "err", err)
		}
	}
}

// sweep removes contents that no file row names (uploads and outputs cut short by a
// crash before their commit). It runs at start, before anything is written.
func (m *Manager) sweep(ctx context.Context) error {
	ents, err := os.ReadDir(m.st.files)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		keep := false
		if !strings.HasSuffix(name, ".tmp") {
			var n int
			if err := m.st.db.QueryRowContext(ctx, `SELECT count(*) FROM files WHERE id=?`, name).Scan(&n); err != nil {
				return err
			}
			keep = n > 0
		}
		if !keep {
			if err := os.Remove(filepath.Join(m.st.files, name)); err != nil {
				return err
			}
			m.log.Info("batch: removed contents without a file record (cut short by a crash)", "name", name)
		}
	}
	m.reap(ctx)
	return nil
}
