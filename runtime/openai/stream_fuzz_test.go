package openai

import (
	"strings"
	"testing"
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
		plain, peeked := recvAll(in, false, 4), recvAll(in, true, 4)
		if strings.Join(plain, "\n") != strings.Join(peeked, "\n") {
			t.Fatalf("events %s / %s: with Buffered asked\n%s\nwithout\n%s", a, b, strings.Join(peeked, "\n"), strings.Join(plain, "\n"))
		}
	})
}
