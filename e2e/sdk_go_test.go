package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

func client(st *stack) oai.Client {
	return oai.NewClient(option.WithBaseURL(st.URL+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
}

func chatParams(model string, maxTokens int64) oai.ChatCompletionNewParams {
	return oai.ChatCompletionNewParams{
		Model: model,
		Messages: []oai.ChatCompletionMessageParamUnion{
			oai.SystemMessage("You are a terse assistant."),
			oai.UserMessage("Say something about rivers."),
		},
		MaxTokens: oai.Int(maxTokens),
		Seed:      oai.Int(7),
	}
}

func TestGoSDK(t *testing.T) {
	st := startStack(t, stackOptions{ollama: true, upstream: true})
	c := client(st)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	for _, model := range []string{"tiny", "gpt-4o-mini", "tiny-upstream", "tiny-ollama"} {
		t.Run("chat/"+model, func(t *testing.T) {
			resp, err := c.Chat.Completions.New(ctx, chatParams(model, 16))
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Choices) != 1 || resp.Choices[0].Message.Content == "" {
				t.Fatalf("no content: %+v", resp)
			}
			if resp.Model != model {
				t.Errorf("model = %q, want the name the client asked for, %q", resp.Model, model)
			}
			if resp.Usage.PromptTokens <= 0 || resp.Usage.CompletionTokens <= 0 || resp.Usage.TotalTokens != resp.Usage.PromptTokens+resp.Usage.CompletionTokens {
				t.Errorf("usage = %+v", resp.Usage)
			}
			if resp.Choices[0].FinishReason == "" {
				t.Errorf("no finish reason")
			}
		})
		t.Run("stream/"+model, func(t *testing.T) {
			p := chatParams(model, 24)
			p.StreamOptions = oai.ChatCompletionStreamOptionsParam{IncludeUsage: oai.Bool(true)}
			s := c.Chat.Completions.NewStreaming(ctx, p)
			var acc oai.ChatCompletionAccumulator
			chunks, usageChunks := 0, 0
			for s.Next() {
				ch := s.Current()
				acc.AddChunk(ch)
				chunks++
				if ch.Model != model {
					t.Errorf("chunk model = %q, want %q", ch.Model, model)
				}
				if ch.Usage.TotalTokens > 0 {
					usageChunks++
					if len(ch.Choices) != 0 {
						t.Errorf("usage chunk has choices")
					}
				}
			}
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			if chunks < 3 || acc.Choices[0].Message.Content == "" {
				t.Fatalf("chunks = %d, content %q", chunks, acc.Choices[0].Message.Content)
			}
			if usageChunks != 1 {
				t.Fatalf("usage chunks = %d, want 1", usageChunks)
			}
			if acc.Usage.PromptTokens <= 0 || acc.Usage.CompletionTokens <= 0 {
				t.Fatalf("usage = %+v", acc.Usage)
			}
		})
	}

	t.Run("stream without usage", func(t *testing.T) {
		s := c.Chat.Completions.NewStreaming(ctx, chatParams("tiny", 8))
		for s.Next() {
			if s.Current().Usage.TotalTokens > 0 {
				t.Fatal("usage chunk sent although the client did not ask for it")
			}
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("completions", func(t *testing.T) {
		for _, model := range []string{"tiny", "tiny-ollama"} {
			resp, err := c.Completions.New(ctx, oai.CompletionNewParams{
				Model:     oai.CompletionNewParamsModel(model),
				Prompt:    oai.CompletionNewParamsPromptUnion{OfString: oai.String("Once upon a time")},
				MaxTokens: oai.Int(12),
			})
			if err != nil {
				t.Fatal(model, err)
			}
			if len(resp.Choices) != 1 || resp.Choices[0].Text == "" || resp.Usage.CompletionTokens <= 0 {
				t.Fatalf("%s: %+v", model, resp)
			}
		}
	})

	t.Run("embeddings", func(t *testing.T) {
		resp, err := c.Embeddings.New(ctx, oai.EmbeddingNewParams{
			Model: "tiny-embed",
			Input: oai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"first text", "second text"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Data) != 2 || len(resp.Data[0].Embedding) != 64 {
			t.Fatalf("embeddings: %d items, dim %d", len(resp.Data), len(resp.Data[0].Embedding))
		}
		if resp.Usage.PromptTokens <= 0 {
			t.Errorf("usage = %+v", resp.Usage)
		}
	})

	t.Run("models", func(t *testing.T) {
		page, err := c.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range page.Data {
			ids = append(ids, m.ID)
		}
		got := strings.Join(ids, ",")
		for _, want := range []string{"tiny", "gpt-4o-mini", "tiny-embed", "tiny-ollama"} {
			if !strings.Contains(got, want) {
				t.Errorf("models %s lack %s", got, want)
			}
		}
		m, err := c.Models.Get(ctx, "tiny")
		if err != nil || m.ID != "tiny" {
			t.Fatalf("get model: %v %+v", err, m)
		}
	})

	t.Run("errors", func(t *testing.T) {
		_, err := c.Chat.Completions.New(ctx, chatParams("no-such-model", 4))
		var apiErr *oai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" || apiErr.Param != "model" {
			t.Fatalf("unknown model: %v", err)
		}
		_, err = c.Embeddings.New(ctx, oai.EmbeddingNewParams{Model: "tiny", Input: oai.EmbeddingNewParamsInputUnion{OfString: oai.String("x")}})
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 {
			t.Fatalf("embeddings on a chat model: %v", err)
		}
		s := c.Chat.Completions.NewStreaming(ctx, chatParams("no-such-model", 4))
		for s.Next() {
		}
		if !errors.As(s.Err(), &apiErr) || apiErr.StatusCode != 404 {
			t.Fatalf("streaming unknown model: %v", s.Err())
		}
	})
}
