package openaitest_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"
	"github.com/sluice-llm/sluice/runtime/cloudtest"
	"github.com/sluice-llm/sluice/runtime/openai/openaitest"
)

// These tests drive each flavour of the fake with OpenAI's official Go SDK (its azure
// package for Azure): if the SDK reads the answers, streams and errors, the fake speaks
// the wire format.

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func client(s *openaitest.Server, f openaitest.Flavor, key string) oai.Client {
	if f == openaitest.Azure {
		return oai.NewClient(azure.WithEndpoint(s.URL, "2024-10-21"), azure.WithAPIKey(key), azure.WithUnsafeAllowHTTP(),
			option.WithMaxRetries(0))
	}
	return oai.NewClient(option.WithBaseURL(s.URL), option.WithAPIKey(key), option.WithMaxRetries(0))
}

// body is the error answer's body, which the SDK keeps on the response.
func body(ae *oai.Error) string {
	b, _ := io.ReadAll(ae.Response.Body)
	return string(b)
}

var flavors = map[string]openaitest.Flavor{"openai": openaitest.OpenAI, "azure": openaitest.Azure, "mistral": openaitest.Mistral}

func params() oai.ChatCompletionNewParams {
	return oai.ChatCompletionNewParams{Model: "gpt-test", MaxTokens: oai.Int(64),
		Messages: []oai.ChatCompletionMessageParamUnion{oai.SystemMessage("You are terse."), oai.UserMessage("Write about the sea.")}}
}

func TestSDKCompletion(t *testing.T) {
	for name, f := range flavors {
		t.Run(name, func(t *testing.T) {
			s := openaitest.New(openaitest.Options{Flavor: f, ReplyTokens: 12, Deployments: []string{"gpt-test"}})
			defer s.Close()
			c := client(s, f, "test-key")
			resp, err := c.Chat.Completions.New(ctx(t), params())
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Choices) != 1 || resp.Choices[0].Message.Content != strings.Join(cloudtest.Tokens(12), "") ||
				resp.Choices[0].FinishReason != "stop" || resp.Usage.CompletionTokens != 12 || resp.Usage.PromptTokens <= 0 {
				t.Fatalf("response = %+v", resp)
			}
			got, _ := s.LastRequest()
			if got.LastText() != "Write about the sea." || (f == openaitest.Azure && got.Deployment != "gpt-test") {
				t.Fatalf("the fake decoded %+v", got)
			}
		})
	}
}

func TestSDKStreamWithTools(t *testing.T) {
	for name, f := range flavors {
		t.Run(name, func(t *testing.T) {
			s := openaitest.New(openaitest.Options{Flavor: f, Reply: func(*openaitest.Request) openaitest.Reply {
				return openaitest.Reply{Text: "Checking.", ToolCalls: []openaitest.Call{{Name: "get_weather", Args: `{"city":"Paris","unit":"celsius"}`}}}
			}})
			defer s.Close()
			c := client(s, f, "test-key")
			p := params()
			p.Tools = []oai.ChatCompletionToolUnionParam{oai.ChatCompletionFunctionTool(oai.FunctionDefinitionParam{Name: "get_weather",
				Parameters: oai.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}})}
			if f != openaitest.Mistral {
				p.StreamOptions = oai.ChatCompletionStreamOptionsParam{IncludeUsage: oai.Bool(true)}
			}
			st := c.Chat.Completions.NewStreaming(ctx(t), p)
			var acc oai.ChatCompletionAccumulator
			for st.Next() {
				acc.AddChunk(st.Current())
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
			if len(acc.Choices) != 1 {
				t.Fatalf("accumulated %+v", acc.ChatCompletion)
			}
			ch := acc.Choices[0]
			if ch.Message.Content != "Checking." || ch.FinishReason != "tool_calls" || len(ch.Message.ToolCalls) != 1 ||
				ch.Message.ToolCalls[0].Function.Name != "get_weather" || ch.Message.ToolCalls[0].Function.Arguments != `{"city":"Paris","unit":"celsius"}` {
				t.Fatalf("choice = %+v", ch)
			}
			if acc.Usage.CompletionTokens <= 0 || acc.Usage.PromptTokens <= 0 {
				t.Fatalf("usage = %+v", acc.Usage)
			}
		})
	}
}

func TestSDKErrors(t *testing.T) {
	for name, f := range flavors {
		t.Run(name, func(t *testing.T) {
			s := openaitest.New(openaitest.Options{Flavor: f, ContextTokens: 50})
			defer s.Close()
			c := client(s, f, "test-key")
			s.Fail(openaitest.Failure{Status: 429, RetryAfter: 6})
			_, err := c.Chat.Completions.New(ctx(t), params())
			var ae *oai.Error
			if !errors.As(err, &ae) || ae.StatusCode != 429 || ae.Response.Header.Get("retry-after") != "6" {
				t.Fatalf("429: %v", err)
			}
			p := params()
			p.Messages = []oai.ChatCompletionMessageParamUnion{oai.UserMessage(strings.Repeat("long prompt ", 100))}
			_, err = c.Chat.Completions.New(ctx(t), p)
			if !errors.As(err, &ae) || ae.StatusCode != 400 || !strings.Contains(body(ae), "context length") {
				t.Fatalf("context: %v", err)
			}
			bad := client(s, f, "wrong")
			if _, err = bad.Chat.Completions.New(ctx(t), params()); !errors.As(err, &ae) || ae.StatusCode != 401 {
				t.Fatalf("bad key: %v", err)
			}
		})
	}
}

func TestSDKRefusals(t *testing.T) {
	// OpenAI refuses unknown fields with 400; Mistral refuses OpenAI-only ones with 422.
	s := openaitest.New(openaitest.Options{})
	defer s.Close()
	c := client(s, openaitest.OpenAI, "test-key")
	_, err := c.Chat.Completions.New(ctx(t), params(), option.WithJSONSet("bogus", 1))
	var ae *oai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 400 || !strings.Contains(ae.Message, "Unrecognized request argument supplied: bogus") {
		t.Fatalf("unknown field: %v", err)
	}
	m := openaitest.New(openaitest.Options{Flavor: openaitest.Mistral})
	defer m.Close()
	c = client(m, openaitest.Mistral, "test-key")
	p := params()
	p.StreamOptions = oai.ChatCompletionStreamOptionsParam{IncludeUsage: oai.Bool(true)}
	st := c.Chat.Completions.NewStreaming(ctx(t), p)
	for st.Next() {
	}
	if err := st.Err(); !errors.As(err, &ae) || ae.StatusCode != 422 || !strings.Contains(body(ae), "extra_forbidden") {
		t.Fatalf("mistral stream_options: %v", err)
	}
	// A tool result without the call it answers.
	p = params()
	p.Messages = append(p.Messages, oai.ToolMessage("18 C", "call_x"))
	if _, err := c.Chat.Completions.New(ctx(t), p); !errors.As(err, &ae) || ae.StatusCode != 400 {
		t.Fatalf("orphan tool message: %v", err)
	}
}
