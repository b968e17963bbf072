package batch

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver ("sqlite")
)

// schema: files, batches and one row per input line. Timestamps are unix seconds, 0
// when unset. seq orders lists (newest first) and pages them (after=<id>).
const schema = `
CREATE TABLE IF NOT EXISTS files(
	seq INTEGER PRIMARY KEY AUTOINCREMENT,
	id TEXT NOT NULL UNIQUE,
	owner TEXT NOT NULL,
	filename TEXT NOT NULL,
	purpose TEXT NOT NULL,
	bytes INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS files_owner ON files(owner, seq);
CREATE TABLE IF NOT EXISTS batches(
	seq INTEGER PRIMARY KEY AUTOINCREMENT,
	id TEXT NOT NULL UNIQUE,
	owner TEXT NOT NULL,
	cred BLOB,
	endpoint TEXT NOT NULL,
	input_file_id TEXT NOT NULL,
	completion_window TEXT NOT NULL,
	metadata TEXT,
	status TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	in_progress_at INTEGER NOT NULL DEFAULT 0,
	expires_at INTEGER NOT NULL DEFAULT 0,
	finalizing_at INTEGER NOT NULL DEFAULT 0,
	completed_at INTEGER NOT NULL DEFAULT 0,
	failed_at INTEGER NOT NULL DEFAULT 0,
	expired_at INTEGER NOT NULL DEFAULT 0,
	cancelling_at INTEGER NOT NULL DEFAULT 0,
	cancelled_at INTEGER NOT NULL DEFAULT 0,
	output_file_id TEXT NOT NULL DEFAULT '',
	error_file_id TEXT NOT NULL DEFAULT '',
	errors TEXT,
	total INTEGER NOT NULL DEFAULT 0,
	completed INTEGER NOT NULL DEFAULT 0,
	failed INTEGER NOT NULL DEFAULT 0,
	prompt_tokens INTEGER NOT NULL DEFAULT 0,
	completion_tokens INTEGER NOT NULL DEFAULT 0,
	cached_tokens INTEGER NOT NULL DEFAULT 0,
	cost_usd REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS batches_owner ON batches(owner, seq);
CREATE INDEX IF NOT EXISTS batches_status ON batches(status);
CREATE TABLE IF NOT EXISTS lines(
	batch INTEGER NOT NULL,          -- batches.seq
	idx INTEGER NOT NULL,            -- 0-based line number among the input's lines
	state INTEGER NOT NULL,          -- 0 pending, 1 done (output file), 2 done (error file)
	off INTEGER NOT NULL,            -- the line's bytes in the input file
	len INTEGER NOT NULL,
	result BLOB,                     -- the output or error file line, once done
	PRIMARY KEY(batch, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS lines_state ON lines(batch, state, idx);
`

// Line states.
const (
	linePending = 0
	lineOK      = 1
	lineFailed  = 2
)

// store is the SQLite database and the files directory.
type store struct {
	db    *sql.DB
	files string   // directory of file contents, one file per id
	lock  *os.File // held while open (lockDir)
}

// ErrLocked: another process has the batch directory open.
var ErrLocked = errors.New("batch: the directory is in use by another sluice process")

// openStore opens (creating) dir/batch.db and dir/files. A commit survives a crash of
// the process (WAL, synchronous=NORMAL); a crash of the machine may lose the last
// commits, which undoes them whole: lines go back to pending and run again, output files
// are written and synced before the commit that names them.
func openStore(dir string) (*store, error) {
	files := filepath.Join(dir, "files")
	if err := os.MkdirAll(files, 0o700); err != nil {
		return nil, fmt.Errorf("batch: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("batch: lock %s: %w", dir, err)
	}
	path := filepath.Join(dir, "batch.db")
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(30000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(OFF)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("batch: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	s := &store{db: db, files: files, lock: lock}
	if err := s.tx(context.Background(), func(tx *sql.Tx) error {
		_, err := tx.Exec(schema)
		return err
	}); err != nil {
		s.close()
		return nil, fmt.Errorf("batch: open %s: %w", path, err)
	}
	_ = os.Chmod(path, 0o600)
	return s, nil
}

func (s *store) close() error {
	err := s.db.Close()
	s.lock.Close()
	return err
}

// tx runs f in a write transaction (BEGIN IMMEDIATE).
func (s *store) tx(ctx context.Context, f func(*sql.Tx) error) error {
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

// path is where a file's contents live.
func (s *store) path(id string) string { return filepath.Join(s.files, id) }

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID returns prefix and 24 random characters.
func newID(prefix string) string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return prefix + idEncoding.EncodeToString(b[:])
}

// validID reports whether id looks like one of ours (it names a file on disk, so it
// must never hold a path separator or dots).
func validID(id, prefix string) bool {
	rest, ok := strings.CutPrefix(id, prefix)
	if !ok || len(rest) != 24 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}
