package openai

import (
	"strconv"

	"github.com/sluice-llm/sluice/internal/jsonx"
	"github.com/sluice-llm/sluice/models"
)

// EncodeRequest writes r in OpenAI's wire format, for requests that did not arrive as
// OpenAI JSON (another front end, a batch job). The model field is left for the backend
// to splice in.
func EncodeRequest(dst []byte, r *models.Request) []byte {
	dst = append(dst, `{"model":""`...)
	switch r.Kind {
	case models.KindChat:
		dst = append(dst, `,"messages":[`...)
		for i, m := range r.Messages {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"role":`...)
			dst = jsonx.AppendString(dst, m.Role)
			dst = append(dst, `,"content":`...)
			dst = jsonx.AppendString(dst, m.Content)
			if m.Name != "" {
				dst = append(dst, `,"name":`...)
				dst = jsonx.AppendString(dst, m.Name)
			}
			if m.ToolCallID != "" {
				dst = append(dst, `,"tool_call_id":`...)
				dst = jsonx.AppendString(dst, m.ToolCallID)
			}
			if len(m.ToolCalls) > 0 {
				dst = append(dst, `,"tool_calls":`...)
				dst = append(dst, m.ToolCalls...)
			}
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	case models.KindCompletion:
		dst = append(dst, `,"prompt":`...)
		if len(r.Prompt) == 1 {
			dst = jsonx.AppendString(dst, r.Prompt[0]) // some engines take only a string
		} else {
			dst = appendStrings(dst, r.Prompt)
		}
	case models.KindEmbedding:
		dst = append(dst, `,"input":`...)
		dst = appendStrings(dst, r.Input)
	}
	if r.Stream {
		dst = append(dst, `,"stream":true`...)
	}
	sp := r.Sampling
	if sp.MaxTokens > 0 {
		dst = append(dst, `,"max_tokens":`...)
		dst = strconv.AppendInt(dst, int64(sp.MaxTokens), 10)
	}
	dst = appendFloat(dst, "temperature", sp.Temperature)
	dst = appendFloat(dst, "top_p", sp.TopP)
	dst = appendFloat(dst, "presence_penalty", sp.PresencePenalty)
	dst = appendFloat(dst, "frequency_penalty", sp.FrequencyPenalty)
	if sp.Seed != nil {
		dst = append(dst, `,"seed":`...)
		dst = strconv.AppendInt(dst, *sp.Seed, 10)
	}
	if len(sp.Stop) > 0 {
		dst = append(dst, `,"stop":`...)
		dst = appendStrings(dst, sp.Stop)
	}
	for _, f := range []struct {
		k string
		v []byte
	}{{"tools", r.Tools}, {"tool_choice", r.ToolChoice}, {"response_format", r.ResponseFormat}} {
		if len(f.v) > 0 {
			dst = append(dst, ',')
			dst = jsonx.AppendString(dst, f.k)
			dst = append(dst, ':')
			dst = append(dst, f.v...)
		}
	}
	return append(dst, '}')
}

func appendStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonx.AppendString(dst, s)
	}
	return append(dst, ']')
}

func appendFloat(dst []byte, k string, v *float64) []byte {
	if v == nil {
		return dst
	}
	dst = append(dst, ',')
	dst = jsonx.AppendString(dst, k)
	dst = append(dst, ':')
	return strconv.AppendFloat(dst, *v, 'g', -1, 64)
}
