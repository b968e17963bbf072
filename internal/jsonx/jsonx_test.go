package jsonx

import (
	"encoding/json"
	"strconv"
	"strings"
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
		{`{"model":"a","model":"b"}`, "model", `"a"`, true},
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

func TestLookup(t *testing.T) {
	b := []byte(`{"id":"x\\\"y","choices":[{"a":"}"}],"usage":{"n":1},"choices":2}`)
	var r [3][2]int
	if !Lookup(b, []string{"usage", "choices", "nope"}, r[:]) {
		t.Fatal("Lookup failed")
	}
	if got := string(b[r[0][0]:r[0][1]]); got != `{"n":1}` {
		t.Errorf("usage = %s", got)
	}
	if got := string(b[r[1][0]:r[1][1]]); got != `[{"a":"}"}]` {
		t.Errorf("choices = %s", got)
	}
	if r[2][0] != -1 {
		t.Errorf("absent key found")
	}
	if Lookup([]byte(`{"a":"unterminated`), []string{"a"}, r[:1]) {
		t.Errorf("malformed accepted")
	}
}

func TestApply(t *testing.T) {
	tests := []struct {
		in    string
		edits []Edit
		want  string
	}{
		{`{"model":"a","usage":{"x":1},"id":2}`, []Edit{{"model", []byte(`"b"`)}, {"usage", []byte(`{"y":2}`)}}, `{"model":"b","usage":{"y":2},"id":2}`},
		{`{"id":2}`, []Edit{{"model", []byte(`"b"`)}, {"usage", []byte(`3`)}}, `{"id":2,"model":"b","usage":3}`},
		{` {} `, []Edit{{"k", []byte(`1`)}}, ` {"k":1} `},
		{`{"model":"a","model":"c"}`, []Edit{{"model", []byte(`"b"`)}}, `{"model":"b","model":"c"}`},
	}
	for _, tt := range tests {
		got, err := Apply(nil, []byte(tt.in), tt.edits...)
		if err != nil || string(got) != tt.want {
			t.Errorf("Apply(%s) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	if _, err := Apply(nil, []byte(`[1]`), Edit{"a", []byte("1")}); err == nil {
		t.Errorf("Apply on an array: want error")
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
		out2, err := Apply(nil, b, Edit{key, []byte(`"spliced"`)}, Edit{"zz" + key, []byte(`[1]`)})
		if err != nil || !json.Valid(out2) {
			t.Fatalf("Apply(%s) = %s, %v", b, out2, err)
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("Set(%s) produced invalid JSON %s: %v", b, out, err)
		}
		// With duplicate keys the first is replaced; encoding/json reads the last.
		if strings.Count(string(b), strconvQuote(key)) <= 1 && got[key] != "spliced" {
			t.Fatalf("Set(%s, %q) = %s: key holds %v", b, key, out, got[key])
		}
		del := Delete(nil, out, key)
		if strings.Contains(string(b), `\`) {
			return // escaped keys: Delete is checked on plain ones
		}
		var d map[string]any
		if err := json.Unmarshal(del, &d); err != nil {
			t.Fatalf("Delete produced invalid JSON %s: %v", del, err)
		}
		if _, ok := d[key]; ok {
			t.Fatalf("Delete(%s, %q) left the key: %s", out, key, del)
		}
	})
}

func strconvQuote(s string) string { return strconv.Quote(s)[1 : len(strconv.Quote(s))-1] }
