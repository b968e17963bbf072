package config

import (
	"net/url"
	"time"
)

// Compress configures prompt compression (package compress; docs/compression.md). It
// is off unless enabled for a model, a tier (route) or, when Header allows, a request.
type Compress struct {
	// Models and Tiers enable compression for these models (names or aliases as clients
	// send them; "*" for every model) and router tiers, each with its own target; an
	// empty rule uses Ratio.
	Models map[string]CompressRule `yaml:"models"`
	Tiers  map[string]CompressRule `yaml:"tiers"`
	// Ratio is the default target: tokens before over tokens after (default 2).
	Ratio float64 `yaml:"ratio"`
	// Header lets a request set its own target, or turn compression on or off, with
	// X-Sluice-Compress: ratio=3 | tokens=800 | on | off (default true).
	Header *bool `yaml:"header"`
	// MinTokens leaves prompts shorter than this alone (default 256).
	MinTokens int `yaml:"min_tokens"`
	// Tools and ResponseFormat also compress requests that carry tools or a
	// response_format (structured output); by default they pass untouched. A request
	// can ask for it with "force" in its header.
	Tools          bool `yaml:"tools"`
	ResponseFormat bool `yaml:"response_format"`
	// Mode is statistical (default: word frequencies, microseconds) or model (a small
	// local model's log-probabilities through Engine; slower, for quality).
	Mode   string         `yaml:"mode"`
	Engine CompressEngine `yaml:"engine"`
	// Tokenizers maps models to the tokenizer.json that counts their tokens (default:
	// the top-level tokenizer; without one, a fast estimate).
	Tokenizers map[string]string `yaml:"tokenizers"`
	// LearnEvery feeds the words of every n-th compressed prompt to the word model, so
	// it follows the traffic (default 16; -1: never).
	LearnEvery int `yaml:"learn_every"`
}

// CompressRule is one model's or tier's target: Tokens (the whole prompt's size) when
// set, else Ratio (default: compress.ratio). Off turns compression off for it.
type CompressRule struct {
	Ratio  float64 `yaml:"ratio"`
	Tokens int     `yaml:"tokens"`
	Off    bool    `yaml:"off"`
}

// CompressEngine is the llama-server whose log-probabilities score words in model mode.
type CompressEngine struct {
	URL string `yaml:"url"`
	// TopK is how many candidate tokens the engine returns per position (n_probs,
	// default 20).
	TopK int `yaml:"top_k"`
	// MaxWords caps the words scored per request; the rest use the word model (default 512).
	MaxWords int `yaml:"max_words"`
	// Timeout bounds one scoring call; on timeout the word model is used (default 2s).
	Timeout time.Duration `yaml:"timeout"`
	// Region must be local (the default for a loopback or private address): every
	// compressed prompt is scored there, local-only keys' too.
	Region string `yaml:"region"`
}

// HeaderAllowed reports whether X-Sluice-Compress is honoured.
func (c *Compress) HeaderAllowed() bool { return c.Header == nil || *c.Header }

// Enabled reports whether any request can be compressed: a rule or the header.
func (c *Compress) Enabled() bool {
	return len(c.Models) > 0 || len(c.Tiers) > 0 || c.HeaderAllowed()
}

func (c *Compress) applyDefaults() {
	if c.Ratio == 0 {
		c.Ratio = 2
	}
	if c.MinTokens == 0 {
		c.MinTokens = 256
	}
	if c.Mode == "" {
		c.Mode = "statistical"
	}
	if c.LearnEvery == 0 {
		c.LearnEvery = 16
	}
	if c.Engine.TopK == 0 {
		c.Engine.TopK = 20
	}
	if c.Engine.MaxWords == 0 {
		c.Engine.MaxWords = 512
	}
	if c.Engine.Timeout == 0 {
		c.Engine.Timeout = 2 * time.Second
	}
}

func (c *Compress) validate(bad func(path, format string, args ...any)) {
	if c.Ratio < 1 {
		bad("compress.ratio", "must be at least 1, got %g", c.Ratio)
	}
	if c.MinTokens < 0 {
		bad("compress.min_tokens", "must not be negative")
	}
	if c.LearnEvery < -1 {
		bad("compress.learn_every", "must be -1 (never) or positive, got %d", c.LearnEvery)
	}
	check := func(path string, r CompressRule) {
		if r.Ratio != 0 && r.Ratio < 1 {
			bad(path+".ratio", "must be at least 1, got %g", r.Ratio)
		}
		if r.Tokens < 0 {
			bad(path+".tokens", "must not be negative")
		}
	}
	for k, r := range c.Models {
		check("compress.models."+k, r)
	}
	for k, r := range c.Tiers {
		check("compress.tiers."+k, r)
	}
	switch c.Mode {
	case "statistical":
	case "model":
		if u, err := url.Parse(c.Engine.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("compress.engine.url", "mode model needs the URL of a llama-server, got %q", c.Engine.URL)
		} else if c.Enabled() {
			sideServiceRegion("compress.engine", c.Engine.URL, &c.Engine.Region, bad)
		}
	default:
		bad("compress.mode", "must be statistical or model, got %q", c.Mode)
	}
	if c.Engine.TopK < 1 || c.Engine.TopK > 100 {
		bad("compress.engine.top_k", "must be between 1 and 100, got %d", c.Engine.TopK)
	}
	if c.Engine.MaxWords < 1 {
		bad("compress.engine.max_words", "must be positive")
	}
	if c.Engine.Timeout < 0 {
		bad("compress.engine.timeout", "must not be negative")
	}
	for k, p := range c.Tokenizers {
		if p == "" {
			bad("compress.tokenizers."+k, "is empty")
		}
	}
}
