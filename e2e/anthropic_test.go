package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"
)

func anthropicClient(st *routedStack, key string) anthropic.Client {
	return anthropic.NewClient(option.WithBaseURL(st.URL), option.WithAPIKey(key), option.WithMaxRetries(0))
}

var weatherTool = anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{Name: "get_weather",
	Description: anthropic.String("The weather in a city"),
	InputSchema: anthropic.ToolInputSchemaParam{Properties: map[string]any{"city": map[string]any{"type": "string"}}}}}

// TestAnthropicGoSDK drives POST /v1/messages with the official Go SDK: text (whole and
// streamed) from the real llama-server, tools requested of it, tool use streamed back
// from the (OpenAI-speaking) cloud, a tool result sent back, and errors.
func TestAnthropicGoSDK(t *testing.T) {
	st := startRoutedStack(t, 0)
	c := anthropicClient(st, keyAny)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	params := anthropic.MessageNewParams{Model: "tiny", MaxTokens: 12,
		System:   []anthropic.TextBlockParam{{Text: "You are terse."}},
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Name a river."))},
		Metadata: anthropic.MetadataParam{UserID: anthropic.String("user-1")}}

	t.Run("message", func(t *testing.T) {
		m, err := c.Messages.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if m.Role != "assistant" || m.Model != "tiny" || len(m.Content) != 1 || m.Content[0].Type != "text" || m.Content[0].Text == "" {
			t.Fatalf("message = %+v", m)
		}
		// The tiny model never stops on its own: it runs to max_tokens.
		if m.StopReason != anthropic.StopReasonMaxTokens || m.Usage.OutputTokens != 12 || m.Usage.InputTokens == 0 {
			t.Fatalf("stop %q usage %+v", m.StopReason, m.Usage)
		}
	})

	t.Run("stream", func(t *testing.T) {
		s := c.Messages.NewStreaming(ctx, params)
		var m anthropic.Message
		types := map[string]int{}
		for s.Next() {
			ev := s.Current()
			types[ev.Type]++
			if err := m.Accumulate(ev); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		if types["message_start"] != 1 || types["content_block_start"] != 1 || types["content_block_delta"] < 2 ||
			types["content_block_stop"] != 1 || types["message_delta"] != 1 || types["message_stop"] != 1 {
			t.Fatalf("events = %v", types)
		}
		if m.Content[0].Text == "" || m.StopReason != anthropic.StopReasonMaxTokens || m.Usage.OutputTokens != 12 || m.Usage.InputTokens == 0 {
			t.Fatalf("accumulated = %+v", m)
		}
	})

	t.Run("tools offered to llama-server", func(t *testing.T) {
		p := params
		p.Tools = []anthropic.ToolUnionParam{weatherTool}
		p.ToolChoice = anthropic.ToolChoiceUnionParam{OfAuto: &anthropic.ToolChoiceAutoParam{}}
		m, err := c.Messages.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Content) == 0 || m.Usage.OutputTokens == 0 {
			t.Fatalf("message = %+v", m)
		}
	})

	t.Run("tool use from the cloud", func(t *testing.T) {
		p := params
		p.Model = "cloud-tools"
		p.Tools = []anthropic.ToolUnionParam{weatherTool}
		m, err := c.Messages.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if m.StopReason != anthropic.StopReasonToolUse || len(m.Content) != 1 || m.Content[0].Type != "tool_use" ||
			m.Content[0].Name != "get_weather" || string(m.Content[0].Input) != `{"query":"sluice"}` {
			t.Fatalf("message = %+v", m)
		}
		// Streamed: the tool call's arguments arrive as input_json_delta pieces.
		s := c.Messages.NewStreaming(ctx, p)
		var sm anthropic.Message
		deltas := 0
		for s.Next() {
			ev := s.Current()
			if ev.Type == "content_block_delta" && ev.Delta.Type == "input_json_delta" {
				deltas++
			}
			if err := sm.Accumulate(ev); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		tu := sm.Content[0]
		var in map[string]string
		if deltas < 2 || tu.Type != "tool_use" || tu.Name != "get_weather" || json.Unmarshal(tu.Input, &in) != nil || in["query"] != "sluice" ||
			sm.StopReason != anthropic.StopReasonToolUse {
			t.Fatalf("streamed tool use (%d deltas) = %+v", deltas, sm)
		}
		// The tool's result goes back as an OpenAI tool message with the call's id.
		p.Messages = append(p.Messages, sm.ToParam(), anthropic.NewUserMessage(anthropic.NewToolResultBlock(tu.ID, "18 degrees", false)))
		if _, err := c.Messages.New(ctx, p); err != nil {
			t.Fatal(err)
		}
		reqs := st.EU.Requests()
		last := string(reqs[len(reqs)-1].Body)
		if !strings.Contains(last, `"role":"tool","tool_call_id":"`+tu.ID+`","content":"18 degrees"`) ||
			!strings.Contains(last, `"tool_calls":[{"id":"`+tu.ID+`"`) {
			t.Fatalf("upstream body: %s", last)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, tt := range []struct {
			name   string
			c      anthropic.Client
			p      anthropic.MessageNewParams
			status int
			typ    string
		}{
			{"unknown model", c, func() anthropic.MessageNewParams { p := params; p.Model = "nope"; return p }(), 404, "not_found_error"},
			{"bad key", anthropicClient(st, "sk-wrong"), params, 401, "authentication_error"},
			{"residency", anthropicClient(st, keyLocal), func() anthropic.MessageNewParams { p := params; p.Model = "cloud-tools"; return p }(), 403, "permission_error"},
			{"bad temperature", c, func() anthropic.MessageNewParams { p := params; p.Temperature = anthropic.Float(3); return p }(), 400, "invalid_request_error"},
		} {
			_, err := tt.c.Messages.New(ctx, tt.p)
			var ae *anthropic.Error
			if !errors.As(err, &ae) || ae.StatusCode != tt.status || string(ae.Type()) != tt.typ {
				t.Errorf("%s: %v", tt.name, err)
			}
		}
	})
}
