package gateway

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"strconv"

	"github.com/sluice-llm/sluice/internal/jsonx"
	"github.com/sluice-llm/sluice/models"
)

func appendJSONString(b []byte, s string) []byte { return jsonx.AppendString(b, s) }

func appendUsage(b []byte, u models.Usage) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(u.PromptTokens), 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, int64(u.CompletionTokens), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(u.Total()), 10)
	b = append(b, `,"prompt_tokens_details":{"cached_tokens":`...)
	b = strconv.AppendInt(b, int64(u.CachedTokens), 10)
	b = append(b, '}')
	if c := u.Cost; c.Total() > 0 || c.Reference > 0 {
		b = append(b, `,"cost_usd":`...)
		b = strconv.AppendFloat(b, c.Total(), 'g', 6, 64)
		if c.ReferenceModel != "" {
			b = append(b, `,"reference_cost_usd":`...)
			b = strconv.AppendFloat(b, c.Reference, 'g', 6, 64)
			b = append(b, `,"reference_model":`...)
			b = appendJSONString(b, c.ReferenceModel)
		}
	}
	return append(b, '}')
}

// answer is what the gateway knows about a response it encodes itself.
type answer struct {
	id, model string
	created   int64
	kind      models.Kind
}

func (a *answer) head(b []byte, object string) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, a.id)
	b = append(b, `,"object":"`...)
	b = append(b, object...)
	b = append(b, `","created":`...)
	b = strconv.AppendInt(b, a.created, 10)
	b = append(b, `,"model":`...)
	return appendJSONString(b, a.model)
}

func appendFinish(b []byte, fr string) []byte {
	if fr == "" {
		return append(b, "null"...)
	}
	return appendJSONString(b, fr)
}

// appendFull encodes a whole (non-streamed) answer from structured parts.
func (a *answer) appendFull(b []byte, role, text string, toolCalls []byte, finish string, u models.Usage) []byte {
	if finish == "" {
		finish = "stop"
	}
	if a.kind == models.KindCompletion {
		b = a.head(b, "text_completion")
		b = append(b, `,"choices":[{"index":0,"text":`...)
		b = appendJSONString(b, text)
		b = append(b, `,"logprobs":null,"finish_reason":`...)
	} else {
		if role == "" {
			role = "assistant"
		}
		b = a.head(b, "chat.completion")
		b = append(b, `,"choices":[{"index":0,"message":{"role":`...)
		b = appendJSONString(b, role)
		b = append(b, `,"content":`...)
		if text == "" && len(toolCalls) > 0 {
			b = append(b, "null"...)
		} else {
			b = appendJSONString(b, text)
		}
		if len(toolCalls) > 0 {
			b = append(b, `,"tool_calls":`...)
			b = append(b, toolCalls...)
		}
		b = append(b, `},"finish_reason":`...)
	}
	b = appendFinish(b, finish)
	b = append(b, `}],"usage":`...)
	b = appendUsage(b, u)
	return append(b, '}')
}

// appendChunk encodes one streamed chunk from structured parts.
func (a *answer) appendChunk(b []byte, c *models.Chunk) []byte {
	if a.kind == models.KindCompletion {
		b = a.head(b, "text_completion")
		b = append(b, `,"choices":[{"index":0,"text":`...)
		b = appendJSONString(b, c.Text)
		b = append(b, `,"logprobs":null,"finish_reason":`...)
	} else {
		b = a.head(b, "chat.completion.chunk")
		b = append(b, `,"choices":[{"index":0,"delta":{`...)
		sep := false
		if c.Role != "" {
			b = append(b, `"role":`...)
			b = appendJSONString(b, c.Role)
			sep = true
		}
		if c.Text != "" || (c.Role != "" && len(c.ToolCalls) == 0) {
			if sep {
				b = append(b, ',')
			}
			b = append(b, `"content":`...)
			b = appendJSONString(b, c.Text)
			sep = true
		}
		if len(c.ToolCalls) > 0 {
			if sep {
				b = append(b, ',')
			}
			b = append(b, `"tool_calls":`...)
			b = append(b, c.ToolCalls...)
		}
		b = append(b, `},"finish_reason":`...)
	}
	b = appendFinish(b, c.FinishReason)
	return append(b, "}]}"...)
}

// appendUsageChunk encodes the final usage-only chunk of a stream.
func (a *answer) appendUsageChunk(b []byte, u models.Usage) []byte {
	obj := "chat.completion.chunk"
	if a.kind == models.KindCompletion {
		obj = "text_completion"
	}
	b = a.head(b, obj)
	b = append(b, `,"choices":[],"usage":`...)
	b = appendUsage(b, u)
	return append(b, '}')
}

// appendEmbeddings encodes an embeddings list.
func (a *answer) appendEmbeddings(b []byte, vecs [][]float32, format string, u models.Usage) []byte {
	b = append(b, `{"object":"list","data":[`...)
	for i, v := range vecs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"object":"embedding","index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"embedding":`...)
		if format == "base64" {
			raw := make([]byte, 4*len(v))
			for j, f := range v {
				binary.LittleEndian.PutUint32(raw[4*j:], math.Float32bits(f))
			}
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, raw)
			b = append(b, '"')
		} else {
			b = append(b, '[')
			for j, f := range v {
				if j > 0 {
					b = append(b, ',')
				}
				b = strconv.AppendFloat(b, float64(f), 'g', -1, 32)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	b = append(b, `],"model":`...)
	b = appendJSONString(b, a.model)
	b = append(b, `,"usage":{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(u.PromptTokens), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(u.PromptTokens), 10)
	return append(b, "}}"...)
}
