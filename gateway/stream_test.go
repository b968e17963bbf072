package gateway_test

import (
	"strings"
	"testing"

	"github.com/sluice-llm/sluice/gateway"
)

// TestSlowStreamWaits: between the events of a slow stream (an engine generating at its
// own pace) the gateway waits for the engine with models.WaitReady, at a shallow depth,
// instead of inside Recv; a fast stream is not waited on. Both answers arrive whole, on
// the OpenAI and the Anthropic API.
func TestSlowStreamWaits(t *testing.T) {
	g := startGateway(t, gateway.Options{}, 4)
	for _, api := range []struct {
		path, body, delta, end string
	}{
		{"/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"%s"}]}`, `"content":"word "`, "data: [DONE]"},
		{"/v1/messages", `{"model":"m","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"%s"}]}`, `"text":"word "`, "event: message_stop"},
	} {
		for _, tc := range []struct {
			prompt string
			slow   bool
		}{{"slow 20", true}, {"words 40", false}} {
			before := g.Fake.waits.Load()
			resp, b := post(t, g.URL+api.path, strings.Replace(api.body, "%s", tc.prompt, 1))
			if resp.StatusCode != 200 {
				t.Fatalf("%s %q: %d %s", api.path, tc.prompt, resp.StatusCode, b)
			}
			words := 20
			if !tc.slow {
				words = 40
			}
			if n := strings.Count(string(b), api.delta); n != words || !strings.Contains(string(b), api.end) {
				t.Fatalf("%s %q: %d deltas of %d, end %v:\n%s", api.path, tc.prompt, n, words, strings.Contains(string(b), api.end), b)
			}
			waits := g.Fake.waits.Load() - before
			// 21 gaps of 5 ms in the slow stream; the fast one's events come microseconds
			// apart (some may be late on a loaded machine; waiting on every one of its 41
			// gaps is what fails).
			if tc.slow && waits < 15 {
				t.Errorf("%s %q: waited %d times between 21 gaps of 5 ms", api.path, tc.prompt, waits)
			}
			if !tc.slow && waits > 34 {
				t.Errorf("%s %q: a fast stream was waited on %d times", api.path, tc.prompt, waits)
			}
		}
	}
	g.slotFree(t)
}
