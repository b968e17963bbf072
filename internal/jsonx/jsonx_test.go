package jsonx

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

func TestFind(t *testing.T) {
	tests := []struct {
		in, key, want string
		ok            bool
	}{
		{`{"model":"a","stream":true}`, "model", `"a"`, true},
		{`{"model":"a","stream":true}`, "stream", `true`, true},
		{` { "x" : [1,{"model":"inner"}] , "model" : "b" } `, "model", `"b"`, true},
		{`{"x":"}\"model\":","model":{"a":[1,2]}}`, "model", `{"a":[1,2]}`, true},
		{`{"model":"a","model":"b"}`, "model", `"b"`, true},
		{`{"mo\u0064el":"esc"}`, "model", `"esc"`, true},
		{`{}`, "model", ``, false},
		{`[1,2]`, "model", ``, false},
		{`{"n":-1.5e3}`, "n", `-1.5e3`, true},
	}
	for _, tt := range tests {
		s, e, ok := Find([]byte(tt.in), tt.key)
		if ok != tt.ok {
			t.Errorf("Find(%s, %q) ok = %v, want %v", tt.in, tt.key, ok, tt.ok)
			continue
		}
		if ok && tt.in[s:e] != tt.want {
			t.Errorf("Find(%s, %q) = %s, want %s", tt.in, tt.key, tt.in[s:e], tt.want)
		}
	}
}

func TestSet(t *testing.T) {
	tests := []struct{ in, key, val, want string }{
		{`{"model":"a","x":1}`, "model", `"b"`, `{"model":"b","x":1}`},
		{`{"x":1}`, "model", `"b"`, `{"x":1,"model":"b"}`},
		{`{}`, "model", `"b"`, `{"model":"b"}`},
		{` { } `, "k", `1`, ` { "k":1} `},
		{`{"x":1} `, "k", `{"a":true}`, `{"x":1,"k":{"a":true}} `},
	}
	for _, tt := range tests {
		got, err := Set(nil, []byte(tt.in), tt.key, []byte(tt.val))
		if err != nil || string(got) != tt.want {
			t.Errorf("Set(%s,%s,%s) = %s, %v; want %s", tt.in, tt.key, tt.val, got, err, tt.want)
		}
	}
}

func TestDelete(t *testing.T) {
	tests := []struct{ in, key, want string }{
		{`{"a":1,"b":2,"c":3}`, "b", `{"a":1,"c":3}`},
		{`{"a":1,"b":2}`, "b", `{"a":1}`},
		{`{"b":2}`, "b", `{}`},
		{`{"b":2,"a":1,"b":3}`, "b", `{"a":1}`},
		{`{"a":1}`, "z", `{"a":1}`},
	}
	for _, tt := range tests {
		got := Delete(nil, []byte(tt.in), tt.key)
		if string(got) != tt.want {
			t.Errorf("Delete(%s,%s) = %s; want %s", tt.in, tt.key, got, tt.want)
		}
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", "quote\"back\\slash", "nl\n\r\t\x01", "ünïcödé 🙂", "\u2028x\u2029", "bad\xffutf8"} {
		got := AppendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("AppendString(%q) = %s: not valid JSON: %v", s, got, err)
		}
		want, _ := json.Marshal(s)
		var wantBack string
		_ = json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("AppendString(%q) round-trips to %q, want %q", s, back, wantBack)
		}
	}
}

// FuzzSetFind checks that splicing a value into any valid object yields valid JSON whose
// key holds the new value.
func FuzzSetFind(f *testing.F) {
	for _, s := range []string{`{}`, `{"model":"a"}`, `{"a":[1,{"model":2}],"b":"x\"y"}`, ` {"x" : null } `} {
		f.Add([]byte(s), "model")
	}
	f.Fuzz(func(t *testing.T, b []byte, key string) {
		if !utf8.ValidString(key) {
			return // keys are sluice's own constants
		}
		var obj map[string]any
		if json.Unmarshal(b, &obj) != nil || !json.Valid(b) {
			return
		}
		out, err := Set(nil, b, key, []byte(`"spliced"`))
		if err != nil {
			t.Fatalf("Set on valid object %s: %v", b, err)
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("Set(%s) produced invalid JSON %s: %v", b, out, err)
		}
		if got[key] != "spliced" {
			t.Fatalf("Set(%s, %q) = %s: key holds %v", b, key, out, got[key])
		}
		del := Delete(nil, out, key)
		var d map[string]any
		if err := json.Unmarshal(del, &d); err != nil {
			t.Fatalf("Delete produced invalid JSON %s: %v", del, err)
		}
		if _, ok := d[key]; ok {
			t.Fatalf("Delete(%s, %q) left the key: %s", out, key, del)
		}
	})
}
