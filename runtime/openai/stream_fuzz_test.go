package openai

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/runtime/upstream"
	"github.com/valyala/fastjson"
)

// FuzzBufferedParseReused: for any two engine events, the chunks Recv returns are the
// same whether Buffered parsed each event first (and Recv took that parse) or not, and
// reading them never panics.
func FuzzBufferedParseReused(f *testing.F) {
	f.Add(`{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}`, `{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}`)
	f.Add(`{"choices":[{"delta":{"content":"a","con\u0074ent":"b"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3}}`, `{"error":{"message":"x"}}`)
	f.Add(`{"choices":[{"text":"x\"y"}]}`, `{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}`)
	f.Add(`{"choices":[]}`, `not json`)
	f.Fuzz(func(t *testing.T, a, b string) {
		if strings.ContainsAny(a+b, "\r\n") || a == "[DONE]" || b == "[DONE]" {
			return // one data line an event; the end needs a real engine call (athand_test.go)
		}
		in := "data: " + a + "\n\ndata: " + b + "\n\n"
		run := func(peek bool) []string {
			st := &stream{b: &Backend{}, r: &models.Request{Stream: true}, sse: upstream.NewSSE(strings.NewReader(in), 0), p: &fastjson.Parser{}}
			var out []string
			for range 4 {
				if peek {
					st.Buffered()
				}
				c, err := st.Recv()
				if err != nil {
					return append(out, "error: "+err.Error())
				}
				u := ""
				if c.Usage != nil {
					u = fmt.Sprintf("%+v", *c.Usage)
				}
				out = append(out, fmt.Sprintf("%q %q %q %q %s %d %q", c.Text, c.Role, c.FinishReason, c.ToolCalls, u, c.Format, c.Raw))
			}
			return out
		}
		plain, peeked := run(false), run(true)
		if strings.Join(plain, "\n") != strings.Join(peeked, "\n") {
			t.Fatalf("events %s / %s: with Buffered asked\n%s\nwithout\n%s", a, b, strings.Join(peeked, "\n"), strings.Join(plain, "\n"))
		}
	})
}
