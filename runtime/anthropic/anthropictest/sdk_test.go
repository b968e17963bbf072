package anthropictest_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/sluice-llm/sluice/runtime/anthropic/anthropictest"
	"github.com/sluice-llm/sluice/runtime/cloudtest"
)

// These tests drive the fake with Anthropic's official Go SDK: if the SDK reads its
// answers, streams and errors, the fake speaks the API's wire format.

func client(s *anthropictest.Server) anthropic.Client {
	return anthropic.NewClient(option.WithAPIKey("test-key"), option.WithBaseURL(s.URL), option.WithMaxRetries(0))
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func params(stream bool) anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model:     "claude-test",
		MaxTokens: 64,
		System:    []anthropic.TextBlockParam{{Text: "You are terse."}},
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Write about the sea."))},
	}
}

func TestSDKMessage(t *testing.T) {
	s := anthropictest.New(anthropictest.Options{ReplyTokens: 12})
	defer s.Close()
	c := client(s)
	msg, err := c.Messages.New(ctx(t), params(false))
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join(cloudtest.Tokens(12), "")
	if len(msg.Content) != 1 || msg.Content[0].Type != "text" || msg.Content[0].Text != want {
		t.Fatalf("content = %+v, want one text block %q", msg.Content, want)
	}
	if msg.StopReason != anthropic.StopReasonEndTurn || msg.Role != "assistant" || !strings.HasPrefix(msg.ID, "msg_") {
		t.Fatalf("message = %+v", msg)
	}
	if msg.Usage.InputTokens <= 0 || msg.Usage.OutputTokens != 12 {
		t.Fatalf("usage = %+v", msg.Usage)
	}
	got, _ := s.LastRequest()
	if got.SystemText != "You are terse." || got.LastText() != "Write about the sea." || *got.MaxTokens != 64 {
		t.Fatalf("the fake decoded %+v", got)
	}
}

func TestSDKStreamAccumulates(t *testing.T) {
	s := anthropictest.New(anthropictest.Options{ReplyTokens: 9,
		Reply: func(r *anthropictest.Request) anthropictest.Reply {
			return anthropictest.Reply{Text: "Let me check.", ToolCalls: []anthropictest.ToolUse{
				{Name: "get_weather", Input: `{"city":"Paris","unit":"celsius"}`}}}
		}})
	defer s.Close()
	c := client(s)
	p := params(true)
	p.Tools = []anthropic.ToolUnionParam{anthropic.ToolUnionParamOfTool(anthropic.ToolInputSchemaParam{
		Properties: map[string]any{"city": map[string]any{"type": "string"}}, Required: []string{"city"}}, "get_weather")}
	st := c.Messages.NewStreaming(ctx(t), p)
	var msg anthropic.Message
	events := map[string]int{}
	for st.Next() {
		ev := st.Current()
		events[ev.Type]++
		if err := msg.Accumulate(ev); err != nil {
			t.Fatalf("accumulate %s: %v", ev.Type, err)
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"} {
		if events[typ] == 0 {
			t.Fatalf("no %s event: %v", typ, events)
		}
	}
	if len(msg.Content) != 2 || msg.Content[0].Text != "Let me check." {
		t.Fatalf("content = %+v", msg.Content)
	}
	tu := msg.Content[1].AsToolUse()
	var in map[string]string
	if err := json.Unmarshal(tu.Input, &in); err != nil || tu.Name != "get_weather" || in["city"] != "Paris" || !strings.HasPrefix(tu.ID, "toolu_") {
		t.Fatalf("tool use = %+v (%v)", tu, err)
	}
	if msg.StopReason != anthropic.StopReasonToolUse || msg.Usage.OutputTokens <= 0 || msg.Usage.InputTokens <= 0 {
		t.Fatalf("stop %q usage %+v", msg.StopReason, msg.Usage)
	}
}

func TestSDKToolResultRoundTrip(t *testing.T) {
	s := anthropictest.New(anthropictest.Options{})
	defer s.Close()
	c := client(s)
	p := params(false)
	p.Tools = []anthropic.ToolUnionParam{anthropic.ToolUnionParamOfTool(anthropic.ToolInputSchemaParam{
		Properties: map[string]any{"city": map[string]any{"type": "string"}}}, "get_weather")}
	p.Messages = append(p.Messages,
		anthropic.NewAssistantMessage(anthropic.NewToolUseBlock("toolu_1", map[string]any{"city": "Paris"}, "get_weather")),
		anthropic.NewUserMessage(anthropic.NewToolResultBlock("toolu_1", "18 degrees", false)))
	if _, err := c.Messages.New(ctx(t), p); err != nil {
		t.Fatalf("a valid tool round trip: %v", err)
	}
	// A tool result that answers no tool_use is refused, as the API refuses it.
	p.Messages[2] = anthropic.NewUserMessage(anthropic.NewToolResultBlock("toolu_other", "18 degrees", false))
	_, err := c.Messages.New(ctx(t), p)
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Type() != "invalid_request_error" || !strings.Contains(ae.Message, "tool_use_id") {
		t.Fatalf("unanswered tool result: %v", err)
	}
}

func TestSDKErrors(t *testing.T) {
	s := anthropictest.New(anthropictest.Options{ContextTokens: 50})
	defer s.Close()
	c := client(s)
	cases := []struct {
		fail   *anthropictest.Failure
		long   bool
		status int
		typ    string
		msg    string
	}{
		{fail: &anthropictest.Failure{Status: 429, RetryAfter: 7}, status: 429, typ: "rate_limit_error"},
		{fail: &anthropictest.Failure{Status: 529}, status: 529, typ: "overloaded_error", msg: "Overloaded"},
		{fail: &anthropictest.Failure{Status: 500}, status: 500, typ: "api_error"},
		{long: true, status: 400, typ: "invalid_request_error", msg: "prompt is too long"},
	}
	for _, tc := range cases {
		if tc.fail != nil {
			s.Fail(*tc.fail)
		}
		p := params(false)
		if tc.long {
			p.Messages = []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(strings.Repeat("long prompt ", 100)))}
		}
		_, err := c.Messages.New(ctx(t), p)
		var ae *anthropic.Error
		if !errors.As(err, &ae) || ae.StatusCode != tc.status || string(ae.Type()) != tc.typ || !strings.Contains(ae.Message, tc.msg) {
			t.Fatalf("want %d %s, got %v", tc.status, tc.typ, err)
		}
		if tc.status == 429 && ae.Response.Header.Get("retry-after") != "7" {
			t.Fatalf("429 without retry-after: %v", ae.Response.Header)
		}
		if ae.RequestID == "" && ae.Response.Header.Get("request-id") == "" {
			t.Fatalf("no request id")
		}
	}
	// A bad key.
	bad := anthropic.NewClient(option.WithAPIKey("wrong"), option.WithBaseURL(s.URL), option.WithMaxRetries(0))
	_, err := bad.Messages.New(ctx(t), params(false))
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != 401 || ae.Type() != "authentication_error" {
		t.Fatalf("bad key: %v", err)
	}
}

func TestSDKStreamErrorEvent(t *testing.T) {
	s := anthropictest.New(anthropictest.Options{ReplyTokens: 10})
	defer s.Close()
	s.Fail(anthropictest.Failure{Status: 529, InStream: true, AfterTokens: 3})
	c := client(s)
	st := c.Messages.NewStreaming(ctx(t), params(true))
	var text strings.Builder
	for st.Next() {
		if d := st.Current().AsContentBlockDelta(); d.Delta.Type == "text_delta" {
			text.WriteString(d.Delta.Text)
		}
	}
	err := st.Err()
	if err == nil || !strings.Contains(err.Error(), "overloaded_error") {
		t.Fatalf("stream error = %v", err)
	}
	if got, want := text.String(), strings.Join(cloudtest.Tokens(3), ""); got != want {
		t.Fatalf("text before the error = %q, want %q", got, want)
	}
}

func TestSDKUnknownFieldRefused(t *testing.T) {
	s := anthropictest.New(anthropictest.Options{})
	defer s.Close()
	c := client(s)
	_, err := c.Messages.New(ctx(t), params(false), option.WithJSONSet("frequency_penalty", 0.5))
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != 400 || !strings.Contains(ae.Message, "frequency_penalty: Extra inputs are not permitted") {
		t.Fatalf("unknown field: %v", err)
	}
}
