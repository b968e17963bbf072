package batch

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fastjson"
)

func TestParseRequest(t *testing.T) {
	const ep = "/v1/chat/completions"
	good := `{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"tiny","messages":[{"role":"user","content":"hi"}]}}`
	tests := []struct {
		line, code, custom string
	}{
		{good, "", "a"},
		{`{"custom_id":"a",`, "invalid_json", ""},
		{`[1]`, "invalid_request", ""},
		{`{"method":"POST","url":"/v1/chat/completions","body":{}}`, "missing_custom_id", ""},
		{`{"custom_id":7,"method":"POST","url":"/v1/chat/completions","body":{}}`, "invalid_custom_id", ""},
		{`{"custom_id":"","method":"POST","url":"/v1/chat/completions","body":{}}`, "invalid_custom_id", ""},
		{`{"custom_id":"` + strings.Repeat("x", maxCustomID+1) + `","method":"POST","url":"/v1/chat/completions","body":{}}`, "invalid_custom_id", strings.Repeat("x", maxCustomID+1)},
		{`{"custom_id":"b","method":"GET","url":"/v1/chat/completions","body":{}}`, "invalid_method", "b"},
		{`{"custom_id":"b","url":"/v1/chat/completions","body":{}}`, "invalid_method", "b"},
		{`{"custom_id":"b","method":"POST","url":"/v1/embeddings","body":{}}`, "invalid_url", "b"},
		{`{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":"x"}`, "invalid_body", "b"},
		{`{"custom_id":"b","method":"POST","url":"/v1/chat/completions"}`, "invalid_body", "b"},
		{`{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{"stream":true}}`, "invalid_body", "b"},
		{`{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{"stream":false}}`, "", "b"},
	}
	for _, tt := range tests {
		var p fastjson.Parser
		r, e := parseRequest(&p, []byte(tt.line), ep)
		code := ""
		if e != nil {
			code = e.Code
		}
		if code != tt.code || r.CustomID != tt.custom {
			t.Errorf("%.60s: code %q custom %q, want %q %q (%v)", tt.line, code, r.CustomID, tt.code, tt.custom, e)
		}
		if e == nil && !json.Valid(r.Body) {
			t.Errorf("%.60s: body %q is not JSON", tt.line, r.Body)
		}
	}
	var p fastjson.Parser
	r, _ := parseRequest(&p, []byte(good), ep)
	if string(r.Body) != `{"model":"tiny","messages":[{"role":"user","content":"hi"}]}` {
		t.Fatalf("body is not the line's bytes: %s", r.Body)
	}
}

func TestScanLines(t *testing.T) {
	in := "a\r\n\n  \nbb\n\nccc"
	type ln struct {
		off  int64
		line string
	}
	var got []ln
	if err := scanLines(strings.NewReader(in), func(off int64, line []byte) error {
		got = append(got, ln{off, string(line)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []ln{{0, "a"}, {7, "bb"}, {11, "ccc"}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] || in[got[i].off:got[i].off+int64(len(got[i].line))] != got[i].line {
			t.Fatalf("line %d: got %v, want %v", i, got[i], want[i])
		}
	}
}

func TestLineEncoding(t *testing.T) {
	out, u := appendResponse(nil, "batch_req_x_1", "c1", "rid", 200,
		[]byte(`{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":1},"cost_usd":0.5}}`+"\n"))
	var v struct {
		ID       string `json:"id"`
		CustomID string `json:"custom_id"`
		Response struct {
			StatusCode int             `json:"status_code"`
			RequestID  string          `json:"request_id"`
			Body       json.RawMessage `json:"body"`
		} `json:"response"`
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if v.ID != "batch_req_x_1" || v.CustomID != "c1" || v.Response.StatusCode != 200 || v.Response.RequestID != "rid" ||
		string(v.Error) != "null" || !bytes.HasPrefix(v.Response.Body, []byte(`{"id":"x"`)) {
		t.Fatalf("line: %s", out)
	}
	if u != (usage{3, 4, 1, 0.5}) {
		t.Fatalf("usage %+v", u)
	}
	// A body that is not JSON is kept as a string.
	out, _ = appendResponse(nil, "r", "c", "", 502, []byte("oops"))
	if !json.Valid(out) || !bytes.Contains(out, []byte(`"body":"oops"`)) {
		t.Fatalf("line: %s", out)
	}
	out = appendLineError(nil, "r", "", &lineError{"invalid_json", `bad "x"`})
	if !json.Valid(out) || !bytes.Contains(out, []byte(`"custom_id":null,"response":null,"error":{"code":"invalid_json"`)) {
		t.Fatalf("line: %s", out)
	}
}

func TestTransitions(t *testing.T) {
	for _, from := range Statuses() {
		for _, to := range Statuses() {
			ok := canTransition(from, to)
			terminal := from == StatusCompleted || from == StatusFailed || from == StatusExpired || from == StatusCancelled
			if terminal && ok {
				t.Errorf("%s → %s allowed from a final status", from, to)
			}
		}
	}
	if !canTransition(StatusInProgress, StatusCancelling) || canTransition(StatusFinalizing, StatusCancelling) {
		t.Fatal("cancel rules")
	}
}

func TestBackoff(t *testing.T) {
	r := &runner{m: &Manager{opts: Options{RetryBackoff: time.Second, MaxRetryBackoff: 10 * time.Second}}}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for i, w := range want {
		if got := r.backoff(i + 1); got != w {
			t.Errorf("try %d: %v, want %v", i+1, got, w)
		}
	}
}

func TestIDs(t *testing.T) {
	id := newID("file-")
	if !validID(id, "file-") || validID(id, "batch_") || validID("file-../../etc/passwd", "file-") || validID("file-", "file-") {
		t.Fatalf("validID(%q)", id)
	}
	if got := requestID("batch_abc", 12); got != "batch_req_abc_12" {
		t.Fatal(got)
	}
}

// FuzzParseRequest: any line gives either a request whose body is a JSON object and
// whose custom_id is valid, or an error code; and its error line is valid JSON.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"tiny","messages":[]}}`,
		`{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body" : {"stream":true}}`,
		`{"custom_id":"\u00e9","method":"POST","url":"/v1/chat/completions","body":{},"body":{"x":1}}`,
		`{"custom_id":null}`, `[]`, `"x"`, `{`, "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var p fastjson.Parser
		r, e := parseRequest(&p, line, "/v1/chat/completions")
		if e == nil {
			var v fastjson.Parser
			b, err := v.ParseBytes(r.Body)
			if err != nil || b.Type() != fastjson.TypeObject {
				t.Fatalf("body %q of %q", r.Body, line)
			}
			if r.CustomID == "" || len(r.CustomID) > maxCustomID {
				t.Fatalf("custom_id %q", r.CustomID)
			}
		} else if e.Code == "" {
			t.Fatal("error without code")
		}
		if out := appendLineError(nil, "r", r.CustomID, &lineError{"c", "m"}); !json.Valid(out) {
			t.Fatalf("error line %s", out)
		}
	})
}

// FuzzScanLines: the lines found are the file's non-blank lines at their offsets.
func FuzzScanLines(f *testing.F) {
	for _, s := range []string{"a\nb", "\r\n\r\n", "x\r\ny\n", "", "\n\n z \n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var n int
		err := scanLines(bytes.NewReader(data), func(off int64, line []byte) error {
			if !bytes.Equal(data[off:off+int64(len(line))], line) || bytes.ContainsRune(line, '\n') || len(bytes.TrimSpace(line)) == 0 {
				t.Fatalf("line %q at %d of %q", line, off, data)
			}
			n++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for _, l := range bytes.Split(data, []byte("\n")) {
			if len(bytes.TrimSpace(bytes.TrimSuffix(l, []byte("\r")))) > 0 {
				want++
			}
		}
		if n != want {
			t.Fatalf("%d lines, want %d in %q", n, want, data)
		}
	})
}

// FuzzParseCreate: a create-batch body is accepted only with the three fields right, and
// then its metadata is a JSON object of at most 16 strings.
func FuzzParseCreate(f *testing.F) {
	for _, s := range []string{
		`{"input_file_id":"file-x","endpoint":"/v1/chat/completions","completion_window":"24h","metadata":{"a":"b"}}`,
		`{"input_file_id":"file-x","endpoint":"/v1/embeddings","completion_window":"24h","metadata":null}`,
		`{"input_file_id":1}`, `{"metadata":{"k":"\u00e9"}}`, `[]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := parseCreate(body)
		if err != nil {
			if !errors.Is(err, models.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if r.window != "24h" || !endpoints[r.endpoint] {
			t.Fatalf("accepted %+v", r)
		}
		if r.metadata != nil {
			var m map[string]string
			if err := json.Unmarshal(r.metadata, &m); err != nil || len(m) > 16 {
				t.Fatalf("metadata %s: %v", r.metadata, err)
			}
		}
	})
}
