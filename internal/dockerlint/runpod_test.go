package dockerlint

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-llm/sluice/config"
)

// TestDockerRunpodConfig parses the sample config the image ships as
// /etc/sluice/sluice.yaml with the config package, as `sluice serve --config` does.
func TestDockerRunpodConfig(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "scripts/runpod/sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(t.TempDir(), "model.gguf")
	if err := os.WriteFile(model, []byte("GGUF"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, c *config.Config)
	}{
		{name: "pod environment", env: map[string]string{"SLUICE_API_KEY": "sk-pod", "SLUICE_MODEL": model},
			check: func(t *testing.T, c *config.Config) {
				if c.Server.Listen != "0.0.0.0:8080" || len(c.Server.APIKeys) != 1 || c.Server.APIKeys[0].Key != "sk-pod" {
					t.Errorf("server = %+v", c.Server)
				}
				if len(c.Engines) != 1 {
					t.Fatalf("engines = %+v", c.Engines)
				}
				e := c.Engines[0]
				if e.Kind != "llamacpp" || e.ModelPath != model || e.GPULayers != -1 || e.Slots < 1 || e.Context < 2048 {
					t.Errorf("engine = %+v", e)
				}
				if len(e.Models) != 1 || e.Models[0].Name != "local" || !slices.Equal(e.Models[0].Aliases, []string{"gpt-4o-mini"}) {
					t.Errorf("models = %+v", e.Models)
				}
			}},
		{name: "names from the environment",
			env: map[string]string{"SLUICE_API_KEY": "k", "SLUICE_MODEL": model, "SLUICE_MODEL_NAME": "llama-3.1-8b",
				"SLUICE_MODEL_ALIAS": "gpt-4o", "SLUICE_LISTEN": "0.0.0.0:9000", "SLUICE_LLAMA_SERVER": "/usr/local/bin/llama-server"},
			check: func(t *testing.T, c *config.Config) {
				m := c.Engines[0].Models[0]
				if m.Name != "llama-3.1-8b" || m.Aliases[0] != "gpt-4o" || c.Server.Listen != "0.0.0.0:9000" {
					t.Errorf("model %+v, listen %s", m, c.Server.Listen)
				}
				if c.Engines[0].Binary != "/usr/local/bin/llama-server" {
					t.Errorf("binary = %s, want SLUICE_LLAMA_SERVER", c.Engines[0].Binary)
				}
			}},
		{name: "no API key is refused", env: map[string]string{"SLUICE_MODEL": model},
			wantErr: "SLUICE_API_KEY is not set"},
		{name: "empty API key is refused", env: map[string]string{"SLUICE_API_KEY": "", "SLUICE_MODEL": model},
			wantErr: "server.api_keys[0]: is empty"},
		{name: "missing model", env: map[string]string{"SLUICE_API_KEY": "k", "SLUICE_MODEL": model + ".absent"},
			wantErr: "engines[0].model_path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := func(k string) (string, bool) {
				if k == "SLUICE_CACHE" || k == "HOME" {
					return t.TempDir(), true
				}
				v, ok := tc.env[k]
				return v, ok
			}
			c, err := config.Parse(b, "scripts/runpod/sluice.yaml", env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}
