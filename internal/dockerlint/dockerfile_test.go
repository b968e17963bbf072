package dockerlint

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/sluice-llm/sluice/config"
)

// dockerfile is Dockerfile.cuda as BuildKit reads it.
type dockerfile struct {
	root   string // repository root
	result *parser.Result
	stages []instructions.Stage
	meta   map[string]string // global ARG defaults
	lint   []string          // linter warnings from instructions.Parse
}

// repoRoot finds the directory holding go.mod above the test's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

func readFile(t *testing.T, root, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func load(t *testing.T) *dockerfile {
	t.Helper()
	d := &dockerfile{root: repoRoot(t), meta: map[string]string{}}
	res, err := parser.Parse(strings.NewReader(readFile(t, d.root, "Dockerfile.cuda")))
	if err != nil {
		t.Fatalf("parse Dockerfile.cuda: %v", err)
	}
	d.result = res
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		d.lint = append(d.lint, fmt.Sprintf("line %d: %s: %s", line(loc), rule, msg))
	}})
	stages, meta, err := instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("Dockerfile.cuda instructions: %v", err)
	}
	d.stages = stages
	for _, a := range meta {
		for _, kv := range a.Args {
			if kv.Value != nil {
				d.meta[kv.Key] = unquote(*kv.Value)
			}
		}
	}
	return d
}

func line(loc []parser.Range) int {
	if len(loc) == 0 {
		return 0
	}
	return loc[0].Start.Line
}

func (d *dockerfile) stage(t *testing.T, name string) *instructions.Stage {
	t.Helper()
	for i := range d.stages {
		if d.stages[i].Name == name {
			return &d.stages[i]
		}
	}
	t.Fatalf("Dockerfile.cuda has no stage %q", name)
	return nil
}

// vars is what a stage's ARG and ENV define, with the global ARG defaults.
func (d *dockerfile) vars(st *instructions.Stage) map[string]string {
	v := map[string]string{}
	for _, c := range st.Commands {
		switch c := c.(type) {
		case *instructions.ArgCommand:
			for _, a := range c.Args {
				if a.Value != nil {
					v[a.Key] = expand(unquote(*a.Value), v)
				} else if m, ok := d.meta[a.Key]; ok {
					v[a.Key] = m
				}
			}
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				v[kv.Key] = expand(unquote(kv.Value), v)
			}
		}
	}
	return v
}

// base is a stage's image with the global ARG defaults filled in.
func (d *dockerfile) base(st *instructions.Stage) string { return expand(st.BaseName, d.meta) }

// runs returns a stage's RUN command lines.
func runs(st *instructions.Stage) []string {
	var out []string
	for _, c := range st.Commands {
		if r, ok := c.(*instructions.RunCommand); ok {
			out = append(out, strings.Join(r.CmdLine, " "))
		}
	}
	return out
}

func commands[T instructions.Command](st *instructions.Stage) []T {
	var out []T
	for _, c := range st.Commands {
		if x, ok := c.(T); ok {
			out = append(out, x)
		}
	}
	return out
}

// expand fills in $VAR, ${VAR} and ${VAR:-default}.
func expand(s string, vars map[string]string) string {
	return os.Expand(s, func(k string) string {
		name, def, hasDef := strings.Cut(k, ":-")
		if v, ok := vars[name]; ok && (v != "" || !hasDef) {
			return v
		}
		return def
	})
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

// defaults reads NAME=${NAME:-value} lines of a shell script.
func defaults(script string) map[string]string {
	m := map[string]string{}
	re := regexp.MustCompile(`(?m)^(\w+)=\$\{(\w+):-([^}]*)\}`)
	for _, g := range re.FindAllStringSubmatch(script, -1) {
		if g[1] == g[2] {
			m[g[1]] = g[3]
		}
	}
	return m
}

func TestDockerfileParsesCleanly(t *testing.T) {
	d := load(t)
	for _, w := range d.result.Warnings {
		t.Errorf("parser warning: %s", w.Short)
	}
	for _, w := range d.lint {
		t.Errorf("linter: %s", w)
	}
}

func TestDockerfileStages(t *testing.T) {
	d := load(t)
	want := []struct {
		name string
		base string // regexp over the image with ARG defaults filled in
	}{
		{"source", `^node:\d+-bookworm$`},
		{"llama", `^nvidia/cuda:\d+\.\d+\.\d+-devel-ubuntu\d+\.\d+$`},
		{"go", `^golang:\d+\.\d+-bookworm$`},
		{"runtime", `^nvidia/cuda:\d+\.\d+\.\d+-runtime-ubuntu\d+\.\d+$`},
	}
	var names []string
	for i := range d.stages {
		names = append(names, d.stages[i].Name)
	}
	if len(names) != len(want) {
		t.Fatalf("stages %q, want %d", names, len(want))
	}
	for i, w := range want {
		st := &d.stages[i]
		if st.Name != w.name {
			t.Errorf("stage %d is %q, want %q", i, st.Name, w.name)
		}
		if b := d.base(st); !regexp.MustCompile(w.base).MatchString(b) {
			t.Errorf("stage %s is FROM %s, want %s", st.Name, b, w.base)
		}
	}
	// The CUDA toolkit that compiles llama-server and the runtime that loads it match.
	ver := func(img string) string {
		v, _, _ := strings.Cut(strings.TrimPrefix(img, "nvidia/cuda:"), "-")
		return v
	}
	if a, b := ver(d.base(d.stage(t, "llama"))), ver(d.base(d.stage(t, "runtime"))); a != b {
		t.Errorf("CUDA %s builds llama-server but the runtime image has CUDA %s", a, b)
	}
	// The Go image is the go.mod toolchain's minor version.
	gomod := readFile(t, d.root, "go.mod")
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)
	if m == nil || d.meta["GO_VERSION"] != m[1] {
		t.Errorf("GO_VERSION=%s, go.mod says go %v", d.meta["GO_VERSION"], m)
	}
}

func TestDockerfileCopies(t *testing.T) {
	d := load(t)
	ignore := dockerignore(t, d.root)
	for i := range d.stages {
		st := &d.stages[i]
		for _, c := range commands[*instructions.CopyCommand](st) {
			if c.From != "" {
				j := slices.IndexFunc(d.stages, func(s instructions.Stage) bool { return s.Name == c.From })
				if j < 0 || j >= i {
					t.Errorf("stage %s line %d: COPY --from=%s does not name an earlier stage", st.Name, line(c.Location()), c.From)
				}
				continue
			}
			for _, src := range c.SourcePaths {
				if _, err := os.Stat(filepath.Join(d.root, src)); err != nil {
					t.Errorf("stage %s line %d: COPY source %s: %v", st.Name, line(c.Location()), src, err)
				}
				if p := ignore.match(src); p != "" {
					t.Errorf("stage %s line %d: COPY source %s is excluded by .dockerignore (%s)", st.Name, line(c.Location()), src, p)
				}
			}
		}
	}
	// `COPY . .` in the go stage must bring what `make build` needs.
	needed := []string{"Makefile", "go.mod", "go.sum", "config/default.yaml"}
	err := filepath.WalkDir(d.root, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(d.root, p)
		if e.IsDir() && (e.Name() == ".git" || e.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if !e.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			needed = append(needed, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range needed {
		if p := ignore.match(f); p != "" {
			t.Errorf("%s is excluded from the build context by .dockerignore (%s)", f, p)
		}
	}
}

// ignorePatterns is .dockerignore's exclusions: enough of its syntax for this repository
// (path.Match patterns, a leading **/ for any depth; "!" exceptions are rejected).
type ignorePatterns []string

func dockerignore(t *testing.T, root string) ignorePatterns {
	t.Helper()
	var ps ignorePatterns
	for _, l := range strings.Split(readFile(t, root, ".dockerignore"), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") {
			t.Fatalf(".dockerignore: exceptions (%s) are beyond this test's matcher", l)
		}
		ps = append(ps, path.Clean(strings.TrimPrefix(l, "/")))
	}
	return ps
}

// match returns the pattern that excludes p (or one of its parent directories).
func (ps ignorePatterns) match(p string) string {
	p = path.Clean(p)
	if p == "." {
		return ""
	}
	parts := strings.Split(p, "/")
	for _, pat := range ps {
		for n := 1; n <= len(parts); n++ { // p and each parent
			prefix := parts[:n]
			if rest, ok := strings.CutPrefix(pat, "**/"); ok {
				for i := range prefix {
					if ok, _ := path.Match(rest, strings.Join(prefix[i:], "/")); ok {
						return pat
					}
				}
			} else if ok, _ := path.Match(pat, strings.Join(prefix, "/")); ok {
				return pat
			}
		}
	}
	return ""
}

func TestDockerIgnoreMatcher(t *testing.T) {
	ps := ignorePatterns{".git", "bin", "**/node_modules", "**/*.gguf"}
	tests := []struct{ path, want string }{
		{"scripts/common.sh", ""},
		{".", ""},
		{".git/config", ".git"},
		{"bin/sluice", "bin"},
		{"cmd/bin.go", ""},
		{"e2e/js/node_modules/openai/index.js", "**/node_modules"},
		{"m.gguf", "**/*.gguf"},
		{"models/testdata/x.gguf", "**/*.gguf"},
	}
	for _, tc := range tests {
		if got := ps.match(tc.path); got != tc.want {
			t.Errorf("match(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

func TestDockerfilePins(t *testing.T) {
	d := load(t)
	common := defaults(readFile(t, d.root, "scripts/common.sh"))
	if common["LLAMA_NPM_VERSION"] == "" {
		t.Fatal("scripts/common.sh defines no LLAMA_NPM_VERSION default")
	}
	checked := map[string]bool{}
	check := func(where, k, v string) {
		if want, ok := common[k]; ok {
			checked[k] = true
			if v != want {
				t.Errorf("%s: ARG %s=%s, scripts/common.sh says %s", where, k, v, want)
			}
		}
	}
	for k, v := range d.meta {
		check("Dockerfile.cuda", k, v)
	}
	for i := range d.stages {
		for _, a := range commands[*instructions.ArgCommand](&d.stages[i]) {
			for _, kv := range a.Args {
				if kv.Value != nil {
					check("stage "+d.stages[i].Name, kv.Key, unquote(*kv.Value))
				}
			}
		}
	}
	if !checked["LLAMA_NPM_VERSION"] {
		t.Error("Dockerfile.cuda pins no LLAMA_NPM_VERSION")
	}
	if common["LLAMA_NPM_VERSION"] != config.LlamaServerVersion {
		t.Errorf("scripts/common.sh LLAMA_NPM_VERSION=%s, config.LlamaServerVersion=%s",
			common["LLAMA_NPM_VERSION"], config.LlamaServerVersion)
	}
	// Stages that run the scripts pass the pinned version on to them.
	for _, name := range []string{"source", "llama"} {
		if v, ok := d.vars(d.stage(t, name))["LLAMA_NPM_VERSION"]; !ok || v != common["LLAMA_NPM_VERSION"] {
			t.Errorf("stage %s: LLAMA_NPM_VERSION is %q (declared: %v), want %s", name, v, ok, common["LLAMA_NPM_VERSION"])
		}
	}
}

func TestDockerfileRuntime(t *testing.T) {
	d := load(t)
	rt := &d.stages[len(d.stages)-1]
	if rt.Name != "runtime" {
		t.Fatalf("the last stage (the image) is %q, want runtime", rt.Name)
	}
	if b := d.base(rt); !strings.Contains(b, "-runtime-") {
		t.Errorf("runtime stage is FROM %s, want a CUDA runtime image", b)
	}
	vars := d.vars(rt)
	users := commands[*instructions.UserCommand](rt)
	if len(users) == 0 {
		t.Fatal("runtime stage sets no USER: it would run as root")
	}
	user := users[len(users)-1].User
	if name, _, _ := strings.Cut(user, ":"); name == "" || name == "root" || name == "0" {
		t.Errorf("runtime stage runs as USER %q", user)
	} else if !strings.Contains(strings.Join(runs(rt), "\n"), "useradd") || !strings.Contains(strings.Join(runs(rt), "\n"), " "+name) {
		t.Errorf("runtime stage does not create user %s", name)
	}

	hc := commands[*instructions.HealthCheckCommand](rt)
	if len(hc) != 1 || len(hc[0].Health.Test) < 2 || hc[0].Health.Test[0] != "CMD" ||
		!strings.Contains(strings.Join(hc[0].Health.Test, " "), "127.0.0.1:8080/healthz") {
		t.Errorf("runtime stage needs one HEALTHCHECK CMD on http://127.0.0.1:8080/healthz, got %+v", hc)
	} else if tool := hc[0].Health.Test[1]; !regexp.MustCompile(`install[^&]*\b` + tool + `\b`).MatchString(strings.Join(runs(rt), "\n")) {
		t.Errorf("the health check runs %s, which the runtime stage does not install", tool)
	}

	var ports []string
	for _, e := range commands[*instructions.ExposeCommand](rt) {
		ports = append(ports, e.Ports...)
	}
	if !slices.Contains(ports, "8080") && !slices.Contains(ports, "8080/tcp") {
		t.Errorf("runtime stage exposes %q, want 8080", ports)
	}

	// Where each file lands, by source.
	dest := map[string]string{}
	for _, c := range commands[*instructions.CopyCommand](rt) {
		for _, src := range c.SourcePaths {
			key := src
			if c.From != "" {
				key = c.From + ":" + src
			}
			dest[key] = c.DestPath
			if strings.HasSuffix(c.DestPath, "/") {
				dest[key] = c.DestPath + path.Base(src)
			}
		}
	}
	eps := commands[*instructions.EntrypointCommand](rt)
	switch {
	case len(eps) != 1 || eps[0].PrependShell:
		t.Errorf("runtime stage needs one exec-form ENTRYPOINT, got %+v", eps)
	case dest["scripts/docker-entrypoint.sh"] == "" || eps[0].CmdLine[0] != dest["scripts/docker-entrypoint.sh"]:
		t.Errorf("ENTRYPOINT %q is not scripts/docker-entrypoint.sh (copied to %q)", eps[0].CmdLine, dest["scripts/docker-entrypoint.sh"])
	}

	// llama-server: what the llama stage installs, where SLUICE_LLAMA_SERVER says.
	var fromLlama, fromGo string
	for k, v := range dest {
		if src, ok := strings.CutPrefix(k, "llama:"); ok {
			fromLlama = src
			if vars["SLUICE_LLAMA_SERVER"] != v {
				t.Errorf("SLUICE_LLAMA_SERVER=%q, but llama-server is copied to %s", vars["SLUICE_LLAMA_SERVER"], v)
			}
		}
		if src, ok := strings.CutPrefix(k, "go:"); ok {
			fromGo = src
		}
	}
	if fromLlama == "" || !strings.Contains(strings.Join(runs(d.stage(t, "llama")), "\n"), fromLlama) {
		t.Errorf("runtime copies %q from the llama stage, which never writes it", fromLlama)
	}
	// sluice: make build's output in the go stage's WORKDIR.
	bin := regexp.MustCompile(`(?m)^BIN := (\S+)$`).FindStringSubmatch(readFile(t, d.root, "Makefile"))
	if bin == nil {
		t.Fatal("Makefile has no BIN := line")
	}
	if want := path.Join(workdir(d.stage(t, "go")), bin[1]); fromGo != want {
		t.Errorf("runtime copies %q from the go stage, make build writes %s", fromGo, want)
	}

	// The entrypoint's defaults are where the image puts things.
	ep := readFile(t, d.root, "scripts/docker-entrypoint.sh")
	if cfg := dest["scripts/runpod/sluice.yaml"]; cfg == "" || !strings.Contains(ep, "SLUICE_CONFIG:-"+cfg+"}") {
		t.Errorf("the sample config is copied to %q, which is not the entrypoint's default SLUICE_CONFIG", cfg)
	}
	if m := vars["SLUICE_MODEL"]; m == "" || !strings.Contains(ep, "SLUICE_MODEL:-"+m+"}") {
		t.Errorf("SLUICE_MODEL=%q in the image is not the entrypoint's default", m)
	}
}

// workdir is a stage's last WORKDIR.
func workdir(st *instructions.Stage) string {
	w := "/"
	for _, c := range commands[*instructions.WorkdirCommand](st) {
		w = path.Join(w, c.Path)
	}
	return w
}

// assignment finds NAME=value in a shell command line (quotes removed).
func assignment(cmd, name string) (string, bool) {
	m := regexp.MustCompile(`(?:^|\s)` + name + `=("[^"]*"|'[^']*'|\S+)`).FindStringSubmatch(cmd)
	if m == nil {
		return "", false
	}
	return unquote(m[1]), true
}
