package fakecloud

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// The official OpenAI Go SDK parses everything the fake sends: its wire format is
// OpenAI's.
func TestWithOpenAISDK(t *testing.T) {
	s, err := Start(Options{Name: "t", MaxTokens: 5, ContextWindow: 200,
		Fail: func(n int) int { return map[int]int{5: 429, 6: 500}[n] }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := oai.NewClient(option.WithBaseURL(s.URL+"/"), option.WithAPIKey("sk-test"), option.WithMaxRetries(0))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	params := oai.ChatCompletionNewParams{Model: "gpt-4o-mini", User: oai.String("u1"),
		Messages: []oai.ChatCompletionMessageParamUnion{oai.UserMessage("hi")}}

	// 1: whole answer.
	resp, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Message.Content != "Sure, here is a" || resp.Usage.CompletionTokens != 5 || resp.Choices[0].FinishReason != "stop" {
		t.Fatalf("answer = %+v", resp)
	}
	// 2: streamed, with usage.
	params.StreamOptions = oai.ChatCompletionStreamOptionsParam{IncludeUsage: oai.Bool(true)}
	st := c.Chat.Completions.NewStreaming(ctx, params)
	acc := oai.ChatCompletionAccumulator{}
	for st.Next() {
		acc.AddChunk(st.Current())
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.Choices[0].Message.Content != "Sure, here is a" || acc.Usage.TotalTokens == 0 {
		t.Fatalf("stream = %+v", acc.ChatCompletion)
	}
	// 3: a streamed tool call.
	params.Tools = []oai.ChatCompletionToolUnionParam{oai.ChatCompletionFunctionTool(oai.FunctionDefinitionParam{Name: "search"})}
	st = c.Chat.Completions.NewStreaming(ctx, params)
	acc = oai.ChatCompletionAccumulator{}
	for st.Next() {
		acc.AddChunk(st.Current())
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	tc := acc.Choices[0].Message.ToolCalls
	if len(tc) != 1 || tc[0].Function.Name != "search" || tc[0].Function.Arguments != `{"query":"sluice"}` || acc.Choices[0].FinishReason != "tool_calls" {
		t.Fatalf("tool call = %+v", acc.Choices[0])
	}
	// 4: too long for the context window.
	long := params
	long.Tools = nil
	long.Messages = []oai.ChatCompletionMessageParamUnion{oai.UserMessage(strings.Repeat("x", 1000))}
	_, err = c.Chat.Completions.New(ctx, long)
	var ae *oai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Code != "context_length_exceeded" {
		t.Fatalf("context error = %v", err)
	}
	// 5 and 6: a rate limit with retry-after, then a server error.
	params.Tools = nil
	_, err = c.Chat.Completions.New(ctx, params)
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusTooManyRequests || ae.Response.Header.Get("retry-after") != "2" {
		t.Fatalf("429 = %v", err)
	}
	_, err = c.Chat.Completions.New(ctx, params)
	if !errors.As(err, &ae) || ae.StatusCode != 500 {
		t.Fatalf("500 = %v", err)
	}
	if reqs := s.Requests(); len(reqs) != 6 || reqs[0].User != "u1" || !reqs[2].Tools {
		t.Fatalf("recorded %+v", reqs)
	}
}

func TestLatency(t *testing.T) {
	s, err := Start(Options{TTFT: 50 * time.Millisecond, TokensPerSecond: 200, MaxTokens: 11})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := oai.NewClient(option.WithBaseURL(s.URL+"/"), option.WithAPIKey("k"), option.WithMaxRetries(0))
	start := time.Now()
	st := c.Chat.Completions.NewStreaming(context.Background(), oai.ChatCompletionNewParams{Model: "m",
		Messages: []oai.ChatCompletionMessageParamUnion{oai.UserMessage("hi")}})
	var first time.Duration
	for st.Next() {
		if first == 0 && len(st.Current().Choices) > 0 && st.Current().Choices[0].Delta.Content != "" {
			first = time.Since(start)
		}
	}
	total := time.Since(start)
	// Lower bounds only: the time to first token and 10 more tokens at 200/s.
	if first < 50*time.Millisecond || total < 100*time.Millisecond {
		t.Fatalf("first token after %v, done after %v", first, total)
	}
}
