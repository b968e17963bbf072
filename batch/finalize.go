package batch

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sluice-llm/sluice/internal/jsonx"
	"github.com/valyala/fastjson"
)

var (
	errStop    = errors.New("stop")
	errChanged = errors.New("the batch changed status meanwhile")
)

// validate reads a new batch's input file: one row per line, pending, or done at once
// in the error file when the line cannot run (bad JSON, wrong method or url, a
// duplicate custom_id). The rows and the move to in_progress commit together, so a
// crash before the commit validates again from scratch. A batch fails as a whole only
// when its file is gone, empty or has more than MaxLines requests.
func (r *runner) validate(ctx context.Context, j *job) error {
	m := r.m
	f, err := os.Open(m.st.path(j.input))
	if errors.Is(err, os.ErrNotExist) {
		return r.fail(ctx, j, batchError{Code: "invalid_file", Message: "the input file does not exist any more"})
	}
	if err != nil {
		return err
	}
	defer f.Close()
	type row struct {
		idx, off, len int64
		state         int
		result        []byte
	}
	var (
		rows   []row
		failed int64
		parser fastjson.Parser
		seen   = map[string]bool{}
	)
	err = scanLines(f, func(off int64, line []byte) error {
		idx := int64(len(rows))
		if idx >= int64(m.opts.MaxLines) {
			return errStop
		}
		if len(line) > m.opts.MaxLineBytes {
			failed++
			rows = append(rows, row{idx, off, int64(len(line)), lineFailed, appendLineError(nil, requestID(j.id, idx), customIDOf(line),
				&lineError{"request_too_large", fmt.Sprintf("the line is %d bytes; a request may have at most %d (server.max_body_bytes)", len(line), m.opts.MaxLineBytes)})})
			return nil
		}
		req, lerr := parseRequest(&parser, line, j.endpoint)
		if lerr == nil && seen[req.CustomID] {
			lerr = &lineError{"duplicate_custom_id", fmt.Sprintf("custom_id %q is used by an earlier line; each must be unique", req.CustomID)}
			req.CustomID = ""
		}
		if lerr != nil {
			failed++
			rows = append(rows, row{idx, off, int64(len(line)), lineFailed, appendLineError(nil, requestID(j.id, idx), req.CustomID, lerr)})
			return nil
		}
		seen[req.CustomID] = true
		rows = append(rows, row{idx, off, int64(len(line)), linePending, nil})
		return nil
	})
	switch {
	case errors.Is(err, errStop):
		return r.fail(ctx, j, batchError{Code: "too_many_requests",
			Message: fmt.Sprintf("the input file has more than %d requests (batch.max_lines)", m.opts.MaxLines)})
	case err != nil:
		return err
	case len(rows) == 0:
		return r.fail(ctx, j, batchError{Code: "empty_file", Message: "the input file has no requests"})
	}
	if m.crash("validate") {
		return errCrash
	}
	now := m.now().Unix()
	err = m.st.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.Exec(`DELETE FROM lines WHERE batch=?`, j.seq); err != nil {
			return err
		}
		st, err := tx.Prepare(`INSERT INTO lines(batch, idx, state, off, len, result) VALUES(?,?,?,?,?,?)`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, rw := range rows {
			if _, err := st.Exec(j.seq, rw.idx, rw.state, rw.off, rw.len, rw.result); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(`UPDATE batches SET total=?, failed=?, completed=0,
			in_progress_at=CASE status WHEN 'validating' THEN ? ELSE in_progress_at END,
			status=CASE status WHEN 'validating' THEN 'in_progress' ELSE status END WHERE seq=?`,
			len(rows), failed, now, j.seq); err != nil {
			return err
		}
		return tx.QueryRow(`SELECT status FROM batches WHERE seq=?`, j.seq).Scan(&j.status)
	})
	if err != nil {
		return err
	}
	r.changes = true
	m.m.lines.WithLabelValues("failed").Add(float64(failed))
	m.log.Info("batch: validated", "batch", j.id, "lines", len(rows), "bad_lines", failed, "status", j.status)
	return nil
}

// fail ends a batch that cannot run (validating → failed) with its errors.
func (r *runner) fail(ctx context.Context, j *job, e batchError) error {
	data, _ := json.Marshal([]batchError{e})
	var n int64
	err := r.m.st.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`UPDATE batches SET status='failed', failed_at=?, errors=? WHERE seq=? AND status='validating'`,
			r.m.now().Unix(), data, j.seq)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return tx.QueryRow(`SELECT status FROM batches WHERE seq=?`, j.seq).Scan(&j.status)
	})
	if err != nil {
		return err
	}
	r.changes = true
	if n == 1 {
		r.m.log.Info("batch: failed", "batch", j.id, "code", e.Code, "reason", e.Message)
		r.m.m.ended.WithLabelValues(StatusFailed).Inc()
		r.forget(j)
		r.m.reap(ctx)
	}
	return nil
}

// finalize ends a batch whose lines in flight are done, as end (completed, cancelled or
// expired): it writes the output file (lines answered 2xx) and the error file (the
// rest; for an expired batch also the lines never run), each synced before the commit
// that names them and moves the batch to end. A crash before that commit leaves the
// batch as it was (the files are swept at the next start) and it finalizes again.
func (r *runner) finalize(ctx context.Context, j *job, end string) error {
	m := r.m
	if end == StatusCompleted && j.status == StatusInProgress {
		var n int64
		err := m.st.tx(ctx, func(tx *sql.Tx) error {
			res, err := tx.Exec(`UPDATE batches SET status='finalizing', finalizing_at=? WHERE seq=? AND status='in_progress'`, m.now().Unix(), j.seq)
			if err != nil {
				return err
			}
			n, _ = res.RowsAffected()
			return tx.QueryRow(`SELECT status FROM batches WHERE seq=?`, j.seq).Scan(&j.status)
		})
		if err != nil || n == 0 {
			return err // n == 0: cancelled meanwhile; the next step ends it so
		}
		r.changes = true
	}
	from := j.status
	if !canTransition(from, end) {
		return fmt.Errorf("batch %s: cannot go from %s to %s", j.id, from, end)
	}
	outID, outN, err := r.writeResults(ctx, j, lineOK, false)
	if err != nil {
		return err
	}
	errID, errN, err := r.writeResults(ctx, j, lineFailed, end == StatusExpired)
	if err != nil {
		r.drop(outID)
		return err
	}
	if m.crash("finalize") {
		return errCrash // the files stay behind, as after a crash
	}
	now := m.now().Unix()
	expired := int64(0)
	err = m.st.tx(ctx, func(tx *sql.Tx) error {
		var sizes [2]int64
		for i, id := range []string{outID, errID} {
			if id == "" {
				continue
			}
			st, err := os.Stat(m.st.path(id))
			if err != nil {
				return err
			}
			sizes[i] = st.Size()
			kind := [2]string{"output", "error"}[i]
			if err := insertFile(tx, &fileRow{ID: id, Owner: j.owner, Filename: j.id + "_" + kind + ".jsonl",
				Purpose: PurposeBatchOutput, Bytes: sizes[i], CreatedAt: now}); err != nil {
				return err
			}
		}
		if end == StatusExpired {
			if err := tx.QueryRow(`SELECT count(*) FROM lines WHERE batch=? AND state=0`, j.seq).Scan(&expired); err != nil {
				return err
			}
		}
		res, err := tx.Exec(`UPDATE batches SET status=?, `+end+`_at=?, output_file_id=?, error_file_id=?, failed=failed+?
			WHERE seq=? AND status=?`, end, now, outID, errID, expired, j.seq, from)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errChanged
		}
		_, err = tx.Exec(`DELETE FROM lines WHERE batch=?`, j.seq)
		return err
	})
	if err != nil {
		r.drop(outID)
		r.drop(errID)
		if errors.Is(err, errChanged) {
			return r.load(ctx)
		}
		return err
	}
	r.changes = true
	m.log.Info("batch: ended", "batch", j.id, "status", end, "output_lines", outN, "error_lines", errN)
	m.m.lines.WithLabelValues("expired").Add(float64(expired))
	m.m.ended.WithLabelValues(end).Inc()
	r.forget(j)
	m.reap(ctx)
	return nil
}

// drop removes contents written for a finalization that did not commit.
func (r *runner) drop(id string) {
	if id != "" {
		_ = os.Remove(r.m.st.path(id))
	}
}

// writeResults writes the done lines of one state, in input order, to a new file; with
// expired, the lines never run follow as batch_expired errors. It returns "" when there
// is nothing to write.
func (r *runner) writeResults(ctx context.Context, j *job, state int, expired bool) (string, int64, error) {
	m := r.m
	q := `SELECT idx, state, result, off, len FROM lines WHERE batch=? AND state=? ORDER BY idx`
	args := []any{j.seq, state}
	if expired {
		q = `SELECT idx, state, result, off, len FROM lines WHERE batch=? AND state IN (?, 0) ORDER BY idx`
	}
	var count int64
	cq := `SELECT count(*) FROM lines WHERE batch=? AND state=?`
	if expired {
		cq = `SELECT count(*) FROM lines WHERE batch=? AND state IN (?, 0)`
	}
	if err := m.st.db.QueryRowContext(ctx, cq, args...).Scan(&count); err != nil {
		return "", 0, err
	}
	if count == 0 {
		return "", 0, nil
	}
	id := newID("file-")
	_, err := m.writeFile(id, func(w io.Writer) (int64, error) {
		rows, err := m.st.db.QueryContext(ctx, q, args...)
		if err != nil {
			return 0, err
		}
		defer rows.Close()
		var in *os.File // for the custom_id of lines never run
		if expired {
			if in, err = os.Open(m.st.path(j.input)); err == nil {
				defer in.Close()
			}
		}
		bw := bufio.NewWriterSize(w, 64<<10)
		var parser fastjson.Parser
		var buf []byte
		for rows.Next() {
			var idx, off, n int64
			var st int
			var res []byte
			if err := rows.Scan(&idx, &st, &res, &off, &n); err != nil {
				return 0, err
			}
			if st == linePending {
				res = expiredLine(&parser, in, j, idx, off, n, buf[:0])
				buf = res
			}
			bw.Write(res)
			bw.WriteByte('\n')
		}
		if err := rows.Err(); err != nil {
			return 0, err
		}
		return 0, bw.Flush()
	})
	if err != nil {
		return "", 0, err
	}
	return id, count, nil
}

// expiredLine is the error file line of a line the batch's window closed on (in, the
// input file, gives its custom_id; nil when it could not be opened).
func expiredLine(p *fastjson.Parser, in *os.File, j *job, idx, off, n int64, dst []byte) []byte {
	custom := ""
	if in != nil {
		line := make([]byte, n)
		if _, err := in.ReadAt(line, off); err == nil {
			req, _ := parseRequest(p, line, j.endpoint)
			custom = req.CustomID
		}
	}
	return appendLineError(dst, requestID(j.id, idx), custom,
		&lineError{"batch_expired", "This request could not be executed before the completion window expired."})
}

// customIDOf finds a line's custom_id without parsing the whole line (one over the size
// limit); "" when it is absent or not a plain string.
func customIDOf(line []byte) string {
	s, e, ok := jsonx.Find(line, "custom_id")
	if !ok || e-s < 2 || line[s] != '"' || bytes.IndexByte(line[s+1:e-1], '\\') >= 0 {
		return ""
	}
	return string(line[s+1 : e-1])
}
