package dockerlint

import (
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// TestDockerfileBuildSteps checks that the image is built by the repository's own
// scripts, the ones the CPU build and the tests run, and not by a copy of their steps.
func TestDockerfileBuildSteps(t *testing.T) {
	d := load(t)
	tests := []struct {
		stage string
		run   []string // one RUN must contain all of these
	}{
		{"source", []string{"scripts/fetch-llama-src.sh"}},
		{"llama", []string{"scripts/build-llama-server.sh", "/usr/local/cuda/lib64/stubs"}},
		{"go", []string{"make build", "CGO_ENABLED=1"}},
	}
	for _, tc := range tests {
		st := d.stage(t, tc.stage)
		found := slices.ContainsFunc(runs(st), func(r string) bool {
			for _, s := range tc.run {
				if !strings.Contains(r, s) {
					return false
				}
			}
			return true
		})
		if !found {
			t.Errorf("stage %s has no RUN with %q; its RUNs: %q", tc.stage, tc.run, runs(st))
		}
	}
	for i := range d.stages {
		checkScriptsCopied(t, d, &d.stages[i])
		for _, r := range commands[*instructions.RunCommand](&d.stages[i]) {
			// Nothing may need a GPU at build time.
			if slices.Contains(r.FlagsUsed, "device") || strings.Contains(strings.Join(r.CmdLine, " "), "nvidia-smi") {
				t.Errorf("stage %s line %d needs a GPU to build", d.stages[i].Name, line(r.Location()))
			}
		}
	}
}

// checkScriptsCopied: every scripts/*.sh a RUN calls, and every script that one calls
// through "$here/...", was copied into the stage where the RUN looks for it.
func checkScriptsCopied(t *testing.T, d *dockerfile, st *instructions.Stage) {
	t.Helper()
	wd := "/"
	copied := map[string]string{} // absolute path in the stage -> repository path
	for _, c := range st.Commands {
		switch c := c.(type) {
		case *instructions.WorkdirCommand:
			wd = path.Join(wd, c.Path)
			if path.IsAbs(c.Path) {
				wd = path.Clean(c.Path)
			}
		case *instructions.CopyCommand:
			if c.From != "" {
				continue
			}
			dst := c.DestPath
			if !path.IsAbs(dst) {
				dst = path.Join(wd, dst)
			}
			for _, src := range c.SourcePaths {
				p := dst
				if strings.HasSuffix(c.DestPath, "/") || len(c.SourcePaths) > 1 {
					p = path.Join(dst, path.Base(src))
				}
				copied[p] = src
			}
		case *instructions.RunCommand:
			cmd := strings.Join(c.CmdLine, " ")
			for _, s := range regexp.MustCompile(`\bscripts/[\w./-]+\.sh\b`).FindAllString(cmd, -1) {
				for _, need := range scriptClosure(t, d.root, s) {
					if at := path.Join(wd, need); copied[at] != need {
						t.Errorf("stage %s line %d runs %s, which needs %s at %s: not copied there",
							st.Name, line(c.Location()), s, need, at)
					}
				}
			}
		}
	}
}

// scriptClosure is a script and the scripts it runs or sources through "$here/NAME.sh"
// (repository paths).
func scriptClosure(t *testing.T, root, script string) []string {
	t.Helper()
	seen := []string{}
	var walk func(s string)
	walk = func(s string) {
		if slices.Contains(seen, s) {
			return
		}
		seen = append(seen, s)
		for _, m := range regexp.MustCompile(`\$here/([\w.-]+\.sh)`).FindAllStringSubmatch(readFile(t, root, s), -1) {
			walk(path.Join(path.Dir(s), m[1]))
		}
	}
	walk(script)
	return seen
}

func TestDockerfileCUDAArchs(t *testing.T) {
	d := load(t)
	st := d.stage(t, "llama")
	vars := d.vars(st)
	var run string
	for _, r := range runs(st) {
		if strings.Contains(r, "scripts/build-llama-server.sh") {
			run = r
		}
	}
	archs, ok := assignment(run, "LLAMA_CUDA_ARCHS")
	if ok {
		archs = expand(archs, vars)
	} else {
		archs = vars["LLAMA_CUDA_ARCHS"]
	}
	got := strings.Split(archs, ";")
	for _, want := range []struct{ arch, gpus string }{
		{"80", "A100"}, {"86", "A10G, A10"}, {"89", "L4, L40S"}, {"90", "H100, H200"},
	} {
		if !slices.Contains(got, want.arch) {
			t.Errorf("LLAMA_CUDA_ARCHS=%q lacks %s (%s)", archs, want.arch, want.gpus)
		}
	}
	// The script reads the settings the Dockerfile passes, and turns CUDA on with them.
	script := readFile(t, d.root, "scripts/build-llama-server.sh")
	for _, s := range []string{"${LLAMA_CUDA_ARCHS", "${JOBS", "-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=$LLAMA_CUDA_ARCHS"} {
		if !strings.Contains(script, s) {
			t.Errorf("scripts/build-llama-server.sh no longer has %q, which Dockerfile.cuda relies on", s)
		}
	}
}

// TestDockerfileSourceHandOff: the llama stage finds the source the source stage
// fetched in the same $SLUICE_CACHE place, so its scripts need neither npm nor network.
func TestDockerfileSourceHandOff(t *testing.T) {
	d := load(t)
	src, llama := d.stage(t, "source"), d.stage(t, "llama")
	cache := d.vars(src)["SLUICE_CACHE"]
	if cache == "" || d.vars(llama)["SLUICE_CACHE"] != cache {
		t.Fatalf("SLUICE_CACHE is %q in the source stage and %q in the llama stage; want one absolute path",
			cache, d.vars(llama)["SLUICE_CACHE"])
	}
	handed := false
	for _, c := range commands[*instructions.CopyCommand](llama) {
		if c.From == "source" && slices.Contains(c.SourcePaths, cache+"/src") && path.Clean(c.DestPath) == cache+"/src" {
			handed = true
		}
	}
	if !handed {
		t.Errorf("the llama stage does not COPY --from=source %s/src to the same path", cache)
	}
	if !strings.Contains(readFile(t, d.root, "scripts/fetch-llama-src.sh"), `src="$SLUICE_CACHE/src/`) {
		t.Error("scripts/fetch-llama-src.sh no longer keeps the source under $SLUICE_CACHE/src")
	}
}
