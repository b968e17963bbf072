package classify

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestReadJSONL(t *testing.T) {
	in := `{"prompt": "What is 2+2?", "strong": 1, "weak": 0, "category": "math"}

{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}, {"role": "user", "content": "again"}], "strong": 9, "weak": 9.5}
{"prompt": "Write a poem", "label": 0.25, "weight": 2, "source": "mine/poems", "extra": [1, 2]}
`
	xs, err := ReadJSONL(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(xs) != 3 {
		t.Fatalf("%d examples, want 3", len(xs))
	}
	if xs[0].Target() != 1 || xs[1].Target() != 0 || xs[2].Target() != 0.25 {
		t.Errorf("targets %v %v %v", xs[0].Target(), xs[1].Target(), xs[2].Target())
	}
	if xs[2].TrainWeight() != 2 || xs[0].TrainWeight() != 1 {
		t.Errorf("weights %v %v", xs[2].TrainWeight(), xs[0].TrainWeight())
	}
	if !xs[0].HasScores() || xs[2].HasScores() {
		t.Error("HasScores wrong")
	}
	r := xs[1].Request()
	if len(r.Messages) != 4 || r.Messages[0].Role != "system" || r.Messages[3].Content != "again" {
		t.Errorf("request messages %+v", r.Messages)
	}
	if r := xs[0].Request(); len(r.Messages) != 1 || r.Messages[0].Role != "user" || r.Messages[0].Content != "What is 2+2?" {
		t.Errorf("prompt request %+v", r.Messages)
	}
}

func TestReadJSONLErrors(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`{"strong": 1, "weak": 0}`, `line 1: needs "prompt" or "messages"`},
		{"\n" + `{"prompt": "x"}`, `line 2: needs "label"`},
		{`{"prompt": "x", "strong": 1}`, `"strong" and "weak" go together`},
		{`{"prompt": "x", "label": 2}`, `"label" must be in [0,1]`},
		{`{"prompt": "x", "label": 1, "weight": -1}`, `"weight" must be`},
		{`{"prompt": "x", "messages": [{"role": "user", "content": "y"}], "label": 1}`, `both`},
		{`{"messages": [{"role": "bot", "content": "y"}], "label": 1}`, `role "bot"`},
		{`{"messages": [{"role": "system", "content": "y"}], "label": 1}`, `no user message`},
		{`{"prompt": "x", "label": 1} {"prompt": "y", "label": 0}`, `more than one JSON value`},
		{`{"prompt": "x", "label": 1`, `line 1: unexpected EOF`},
		{`[1, 2]`, `line 1: json: cannot unmarshal`},
	} {
		_, err := ReadJSONL(strings.NewReader(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ReadJSONL(%q) error %v, want it to contain %q", tt.in, err, tt.want)
		}
	}
}

func TestReadJSONLLongLine(t *testing.T) {
	long := `{"prompt": "` + strings.Repeat("a", 200<<10) + `", "label": 1}`
	xs, err := ReadJSONL(strings.NewReader(long))
	if err != nil || len(xs) != 1 || len(xs[0].Prompt) != 200<<10 {
		t.Fatalf("long line: %v", err)
	}
	tooLong := strings.Repeat(" ", MaxLine+1)
	if _, err := ReadJSONL(strings.NewReader(tooLong)); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("over MaxLine: %v", err)
	}
}

func TestJSONLRoundTrip(t *testing.T) {
	xs := []Example{
		{ID: "1", Source: "s", Category: "c", Prompt: "<b>&</b>", Strong: f64(1), Weak: f64(0)},
		{Messages: []Message{{Role: "user", Content: "a\nb"}}, Label: f64(0.5), Weight: f64(3)},
	}
	var buf bytes.Buffer
	if err := WriteJSONL(&buf, xs); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "<b>&</b>") {
		t.Errorf("HTML escaped: %s", buf.String())
	}
	back, err := ReadJSONL(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, xs) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, xs)
	}
}

func FuzzReadJSONL(f *testing.F) {
	f.Add([]byte(`{"prompt": "What is 2+2?", "strong": 1, "weak": 0}` + "\n" + `{"prompt":"x","label":1}`))
	f.Add([]byte(`{"messages": [{"role": "user", "content": "hi"}], "strong": 9, "weak": 7, "weight": 0.5}`))
	f.Add([]byte(`{"prompt": "x", "label": 1.5}`))
	f.Add([]byte("\n\n{}\n"))
	f.Add([]byte(`{"prompt": "\u00e9\ud83d\ude00", "strong": -1e308, "weak": 1e308}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		xs, err := ReadJSONL(bytes.NewReader(b))
		if err != nil {
			return
		}
		for i := range xs {
			if err := xs[i].validate(); err != nil {
				t.Fatalf("example %d passed the reader but fails validation: %v", i, err)
			}
			if y := xs[i].Target(); y < 0 || y > 1 {
				t.Fatalf("target %v out of [0,1]", y)
			}
			r := xs[i].Request()
			if len(r.Messages) == 0 {
				t.Fatal("request without messages")
			}
		}
		// What was read writes back and reads again to the same examples.
		var buf bytes.Buffer
		if err := WriteJSONL(&buf, xs); err != nil {
			t.Fatal(err)
		}
		back, err := ReadJSONL(&buf)
		if err != nil {
			t.Fatalf("rereading written examples: %v", err)
		}
		if len(back) != len(xs) {
			t.Fatalf("reread %d examples, wrote %d", len(back), len(xs))
		}
	})
}
