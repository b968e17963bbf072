package dockerlint

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stub stands in for the sluice binary: it logs each call's arguments, and its
// fetch-model writes the --out file (or fails, or waits for SIGTERM, as the test asks).
const stub = `#!/usr/bin/env bash
printf '%s\n' "$*" >>"$STUB_LOG"
[ "$1" = fetch-model ] || exit 0
while [ $# -gt 0 ]; do [ "$1" = --out ] && out=$2; shift; done
case ${STUB_FETCH:-ok} in
ok) printf GGUF >"$out" ;;
fail) exit 3 ;;
hang)
	sleep 600 & spid=$!
	trap 'kill $spid; echo terminated >>"$STUB_LOG"; exit 7' TERM
	echo started >"$STUB_FIFO"
	wait $spid ;;
esac
`

func TestDockerEntrypointSyntax(t *testing.T) {
	root := repoRoot(t)
	out, err := exec.Command("bash", "-n", filepath.Join(root, "scripts/docker-entrypoint.sh")).CombinedOutput()
	if err != nil {
		t.Fatalf("bash -n scripts/docker-entrypoint.sh: %v\n%s", err, out)
	}
	if st, err := os.Stat(filepath.Join(root, "scripts/docker-entrypoint.sh")); err != nil || st.Mode().Perm()&0o111 == 0 {
		t.Errorf("scripts/docker-entrypoint.sh is not executable (%v)", err)
	}
}

// entrypoint prepares a directory with the stub sluice and returns a command running the
// entrypoint with env and args, the models directory, and the stub's log path.
func entrypoint(t *testing.T, env map[string]string, args ...string) (cmd *exec.Cmd, models, logPath string) {
	t.Helper()
	root := repoRoot(t)
	dir := t.TempDir()
	models = filepath.Join(dir, "models")
	logPath = filepath.Join(dir, "calls.log")
	bin := filepath.Join(dir, "sluice")
	if err := os.WriteFile(bin, []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sluice.yaml"), []byte("# sample\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"PATH":          os.Getenv("PATH"),
		"HOME":          dir,
		"STUB_LOG":      logPath,
		"SLUICE_BIN":    bin,
		"SLUICE_MODEL":  filepath.Join(models, "model.gguf"),
		"SLUICE_CONFIG": filepath.Join(dir, "sluice.yaml"),
	}
	for k, v := range env {
		if v == "-" {
			delete(vars, k)
			continue
		}
		vars[k] = strings.NewReplacer("{dir}", dir, "{models}", models, "{bin}", bin).Replace(v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "{bin}", bin)
	}
	cmd = exec.CommandContext(ctx, filepath.Join(root, "scripts/docker-entrypoint.sh"), args...)
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd, models, logPath
}

func TestDockerEntrypoint(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		model   bool     // put a model file in place first
		parts   bool     // leave a stale partial download beside it
		code    int      // exit code
		calls   []string // the stub's log; {models} and {dir} are replaced
		stderr  string
		fetched bool // the model file exists afterwards
	}{
		{name: "model present, config file", model: true,
			calls: []string{"serve --config {dir}/sluice.yaml"}},
		{name: "model present, URL ignored", model: true, env: map[string]string{"SLUICE_MODEL_URL": "https://example.com/m.gguf"},
			calls: []string{"serve --config {dir}/sluice.yaml"}},
		{name: "download, then config file", parts: true,
			env: map[string]string{"SLUICE_MODEL_URL": "https://example.com/m.gguf?sig=1", "SLUICE_MODEL_SHA256": "abc"},
			calls: []string{
				"fetch-model --url https://example.com/m.gguf?sig=1 --sha256 abc --out {models}/model.gguf",
				"serve --config {dir}/sluice.yaml",
			}, fetched: true},
		{name: "download without checksum", env: map[string]string{"SLUICE_MODEL_URL": "https://example.com/m.gguf"},
			calls:   []string{"fetch-model --url https://example.com/m.gguf --sha256  --out {models}/model.gguf", "serve --config {dir}/sluice.yaml"},
			fetched: true},
		{name: "download fails", env: map[string]string{"SLUICE_MODEL_URL": "https://example.com/m.gguf", "STUB_FETCH": "fail"},
			code: 3, calls: []string{"fetch-model --url https://example.com/m.gguf --sha256  --out {models}/model.gguf"},
			stderr: "model download failed (exit 3)"},
		{name: "flags mode with extra args", model: true, env: map[string]string{"SLUICE_CONFIG": "none"},
			args:  []string{"--log-level", "debug"},
			calls: []string{"serve --model {models}/model.gguf --listen 0.0.0.0:8080 --insecure-public --log-level debug"}, stderr: "without API keys"},
		{name: "flags mode when the config file is missing", model: true,
			env:   map[string]string{"SLUICE_CONFIG": "{dir}/absent.yaml", "SLUICE_LISTEN": "0.0.0.0:9000"},
			calls: []string{"serve --model {models}/model.gguf --listen 0.0.0.0:9000 --insecure-public"}},
		{name: "flags mode without a model", env: map[string]string{"SLUICE_CONFIG": "none"},
			code: 1, stderr: "no model at {models}/model.gguf"},
		{name: "config mode without a model warns", calls: []string{"serve --config {dir}/sluice.yaml"},
			stderr: "warning: {models}/model.gguf does not exist"},
		{name: "a program instead of serve", args: []string{"{bin}", "gpus"}, calls: []string{"gpus"}},
		{name: "a sluice command", args: []string{"status", "--url", "http://x"}, calls: []string{"status --url http://x"}},
		{name: "default model path", model: false, env: map[string]string{"SLUICE_MODEL": "-", "SLUICE_CONFIG": "none"},
			code: 1, stderr: "no model at /models/model.gguf"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd, models, logPath := entrypoint(t, tc.env, tc.args...)
			dir := filepath.Dir(models)
			model := filepath.Join(models, "model.gguf")
			part := filepath.Join(models, ".model.gguf.123.part")
			if tc.model || tc.parts {
				if err := os.MkdirAll(models, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if tc.model {
				if err := os.WriteFile(model, []byte("GGUF"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.parts {
				if err := os.WriteFile(part, []byte("GG"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.code, stderr.String())
			}
			r := strings.NewReplacer("{dir}", dir, "{models}", models)
			logged, _ := os.ReadFile(logPath)
			var want []string
			for _, c := range tc.calls {
				want = append(want, r.Replace(c))
			}
			if got := strings.TrimSuffix(string(logged), "\n"); got != strings.Join(want, "\n") {
				t.Errorf("sluice calls:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
			}
			if !strings.Contains(stderr.String(), r.Replace(tc.stderr)) {
				t.Errorf("stderr lacks %q:\n%s", r.Replace(tc.stderr), stderr.String())
			}
			if _, err := os.Stat(model); tc.fetched && err != nil {
				t.Errorf("model not downloaded: %v", err)
			}
			if _, err := os.Stat(part); tc.parts && err == nil {
				t.Error("the stale partial download is still there")
			}
		})
	}
}

// TestDockerEntrypointStopDuringDownload: docker stop (SIGTERM to the entrypoint) reaches
// fetch-model, whose exit status the entrypoint returns without starting sluice.
func TestDockerEntrypointStopDuringDownload(t *testing.T) {
	cmd, models, logPath := entrypoint(t, map[string]string{"SLUICE_MODEL_URL": "https://example.com/m.gguf", "STUB_FETCH": "hang"})
	fifo := filepath.Join(filepath.Dir(models), "started")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(cmd.Env, "STUB_FIFO="+fifo)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a group to clean up if the test fails
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	f, err := os.Open(fifo) // blocks until the stub's fetch-model is running
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(f)
	f.Close()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Errorf("entrypoint ended with %v, want fetch-model's exit status 7", err)
	}
	logged, _ := os.ReadFile(logPath)
	if got := string(logged); !strings.HasSuffix(got, "terminated\n") || strings.Contains(got, "serve") {
		t.Errorf("sluice calls:\n%s\nwant fetch-model terminated and no serve", got)
	}
}
