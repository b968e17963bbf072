package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/sluice-llm/sluice/internal/enginetest"
	"github.com/sluice-llm/sluice/runtime/anthropic/anthropictest"
	"github.com/sluice-llm/sluice/runtime/cloudtest"
	"github.com/sluice-llm/sluice/runtime/gemini/geminitest"
	"github.com/sluice-llm/sluice/runtime/openai/openaitest"
)

// TestServeCloud runs `sluice serve` with one engine of each cloud kind, each pointed
// at its fake provider, and drives it with the OpenAI Go SDK: plain and streamed
// answers, tool calls, usage, the region header and a provider's errors, all in
// OpenAI's wire format whatever the provider spoke.
func TestServeCloud(t *testing.T) {
	toolReply := func(last string) bool { return strings.Contains(last, "weather") }
	claude := anthropictest.New(anthropictest.Options{ReplyTokens: 7, Reply: func(r *anthropictest.Request) anthropictest.Reply {
		if toolReply(r.LastText()) {
			return anthropictest.Reply{Text: "Let me check.", ToolCalls: []anthropictest.ToolUse{{Name: "get_weather", Input: `{"city":"Paris"}`}}}
		}
		return anthropictest.Reply{Text: strings.Join(cloudtest.Tokens(7), "")}
	}})
	defer claude.Close()
	gem := geminitest.New(geminitest.Options{ReplyTokens: 7, Reply: func(r *geminitest.Request) geminitest.Reply {
		if toolReply(r.LastText()) {
			return geminitest.Reply{Calls: []geminitest.Call{{Name: "get_weather", Args: `{"city":"Paris"}`}}}
		}
		return geminitest.Reply{Text: strings.Join(cloudtest.Tokens(7), "")}
	}})
	defer gem.Close()
	mistral := openaitest.New(openaitest.Options{Flavor: openaitest.Mistral, ReplyTokens: 7, Reply: func(r *openaitest.Request) openaitest.Reply {
		if toolReply(r.LastText()) {
			return openaitest.Reply{ToolCalls: []openaitest.Call{{Name: "get_weather", Args: `{"city":"Paris"}`}}}
		}
		return openaitest.Reply{Text: strings.Join(cloudtest.Tokens(7), "")}
	}})
	defer mistral.Close()
	azure := openaitest.New(openaitest.Options{Flavor: openaitest.Azure, ReplyTokens: 7, Deployments: []string{"gpt4o-eu"},
		Reply: func(r *openaitest.Request) openaitest.Reply {
			if toolReply(r.LastText()) {
				return openaitest.Reply{ToolCalls: []openaitest.Call{{Name: "get_weather", Args: `{"city":"Paris"}`}}}
			}
			return openaitest.Reply{Text: strings.Join(cloudtest.Tokens(7), "")}
		}})
	defer azure.Close()

	dir := t.TempDir()
	t.Setenv("SLUICE_CACHE", dir)
	t.Setenv("TEST_CLOUD_KEY", "test-key")
	port := enginetest.FreePort(t)
	cfg := `
server:
  listen: 127.0.0.1:` + itoa(port) + `
engines:
  - name: claude-eu
    kind: anthropic
    url: ` + claude.URL + `
    region: eu
    api_key: ${TEST_CLOUD_KEY}
    models: [{name: claude, upstream: claude-test, tier: frontier}]  # no other frontier model: no fallback
  - name: gemini-us
    kind: gemini
    url: ` + gem.URL + `
    region: us
    api_key: ${TEST_CLOUD_KEY}
    models: [{name: gemini, upstream: gemini-test}]
  - name: mistral-eu
    kind: openai
    provider: mistral
    url: ` + mistral.URL + `
    region: eu
    api_key: ${TEST_CLOUD_KEY}
    models: [{name: mistral, upstream: mistral-test}]
  - name: azure-eu
    kind: openai
    provider: azure
    url: ` + azure.URL + `
    region: eu
    api_version: "2024-10-21"
    api_key: ${TEST_CLOUD_KEY}
    models: [{name: gpt-eu, upstream: gpt4o-eu}]
`
	path := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"serve", "--config", path, "--log-level", "error"}, pw, io.Discard)
		pw.Close()
	}()
	lines := bufio.NewScanner(pr)
	var out []string
	for lines.Scan() {
		out = append(out, lines.Text())
		if strings.HasPrefix(lines.Text(), "sluice ready") {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if len(out) == 0 || !strings.HasPrefix(out[len(out)-1], "sluice ready") {
		t.Fatalf("no ready line:\n%s", strings.Join(out, "\n"))
	}
	base := "http://127.0.0.1:" + itoa(port)
	c := oai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey("x"), option.WithMaxRetries(0))
	rctx, rcancel := context.WithTimeout(ctx, time.Minute)
	defer rcancel()

	want := strings.Join(cloudtest.Tokens(7), "")
	regions := map[string]string{"claude": "eu", "gemini": "us", "mistral": "eu", "gpt-eu": "eu"}
	for model, region := range regions {
		t.Run(model, func(t *testing.T) {
			var resp *http.Response
			r, err := c.Chat.Completions.New(rctx, oai.ChatCompletionNewParams{Model: model,
				Messages: []oai.ChatCompletionMessageParamUnion{oai.SystemMessage("Be brief."), oai.UserMessage("Hello!")}},
				option.WithResponseInto(&resp))
			if err != nil {
				t.Fatal(err)
			}
			if r.Model != model || r.Choices[0].Message.Content != want || r.Choices[0].FinishReason != "stop" ||
				r.Usage.CompletionTokens != 7 || r.Usage.PromptTokens <= 0 {
				t.Fatalf("answer = %+v", r)
			}
			if got := resp.Header.Get("X-Sluice-Region"); got != region {
				t.Fatalf("X-Sluice-Region = %q, want %q", got, region)
			}

			st := c.Chat.Completions.NewStreaming(rctx, oai.ChatCompletionNewParams{Model: model,
				Messages:      []oai.ChatCompletionMessageParamUnion{oai.UserMessage("Hello!")},
				StreamOptions: oai.ChatCompletionStreamOptionsParam{IncludeUsage: oai.Bool(true)}})
			var acc oai.ChatCompletionAccumulator
			for st.Next() {
				acc.AddChunk(st.Current())
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
			if acc.Choices[0].Message.Content != want || acc.Choices[0].FinishReason != "stop" || acc.Usage.CompletionTokens != 7 {
				t.Fatalf("streamed answer = %+v usage %+v", acc.Choices[0], acc.Usage)
			}

			tools := []oai.ChatCompletionToolUnionParam{oai.ChatCompletionFunctionTool(oai.FunctionDefinitionParam{Name: "get_weather",
				Parameters: oai.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}})}
			for _, stream := range []bool{true, false} {
				p := oai.ChatCompletionNewParams{Model: model, Tools: tools,
					Messages: []oai.ChatCompletionMessageParamUnion{oai.UserMessage("What is the weather in Paris?")}}
				var msg oai.ChatCompletionMessage
				var finish string
				if stream {
					st := c.Chat.Completions.NewStreaming(rctx, p)
					var acc oai.ChatCompletionAccumulator
					for st.Next() {
						acc.AddChunk(st.Current())
					}
					if err := st.Err(); err != nil {
						t.Fatal(err)
					}
					msg, finish = acc.Choices[0].Message, acc.Choices[0].FinishReason
				} else {
					r, err := c.Chat.Completions.New(rctx, p)
					if err != nil {
						t.Fatal(err)
					}
					msg, finish = r.Choices[0].Message, r.Choices[0].FinishReason
				}
				if finish != "tool_calls" || len(msg.ToolCalls) != 1 || msg.ToolCalls[0].Function.Name != "get_weather" ||
					msg.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` || msg.ToolCalls[0].ID == "" {
					t.Fatalf("stream=%v tool call: finish %q %+v", stream, finish, msg)
				}
				// Send the call and its result back: each provider accepts the round trip.
				p.Messages = append(p.Messages, msg.ToParam(), oai.ToolMessage("18 C", msg.ToolCalls[0].ID))
				p.Messages = append(p.Messages, oai.UserMessage("Thanks."))
				if _, err := c.Chat.Completions.New(rctx, p); err != nil {
					t.Fatalf("stream=%v: the tool round trip: %v", stream, err)
				}
			}
		})
	}

	// A provider that refuses before the first token, with another model of its tier
	// allowed, hands the request to that one (a fallback): the client gets an answer.
	mistral.Fail(openaitest.Failure{Status: 429, RetryAfter: 2})
	var fresp *http.Response
	fr, err := c.Chat.Completions.New(rctx, oai.ChatCompletionNewParams{Model: "mistral",
		Messages: []oai.ChatCompletionMessageParamUnion{oai.UserMessage("Hello!")}}, option.WithResponseInto(&fresp))
	if err != nil || fr.Choices[0].Message.Content == "" {
		t.Fatalf("a rate-limited provider with a fallback: %v", err)
	}
	if route := fresp.Header.Get("X-Sluice-Route"); !strings.Contains(route, "attempts=2") {
		t.Errorf("fallback: X-Sluice-Route %q, want two attempts", route)
	}

	// A provider's refusal with nowhere else to go reaches the client in OpenAI's shape:
	// the overloaded 529 as a 503 with Retry-After.
	claude.Fail(anthropictest.Failure{Status: 529})
	_, err = c.Chat.Completions.New(rctx, oai.ChatCompletionNewParams{Model: "claude",
		Messages: []oai.ChatCompletionMessageParamUnion{oai.UserMessage("Hello!")}})
	var ae *oai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 503 || ae.Code != "provider_overloaded" || ae.Response.Header.Get("Retry-After") == "" {
		t.Fatalf("overloaded provider: %v", err)
	}

	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("exit code %d", c)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
}
