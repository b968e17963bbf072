package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

//go:embed default.yaml
var defaultYAML []byte

// Versions of the engines scripts/ build (keep in step with scripts/common.sh).
const (
	LlamaServerVersion = "3.21.1"
	OllamaVersion      = "0.17.4"
)

// Config is the whole file.
type Config struct {
	Server    Server    `yaml:"server"`
	Engines   []Engine  `yaml:"engines"`
	Scheduler Scheduler `yaml:"scheduler"`
	Log       Log       `yaml:"log"`
	Pricing   Pricing   `yaml:"pricing"`
	GPU       GPU       `yaml:"gpu"`
	Compress  Compress  `yaml:"compress"`
	Routing   Routing   `yaml:"routing"`
	Ledger    Ledger    `yaml:"ledger"`
	Cache     Cache     `yaml:"cache"`
	Batch     Batch     `yaml:"batch"`
	// Tokenizer is a Hugging Face tokenizer.json used to count tokens when an engine
	// reports none (default: the Llama-2 vocabulary in the cache, when present).
	Tokenizer string `yaml:"tokenizer"`
}

// Server configures the HTTP front end.
type Server struct {
	Listen         string        `yaml:"listen"`
	MaxBodyBytes   int           `yaml:"max_body_bytes"`
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// APIKeys are accepted bearer keys: plain keys (put them in the environment and
	// write "${MY_KEY}"), "sha256:<hex>" digests, or objects with a key's policy and
	// limits (see APIKey). Keys can also live in the ledger's store (`sluice keys`).
	// None at all: no authentication.
	APIKeys []APIKey `yaml:"api_keys"`
	// ShutdownTimeout bounds how long in-flight requests may finish on shutdown.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// AdminKeys guard /admin/* (plain or "sha256:<hex>"). Empty: sluice makes a random
	// key at start and writes it to AdminKeyFile for `sluice status` on the same box.
	AdminKeys    []string `yaml:"admin_keys"`
	AdminKeyFile string   `yaml:"admin_key_file"`
	// AllowPublicWithoutKeys lets sluice serve a non-loopback address without API keys
	// (e.g. behind a proxy that authenticates); otherwise it refuses to start.
	AllowPublicWithoutKeys bool `yaml:"allow_public_without_keys"`
	// Limits against slow, abusive or too many clients (config/limits.go).
	Limits Limits `yaml:"limits"`
}

// Pricing sets what hardware and cloud tokens cost.
type Pricing struct {
	// GPUPerHour maps GPU models (substrings of the NVML name, e.g. "H100", "A10G") to
	// dollars per GPU-hour; merged over sluice's defaults (RunPod list prices).
	GPUPerHour map[string]float64 `yaml:"gpu_per_hour"`
	// CPUPerHour is what the box costs per hour when engines run without GPUs.
	CPUPerHour float64 `yaml:"cpu_per_hour"`
	// Reference, when set, is the cloud model every request is compared with; unset,
	// each model is compared with its class's (ledger.references: a small local model
	// with a small cloud model).
	Reference string `yaml:"reference"`
	// Cloud list prices per million tokens, merged over the defaults.
	Cloud map[string]CloudPrice `yaml:"cloud"`
}

// CloudPrice is dollars per million input and output tokens.
type CloudPrice struct {
	Input  float64 `yaml:"input"`
	Output float64 `yaml:"output"`
}

// GPU configures telemetry and placement.
type GPU struct {
	RefreshEvery time.Duration `yaml:"refresh_every"`
	// Headroom is the fraction of each GPU's free memory left unplanned (default 0.10).
	Headroom float64 `yaml:"headroom"`
}

// Engine is one inference engine: a llama-server (managed when model_path is set, or at
// url), an Ollama server, or any OpenAI-compatible server.
type Engine struct {
	Name string `yaml:"name"`
	Kind string `yaml:"kind"` // llamacpp | ollama | openai | anthropic | gemini
	URL  string `yaml:"url"`
	// APIKey for OpenAI-compatible engines and clouds (use ${ENV_VAR}).
	APIKey string `yaml:"api_key"`

	// Clouds and regions (config/cloud.go).
	Provider   string `yaml:"provider"`    // kind openai: generic (default) | openai | azure | mistral
	Region     string `yaml:"region"`      // local (default for local engines) | eu | us | ...; required for clouds
	APIVersion string `yaml:"api_version"` // azure api-version, anthropic-version, gemini path version
	Deployment string `yaml:"deployment"`  // azure: one deployment for every model (default: the model's upstream name)
	MaxTokens  int    `yaml:"max_tokens"`  // anthropic: max_tokens of requests that set none (default 4096)

	// Managed llama-server.
	Binary    string   `yaml:"binary"`
	ModelPath string   `yaml:"model_path"`
	Slots     int      `yaml:"slots"`
	Context   int      `yaml:"context"`
	Threads   int      `yaml:"threads"`
	GPULayers int      `yaml:"gpu_layers"`
	Embedding bool     `yaml:"embedding"`
	Args      []string `yaml:"args"`
	Env       []string `yaml:"env"`
	// Optional engines whose model file is missing are left out instead of failing.
	Optional bool `yaml:"optional"`
	// GPUs pins the engine to these GPU indexes; empty: placed by free memory when
	// gpu_layers is set and GPUs are present.
	GPUs []int `yaml:"gpus"`
	// PricePerHour overrides what the engine costs per hour (e.g. a remote vLLM box).
	PricePerHour *float64 `yaml:"price_per_hour"`

	// MaxConcurrency caps requests in flight for engines that report no slots.
	MaxConcurrency int `yaml:"max_concurrency"`
	// MaxLoadedModels is how many models the engine holds at once (Ollama's
	// OLLAMA_MAX_LOADED_MODELS); 1 makes sluice group requests by model so the engine
	// is not made to swap back and forth. 0: no limit.
	MaxLoadedModels int `yaml:"max_loaded_models"`
	// KVTokens is the KV cache, in tokens, that the engine's sequences share (vLLM's
	// paged cache): sluice admits no more work than fits. 0: not checked.
	KVTokens int `yaml:"kv_tokens"`
	// Models served by this engine; empty: discovered from the engine (ollama, openai)
	// or named after the GGUF file (llamacpp).
	Models []Model `yaml:"models"`
}

// Model is a name clients use and what it maps to on the engine.
type Model struct {
	Name     string   `yaml:"name"`
	Upstream string   `yaml:"upstream"` // the engine's name for it (default: Name)
	Aliases  []string `yaml:"aliases"`
	Kind     string   `yaml:"kind"` // chat (default) | embedding
	// Reference is the cloud model this one is compared with (default pricing.reference).
	Reference string `yaml:"reference"`
	// ModelRouting: tier, context window, capabilities, price (config/routing.go).
	ModelRouting `yaml:",inline"`
}

// Scheduler tunes admission and placement.
type Scheduler struct {
	MaxQueue     int           `yaml:"max_queue"`
	RefreshEvery time.Duration `yaml:"refresh_every"`
	// Policy picks engines: sluice (prefix cache, load, KV, GPU; default),
	// least-loaded or round-robin.
	Policy  string  `yaml:"policy"`
	Weights Weights `yaml:"weights"`
	// SLO is each class's time-to-first-token target: a request expected to miss it is
	// refused as saturated (429 with Retry-After, or overflow once configured). 0: never.
	SLO SLO `yaml:"slo"`
	// TenantWeights give tenants (API key or user) a larger share of contended capacity.
	TenantWeights map[string]float64 `yaml:"tenant_weights"`
	// PrefixWait (sluice policy, default true): a request whose prompt is cached on a
	// busy slot waits for that slot instead of taking a free one cold, while the wait
	// is expected to cost less than the prefill it saves, and never longer than that.
	PrefixWait *bool `yaml:"prefix_wait"`
}

// PrefixWaitOn reports whether cost-aware waiting is on (the default).
func (s *Scheduler) PrefixWaitOn() bool { return s.PrefixWait == nil || *s.PrefixWait }

// Weights weigh the sluice policy's scorers (each in [0,1]).
type Weights struct {
	Prefix float64 `yaml:"prefix"`
	Load   float64 `yaml:"load"`
	KV     float64 `yaml:"kv"`
	GPU    float64 `yaml:"gpu"`
	Evict  float64 `yaml:"evict"`
	Home   float64 `yaml:"home"`
}

// SLO is a time-to-first-token target per priority class.
type SLO struct {
	Interactive time.Duration `yaml:"interactive"`
	Batch       time.Duration `yaml:"batch"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// Env abstracts the environment (tests pass a map).
type Env func(string) (string, bool)

// OSEnv reads the process environment.
func OSEnv(k string) (string, bool) { return os.LookupEnv(k) }

// CacheDir is where scripts/ keep engines, the vocabulary and generated models:
// $SLUICE_CACHE, else $XDG_CACHE_HOME/sluice, else ~/.cache/sluice.
func CacheDir(env Env) string {
	if d, ok := env("SLUICE_CACHE"); ok && d != "" {
		return d
	}
	if d, ok := env("XDG_CACHE_HOME"); ok && d != "" {
		return filepath.Join(d, "sluice")
	}
	home, ok := env("HOME")
	if !ok || home == "" {
		home, _ = os.UserHomeDir()
	}
	return filepath.Join(home, ".cache", "sluice")
}

// Default returns the embedded default configuration.
func Default(env Env) (*Config, error) {
	return Parse(defaultYAML, "default.yaml", env)
}

// Load reads and parses a file.
func Load(path string, env Env) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(b, path, env)
}

// Parse decodes YAML strictly, expands ${VAR} in values, applies defaults and validates.
func Parse(b []byte, name string, env Env) (*Config, error) {
	if env == nil {
		env = OSEnv
	}
	// SLUICE_CACHE is always defined for expansion, so the default config works.
	expandEnv := func(k string) (string, bool) {
		if v, ok := env(k); ok {
			return v, true
		}
		if k == "SLUICE_CACHE" {
			return CacheDir(env), true
		}
		return "", false
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	c := &Config{}
	if root.Kind != 0 {
		if err := checkKeys(root.Content[0], reflect.TypeOf(*c), ""); err != nil {
			return nil, fmt.Errorf("config %s: %w", name, err)
		}
		if err := expand(root.Content[0], expandEnv); err != nil {
			return nil, fmt.Errorf("config %s: %w", name, err)
		}
		if err := root.Content[0].Decode(c); err != nil {
			return nil, fmt.Errorf("config %s: %w", name, err)
		}
	}
	c.applyDefaults(env)
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	return c, nil
}

// checkKeys walks the YAML mapping beside the struct type and reports the first key the
// type does not have, with its full path.
func checkKeys(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if t == reflect.TypeOf(time.Duration(0)) {
			return nil
		}
		if n.Kind == yaml.ScalarNode && reflect.PointerTo(t).Implements(scalarStruct) {
			return nil // a string that stands for the whole struct (APIKey)
		}
		if n.Kind != yaml.MappingNode {
			if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
				return nil
			}
			return fmt.Errorf("%s: expected a mapping (line %d)", orRoot(path), n.Line)
		}
		fields := map[string]reflect.StructField{}
		addFields(fields, t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			f, ok := fields[k]
			p := join(path, k)
			if !ok {
				return fmt.Errorf("unknown key %s (line %d); known keys here: %s", p, n.Content[i].Line, known(fields))
			}
			if err := checkKeys(n.Content[i+1], f.Type, p); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return nil // the decoder reports type errors
		}
		for i, e := range n.Content {
			if err := checkKeys(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// scalarStruct is implemented by struct types that also accept a plain string.
var scalarStruct = reflect.TypeOf((*interface{ acceptsScalar() })(nil)).Elem()

// addFields collects t's YAML keys, those of inline structs included.
func addFields(fields map[string]reflect.StructField, t reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		parts := strings.Split(f.Tag.Get("yaml"), ",")
		if len(parts) > 1 && parts[1] == "inline" && f.Type.Kind() == reflect.Struct {
			addFields(fields, f.Type)
			continue
		}
		if parts[0] != "" && parts[0] != "-" {
			fields[parts[0]] = f
		}
	}
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func orRoot(p string) string {
	if p == "" {
		return "top level"
	}
	return p
}

func known(m map[string]reflect.StructField) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sortStrings(ks)
	return strings.Join(ks, ", ")
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// expand replaces ${VAR} and ${VAR:-default} in every scalar value (never in keys).
func expand(n *yaml.Node, env Env) error {
	switch n.Kind {
	case yaml.ScalarNode:
		v, err := ExpandString(n.Value, env)
		if err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		if v != n.Value {
			n.Value = v
			if n.Tag == "!!null" || n.Tag == "" {
				n.Tag = "!!str"
			}
		}
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			if err := expand(n.Content[i], env); err != nil {
				return err
			}
		}
	case yaml.SequenceNode, yaml.DocumentNode:
		for _, c := range n.Content {
			if err := expand(c, env); err != nil {
				return err
			}
		}
	}
	return nil
}

// ExpandString expands ${VAR} and ${VAR:-default}; "$$" is a literal "$". An unset
// variable without a default is an error naming it, so a missing secret is caught at
// start-up rather than sent as an empty key.
func ExpandString(s string, env Env) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		if s[i+1] == '$' {
			b.WriteByte('$')
			i++
			continue
		}
		if s[i+1] != '{' {
			b.WriteByte(c)
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unclosed ${ in %q", s)
		}
		expr := s[i+2 : i+end]
		name, def, hasDef := strings.Cut(expr, ":-")
		v, ok := env(name)
		switch {
		case ok && v != "":
			b.WriteString(v)
		case hasDef:
			b.WriteString(def)
		case ok:
		default:
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		i += end
	}
	return b.String(), nil
}
