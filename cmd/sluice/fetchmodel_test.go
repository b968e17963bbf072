package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFetchModelCommand runs `sluice fetch-model` as the container entrypoint does.
func TestFetchModelCommand(t *testing.T) {
	body := bytes.Repeat([]byte("GGUF sluice "), 100_000)
	s := sha256.Sum256(body)
	sum := hex.EncodeToString(s[:])
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/org/repo/resolve/main/small.gguf" {
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	}))
	defer srv.Close()
	url := srv.URL + "/org/repo/resolve/main/small.gguf"

	tests := []struct {
		name     string
		args     func(dir string) []string
		existing string // content written to dir/m.gguf first
		code     int
		stdout   string // substring; "{dir}" is replaced
		stderr   string // substring
		file     string // path under dir that must hold body afterwards
	}{
		{name: "download with checksum", args: func(d string) []string {
			return []string{"--url", url, "--sha256", sum, "--out", filepath.Join(d, "m.gguf")}
		}, stdout: sum + "  {dir}/m.gguf\n", stderr: "download: done", file: "m.gguf"},
		{name: "default destination in the cache", args: func(string) []string {
			return []string{"--url", url, "--quiet"}
		}, stdout: sum + "  {dir}/models/small.gguf\n", file: "models/small.gguf"},
		{name: "checksum mismatch", args: func(d string) []string {
			return []string{"--url", url, "--sha256", strings.Repeat("f", 64), "--out", filepath.Join(d, "m.gguf")}
		}, code: 1, stderr: "expected sha256 " + strings.Repeat("f", 64) + ", got " + sum},
		{name: "404", args: func(d string) []string {
			return []string{"--url", srv.URL + "/nope.gguf", "--out", filepath.Join(d, "m.gguf")}
		}, code: 1, stderr: "sluice: fetch: GET " + srv.URL + "/nope.gguf answered 404 Not Found"},
		{name: "existing verified", existing: string(body), args: func(d string) []string {
			return []string{"--url", url, "--sha256", sum, "--out", filepath.Join(d, "m.gguf")}
		}, stdout: sum + "  {dir}/m.gguf\n", stderr: "already there", file: "m.gguf"},
		{name: "existing unverified", existing: "old", args: func(d string) []string {
			return []string{"--url", url, "--out", filepath.Join(d, "m.gguf")}
		}, code: 1, stderr: "pass --sha256 to verify it or --force to download it again"},
		{name: "existing forced", existing: "old", args: func(d string) []string {
			return []string{"--url", url, "--force", "--out", filepath.Join(d, "m.gguf")}
		}, stdout: sum, file: "m.gguf"},
		{name: "missing url", args: func(string) []string { return nil }, code: 1, stderr: "--url is required"},
		{name: "stray argument", args: func(string) []string { return []string{"--url", url, "extra"} },
			code: 1, stderr: "unexpected arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Setenv("SLUICE_CACHE", dir)
			if tc.existing != "" {
				if err := os.WriteFile(filepath.Join(dir, "m.gguf"), []byte(tc.existing), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"fetch-model"}, tc.args(dir)...), &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tc.code, stderr.String())
			}
			if want := strings.ReplaceAll(tc.stdout, "{dir}", dir); !strings.Contains(stdout.String(), want) {
				t.Errorf("stdout %q lacks %q", stdout.String(), want)
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, stderr.String())
			}
			if tc.file != "" {
				got, err := os.ReadFile(filepath.Join(dir, tc.file))
				if err != nil || !bytes.Equal(got, body) {
					t.Errorf("%s: %d bytes, %v; want the served %d bytes", tc.file, len(got), err, len(body))
				}
			}
		})
	}
}
