package openai

import (
	"encoding/json"
	"testing"
)

// FuzzMistralBody rewrites arbitrary bodies for Mistral: a valid object stays valid,
// and none of the refused fields survive.
func FuzzMistralBody(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[],"stream_options":{"include_usage":true},"seed":3,"max_completion_tokens":9,"user":"u"}`))
	f.Add([]byte(`{"seed":1,"random_seed":2,"max_tokens":1,"max_completion_tokens":2}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		var before map[string]json.RawMessage
		if json.Unmarshal(in, &before) != nil {
			return
		}
		out := mistralBody(append([]byte(nil), in...))
		var after map[string]json.RawMessage
		if err := json.Unmarshal(out, &after); err != nil {
			t.Fatalf("%s became invalid: %s", in, out)
		}
		for _, k := range append(mistralDrop, "seed", "max_completion_tokens") {
			if _, ok := after[k]; ok {
				t.Fatalf("%s kept %q: %s", in, k, out)
			}
		}
	})
}
