package e2e

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// TestNodeSDKBatch runs e2e/js/batch.test.mjs: the official OpenAI npm SDK's files and
// batches API against the gateway with the Batch API on, two keys, real llama-server.
func TestNodeSDKBatch(t *testing.T) {
	if _, err := os.Stat(filepath.Join("js", "node_modules", "openai")); err != nil {
		t.Fatalf("npm packages missing (%v): run `make npm` (scripts/npm-deps.sh)", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found: %v", err)
	}
	keys := [][32]byte{sha256.Sum256([]byte("sk-batch-one")), sha256.Sum256([]byte("sk-batch-two"))}
	st := startStack(t, stackOptions{batches: true, apiKeys: keys})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "batch.test.mjs")
	cmd.Dir = "js"
	cmd.Env = append(os.Environ(), "SLUICE_BASE_URL="+st.URL+"/v1", "SLUICE_API_KEY=sk-batch-one", "SLUICE_OTHER_KEY=sk-batch-two")
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("npm SDK batch tests failed: %v", err)
	}
}

// TestBatchUploadLimit: an upload may be larger than server.max_body_bytes, up to the
// Batch API's file limit; a larger upload gets 413, and inference requests keep the
// smaller limit. Driven by the Go SDK.
func TestBatchUploadLimit(t *testing.T) {
	st := startStack(t, stackOptions{batches: true, maxBody: 1 << 20, batchMaxFile: 3 << 20})
	client := oai.NewClient(option.WithBaseURL(st.URL+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	ctx := context.Background()
	line := `{"custom_id":"c%d","method":"POST","url":"/v1/chat/completions","body":{"model":"tiny","max_tokens":1,"messages":[{"role":"user","content":"` + strings.Repeat("x", 1000) + `"}]}}` + "\n"
	var b strings.Builder
	for i := 0; b.Len() < 2<<20; i++ {
		fmt.Fprintf(&b, line, i)
	}
	f, err := client.Files.New(ctx, oai.FileNewParams{File: oai.File(strings.NewReader(b.String()), "big.jsonl", "application/jsonl"),
		Purpose: oai.FilePurposeBatch})
	if err != nil {
		t.Fatalf("a 2 MiB upload over a 1 MiB body limit: %v", err)
	}
	if f.Bytes != int64(b.Len()) || f.Purpose != "batch" {
		t.Fatalf("file %+v", f)
	}
	for b.Len() < 4<<20 {
		fmt.Fprintf(&b, line, 0)
	}
	_, err = client.Files.New(ctx, oai.FileNewParams{File: oai.File(strings.NewReader(b.String()), "bigger.jsonl", "application/jsonl"),
		Purpose: oai.FilePurposeBatch})
	var apiErr *oai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 413 {
		t.Fatalf("a 4 MiB upload over a 3 MiB file limit: %v", err)
	}
	_, err = client.Chat.Completions.New(ctx, oai.ChatCompletionNewParams{Model: "tiny",
		Messages: []oai.ChatCompletionMessageParamUnion{oai.UserMessage(strings.Repeat("y", 2<<20))}})
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 413 {
		t.Fatalf("a 2 MiB chat request over a 1 MiB body limit: %v", err)
	}
}
