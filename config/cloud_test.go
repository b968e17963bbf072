package config

import (
	"strings"
	"testing"
)

// cloudYAML is the example of docs/routing.md ("Cloud providers").
const cloudYAML = `
engines:
  - name: local
    kind: ollama
    url: http://127.0.0.1:11434
  - name: openai-us
    kind: openai
    provider: openai
    region: us
    api_key: ${OPENAI_API_KEY}
    max_concurrency: 32
    models:
      - name: gpt-4o-mini
  - name: azure-eu
    kind: openai
    provider: azure
    region: eu
    url: https://my-resource-swedencentral.openai.azure.com
    api_key: ${AZURE_OPENAI_API_KEY}
    api_version: "2024-10-21"
    models:
      - name: gpt-4o-eu
        upstream: gpt-4o          # the deployment's name
  - name: mistral-eu
    kind: openai
    provider: mistral
    region: eu
    api_key: ${MISTRAL_API_KEY}
    models:
      - name: mistral-small
        upstream: mistral-small-latest
  - name: claude-us
    kind: anthropic
    region: us
    api_key: ${ANTHROPIC_API_KEY}
    max_tokens: 8192
    models:
      - name: claude-sonnet
        upstream: claude-sonnet-4-5
  - name: gemini-us
    kind: gemini
    region: us
    api_key: ${GEMINI_API_KEY}
    models:
      - name: gemini-flash
        upstream: gemini-2.5-flash
`

func cloudEnv() Env {
	return mapEnv(map[string]string{"HOME": "/nonexistent", "OPENAI_API_KEY": "sk-o", "AZURE_OPENAI_API_KEY": "az",
		"MISTRAL_API_KEY": "mi", "ANTHROPIC_API_KEY": "sk-ant", "GEMINI_API_KEY": "AIza"})
}

func TestCloudEngines(t *testing.T) {
	c, err := Parse([]byte(cloudYAML), "cloud.yaml", cloudEnv())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		cloud                          bool
		provider, region, url, version string
		concurrency, maxTokens         int
	}{
		"local":      {false, "", "local", "http://127.0.0.1:11434", "", 0, 0},
		"openai-us":  {true, "openai", "us", "https://api.openai.com/v1", "", 32, 0},
		"azure-eu":   {true, "azure", "eu", "https://my-resource-swedencentral.openai.azure.com", "2024-10-21", 16, 0},
		"mistral-eu": {true, "mistral", "eu", "https://api.mistral.ai/v1", "", 16, 0},
		"claude-us":  {true, "", "us", "https://api.anthropic.com", "2023-06-01", 16, 8192},
		"gemini-us":  {true, "", "us", "https://generativelanguage.googleapis.com", "v1beta", 16, 0},
	}
	for _, e := range c.Engines {
		w := want[e.Name]
		if e.Cloud() != w.cloud || e.Provider != w.provider || e.Region != w.region || e.URL != w.url ||
			e.APIVersion != w.version || e.MaxConcurrency != w.concurrency || e.MaxTokens != w.maxTokens {
			t.Errorf("%s = %+v", e.Name, e)
		}
	}
	if c.Engines[3].APIKey != "mi" {
		t.Errorf("api key not expanded: %q", c.Engines[3].APIKey)
	}
}

func TestCloudEngineErrors(t *testing.T) {
	env := cloudEnv()
	tests := []struct{ name, yaml, want string }{
		{"region required", "engines:\n  - name: c\n    kind: anthropic\n    api_key: k\n    models: [{name: m}]\n",
			"engines[0].region: is required for a cloud engine"},
		{"cloud never local", "engines:\n  - name: c\n    kind: gemini\n    region: local\n    api_key: k\n    models: [{name: m}]\n",
			"a cloud engine cannot be in region local"},
		{"key required", "engines:\n  - name: c\n    kind: openai\n    provider: mistral\n    region: eu\n    models: [{name: m}]\n",
			"engines[0].api_key: is required"},
		{"unset key", "engines:\n  - name: c\n    kind: anthropic\n    region: eu\n    api_key: ${NOPE}\n    models: [{name: m}]\n",
			"environment variable NOPE is not set"},
		{"azure url", "engines:\n  - name: c\n    kind: openai\n    provider: azure\n    region: eu\n    api_key: k\n    models: [{name: m}]\n",
			"engines[0].url: is required for azure"},
		{"models required", "engines:\n  - name: c\n    kind: gemini\n    region: eu\n    api_key: k\n",
			"engines[0].models: a cloud engine needs its models listed"},
		{"bad provider", "engines:\n  - name: c\n    kind: openai\n    provider: bedrock\n    url: http://x:1\n",
			"engines[0].provider: must be generic, openai, azure or mistral"},
		{"provider on another kind", "engines:\n  - name: c\n    kind: ollama\n    provider: openai\n    url: http://x:1\n",
			"engines[0].provider: is only for kind openai"},
		{"bad region", "engines:\n  - name: c\n    kind: ollama\n    region: EU West\n    url: http://x:1\n",
			"is not a region name"},
		{"deployment not azure", "engines:\n  - name: c\n    kind: openai\n    provider: openai\n    region: us\n    deployment: d\n    api_key: k\n    models: [{name: m}]\n",
			"engines[0].deployment: is only for provider azure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "test.yaml", env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	// A remote engine sluice probes may name its region; it is not a cloud.
	c, err := Parse([]byte("engines:\n  - name: v\n    kind: openai\n    url: https://vllm.example.eu/v1\n    region: eu\n"), "t.yaml", env)
	if err != nil || c.Engines[0].Cloud() || c.Engines[0].Region != "eu" || c.Engines[0].Provider != "generic" {
		t.Fatalf("generic engine: %v %+v", err, c)
	}
}
