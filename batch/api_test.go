package batch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-llm/sluice/batch"
	"github.com/sluice-llm/sluice/models"
)

// never is an executor for batches that must not run a line.
type never struct{ t *testing.T }

func (n never) Execute(context.Context, []byte, string, []byte, string) (int, string, []byte) {
	n.t.Error("a line ran")
	return 500, "", nil
}

func param(err error) string {
	var me *models.Error
	if errors.As(err, &me) {
		return me.Param
	}
	return ""
}

// TestOwnersAndPages: a key sees only its own files and batches; lists page with
// after, limit and has_more, newest first.
func TestOwnersAndPages(t *testing.T) {
	h := openManager(t, t.TempDir(), nil, batch.Options{})
	ctx := context.Background()
	var files []string
	for range 3 {
		files = append(files, h.upload("key-a", jsonl(chatLine(0))))
	}
	if _, err := h.m.File(ctx, "key-b", files[0]); !errors.Is(err, models.ErrNotFound) {
		t.Fatalf("another key's file: %v", err)
	}
	if _, _, err := h.m.FileContent(ctx, "key-b", files[0]); !errors.Is(err, models.ErrNotFound) {
		t.Fatalf("another key's content: %v", err)
	}
	if _, err := h.m.DeleteFile(ctx, "key-b", files[0]); !errors.Is(err, models.ErrNotFound) {
		t.Fatalf("delete another key's file: %v", err)
	}
	if _, err := h.m.CreateBatch(ctx, "key-b", nil, []byte(`{"input_file_id":"`+files[0]+`","endpoint":"/v1/chat/completions","completion_window":"24h"}`)); param(err) != "input_file_id" {
		t.Fatalf("a batch on another key's file: %v", err)
	}
	type list struct {
		Data    []struct{ ID string }
		HasMore bool    `json:"has_more"`
		FirstID *string `json:"first_id"`
		LastID  *string `json:"last_id"`
	}
	get := func(out []byte, err error) list {
		t.Helper()
		var l list
		if err != nil || json.Unmarshal(out, &l) != nil {
			t.Fatalf("%s %v", out, err)
		}
		return l
	}
	if l := get(h.m.Files(ctx, "key-b", "", "", 0, false)); len(l.Data) != 0 || l.HasMore || l.FirstID != nil {
		t.Fatalf("key-b sees %+v", l)
	}
	l := get(h.m.Files(ctx, "key-a", "batch", "", 2, false))
	if len(l.Data) != 2 || !l.HasMore || l.Data[0].ID != files[2] || l.Data[1].ID != files[1] || *l.LastID != files[1] {
		t.Fatalf("page 1: %+v", l)
	}
	l = get(h.m.Files(ctx, "key-a", "", *l.LastID, 2, false))
	if len(l.Data) != 1 || l.HasMore || l.Data[0].ID != files[0] {
		t.Fatalf("page 2: %+v", l)
	}
	if l = get(h.m.Files(ctx, "key-a", "", "", 0, true)); len(l.Data) != 3 || l.Data[0].ID != files[0] {
		t.Fatalf("ascending: %+v", l)
	}
	if l = get(h.m.Files(ctx, "key-a", "batch_output", "", 0, false)); len(l.Data) != 0 {
		t.Fatalf("purpose filter: %+v", l)
	}
	var ids []string
	for _, f := range files {
		ids = append(ids, h.create("key-a", f, "").ID)
	}
	if _, err := h.m.Batch(ctx, "key-b", ids[0]); !errors.Is(err, models.ErrNotFound) {
		t.Fatalf("another key's batch: %v", err)
	}
	if _, err := h.m.CancelBatch(ctx, "key-b", ids[0]); !errors.Is(err, models.ErrNotFound) {
		t.Fatalf("cancel another key's batch: %v", err)
	}
	l = get(h.m.Batches(ctx, "key-a", "", 2))
	if len(l.Data) != 2 || !l.HasMore || l.Data[0].ID != ids[2] {
		t.Fatalf("batches page 1: %+v", l)
	}
	if l = get(h.m.Batches(ctx, "key-a", l.Data[1].ID, 2)); len(l.Data) != 1 || l.HasMore || l.Data[0].ID != ids[0] {
		t.Fatalf("batches page 2: %+v", l)
	}
	if l = get(h.m.Batches(ctx, "key-b", "", 0)); len(l.Data) != 0 {
		t.Fatalf("key-b's batches: %+v", l)
	}
	if _, err := h.m.Batches(ctx, "key-a", "../x", 0); param(err) != "after" {
		t.Fatalf("bad after: %v", err)
	}
	// A deleted file disappears at once; the contents of a batch's input stay until the
	// batch ends.
	if out, err := h.m.DeleteFile(ctx, "key-a", files[0]); err != nil || !bytes.Contains(out, []byte(`"deleted":true`)) {
		t.Fatalf("delete: %s %v", out, err)
	}
	if _, err := h.m.File(ctx, "key-a", files[0]); !errors.Is(err, models.ErrNotFound) {
		t.Fatalf("deleted file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(h.dir, "files", files[0])); err != nil {
		t.Fatalf("the input of a validating batch was removed: %v", err)
	}
	free := h.upload("key-a", jsonl(chatLine(0)))
	if _, err := h.m.DeleteFile(ctx, "key-a", free); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(h.dir, "files", free)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a deleted file nobody reads is still on disk: %v", err)
	}
}

// TestRequestChecks: uploads and batch creation refuse what they cannot serve, naming
// the field.
func TestRequestChecks(t *testing.T) {
	h := openManager(t, t.TempDir(), nil, batch.Options{MaxFileBytes: 64})
	ctx := context.Background()
	if _, err := h.m.CreateFile(ctx, "", "x.jsonl", "batch", strings.NewReader(strings.Repeat("x", 65))); !errors.Is(err, models.ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	if _, err := h.m.CreateFile(ctx, "", "x.jsonl", "fine-tune", strings.NewReader("{}")); param(err) != "purpose" {
		t.Fatalf("purpose: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(h.dir, "files")); len(ents) != 0 {
		t.Fatalf("refused uploads left %d files", len(ents))
	}
	f := h.upload("", strings.NewReader("{}\n"))
	for _, tt := range []struct{ body, param string }{
		{`{"endpoint":"/v1/chat/completions","completion_window":"24h"}`, "input_file_id"},
		{`{"input_file_id":"` + f + `","endpoint":"/v1/responses","completion_window":"24h"}`, "endpoint"},
		{`{"input_file_id":"` + f + `","endpoint":"/v1/chat/completions","completion_window":"1h"}`, "completion_window"},
		{`{"input_file_id":"` + f + `","endpoint":"/v1/chat/completions","completion_window":"24h","metadata":{"a":1}}`, "metadata.a"},
		{`{"input_file_id":"` + f + `","endpoint":"/v1/chat/completions","completion_window":"24h","metadata":{"` + strings.Repeat("k", 65) + `":"v"}}`, "metadata"},
		{`{"input_file_id":"file-nope","endpoint":"/v1/chat/completions","completion_window":"24h"}`, "input_file_id"},
		{`[]`, ""},
	} {
		_, err := h.m.CreateBatch(ctx, "", nil, []byte(tt.body))
		if !errors.Is(err, models.ErrInvalid) || param(err) != tt.param {
			t.Errorf("%s: %v (param %q), want param %q", tt.body, err, param(err), tt.param)
		}
	}
}

// TestBatchFailures: a batch fails as a whole only when its file has no requests or
// too many; a file of bad lines completes with an error file.
func TestBatchFailures(t *testing.T) {
	h := openManager(t, t.TempDir(), nil, batch.Options{MaxLines: 2})
	empty := h.create("", h.upload("", strings.NewReader("\n \n")), "")
	many := h.create("", h.upload("", jsonl(chatLine(0), chatLine(1), chatLine(2))), "")
	bad := h.create("", h.upload("", jsonl(`nope`, `{"custom_id":"x","method":"POST","url":"/v1/completions","body":{}}`)), "")
	h.run(never{t})
	b := h.awaitStatus("", empty.ID, batch.StatusFailed)
	if b.Errors == nil || len(b.Errors.Data) != 1 || b.Errors.Data[0].Code != "empty_file" || b.FailedAt == nil {
		t.Fatalf("empty: %+v", b)
	}
	b = h.awaitStatus("", many.ID, batch.StatusFailed)
	if b.Errors == nil || b.Errors.Data[0].Code != "too_many_requests" {
		t.Fatalf("too many: %+v", b)
	}
	b = h.awaitStatus("", bad.ID, batch.StatusCompleted)
	if b.OutputFileID != "" || b.RequestCounts.Failed != 2 || len(h.lines("", b.ErrorFileID)) != 2 {
		t.Fatalf("bad lines: %+v", b)
	}
}

// TestStoreLockAndSweep: one process per directory; contents without a record (a crash
// mid-upload) are removed at open.
func TestStoreLockAndSweep(t *testing.T) {
	dir := t.TempDir()
	h := openManager(t, dir, nil, batch.Options{})
	if _, err := batch.Open(context.Background(), batch.Options{Dir: dir}); !errors.Is(err, batch.ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
	kept := h.upload("", jsonl(chatLine(0)))
	h.stop()
	for _, n := range []string{"file-aaaaaaaaaaaaaaaaaaaaaaaa", "file-bbbbbbbbbbbbbbbbbbbbbbbb.tmp"} {
		if err := os.WriteFile(filepath.Join(dir, "files", n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h = openManager(t, dir, nil, batch.Options{})
	ents, _ := os.ReadDir(filepath.Join(dir, "files"))
	if len(ents) != 1 || ents[0].Name() != kept {
		t.Fatalf("after the sweep: %v", ents)
	}
	if _, err := h.m.File(context.Background(), "", kept); err != nil {
		t.Fatal(err)
	}
}
