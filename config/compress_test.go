package config

import (
	"strings"
	"testing"
	"time"
)

func TestCompressConfig(t *testing.T) {
	model := writeModel(t)
	env := mapEnv(map[string]string{"HOME": t.TempDir(), "M": model})
	base := "engines:\n  - name: a\n    model_path: ${M}\n"
	c, err := Parse([]byte(base), "t.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	cc := c.Compress
	if cc.Ratio != 2 || cc.MinTokens != 256 || cc.Mode != "statistical" || !cc.HeaderAllowed() || cc.LearnEvery != 16 ||
		cc.Engine.TopK != 20 || cc.Engine.MaxWords != 512 || cc.Engine.Timeout != 2*time.Second || len(cc.Models) != 0 {
		t.Errorf("defaults: %+v", cc)
	}
	if !cc.Enabled() {
		t.Errorf("the header alone enables the stage")
	}
	y := base + `compress:
  models: {tiny: {ratio: 3}, big: {tokens: 900}, "*": {}}
  tiers: {small: {off: true}}
  header: false
  mode: model
  engine: {url: "http://127.0.0.1:8081", top_k: 5}
  tokenizers: {tiny: /x/tokenizer.json}
`
	c, err = Parse([]byte(y), "t.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	cc = c.Compress
	if cc.Models["tiny"].Ratio != 3 || cc.Models["big"].Tokens != 900 || !cc.Tiers["small"].Off || cc.HeaderAllowed() ||
		cc.Mode != "model" || cc.Engine.TopK != 5 || cc.Tokenizers["tiny"] != "/x/tokenizer.json" || !cc.Enabled() {
		t.Errorf("parsed: %+v", cc)
	}
	off := base + "compress: {header: false}\n"
	if c, err = Parse([]byte(off), "t.yaml", env); err != nil || c.Compress.Enabled() {
		t.Errorf("no rules and no header: enabled=%v err=%v", c != nil && c.Compress.Enabled(), err)
	}
	for _, tt := range []struct{ yaml, want string }{
		{"compress: {ratio: 0.5}\n", "compress.ratio: must be at least 1"},
		{"compress: {mode: neural}\n", "compress.mode: must be statistical or model"},
		{"compress: {mode: model}\n", "compress.engine.url: mode model needs"},
		{"compress: {models: {tiny: {ratio: 0.2}}}\n", "compress.models.tiny.ratio"},
		{"compress: {tiers: {small: {tokens: -3}}}\n", "compress.tiers.small.tokens"},
		{"compress: {engine: {top_k: 1000}}\n", "compress.engine.top_k"},
		{"compress: {learn_every: -5}\n", "compress.learn_every"},
		{"compress: {ratoi: 2}\n", "unknown key compress.ratoi"},
		{"compress: {mode: model, engine: {url: 'https://scorer.example.com'}}\n", "compress.engine.region: is required"},
		{"compress: {mode: model, engine: {url: 'https://scorer.example.com', region: us}}\n", "compress.engine.region: must be local"},
	} {
		_, err := Parse([]byte(base+tt.yaml), "t.yaml", env)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.yaml, err, tt.want)
		}
	}
}
