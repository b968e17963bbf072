package compress

import (
	"errors"
	"fmt"

	"github.com/sluice-llm/sluice/internal/jsonx"
	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fastjson"
)

// stringContents reports, per message, whether its content is a plain string in the
// client's body (an array of parts, with images or audio, is left untouched). Without
// a body, every message without images is.
func stringContents(r *models.Request) ([]bool, error) {
	out := make([]bool, len(r.Messages))
	if len(r.Body) == 0 {
		for i := range r.Messages {
			out[i] = len(r.Messages[i].Images) == 0
		}
		return out, nil
	}
	var p fastjson.Parser
	v, err := p.ParseBytes(r.Body)
	if err != nil {
		return nil, fmt.Errorf("compress: request body: %w", err)
	}
	arr := v.GetArray("messages")
	if len(arr) != len(out) {
		return nil, errBody
	}
	for i := range out {
		c := arr[i].Get("content")
		out[i] = c != nil && c.Type() == fastjson.TypeString
	}
	return out, nil
}

var errBody = errors.New("compress: request body has no messages array matching the request")

// setMessages returns body with the content of each changed message replaced: the
// messages array is re-encoded, each message keeping its other fields as sent.
func setMessages(body []byte, contents []string, changed []bool) ([]byte, error) {
	var p fastjson.Parser
	v, err := p.ParseBytes(body)
	if err != nil {
		return nil, fmt.Errorf("compress: request body: %w", err)
	}
	arr := v.GetArray("messages")
	if len(arr) != len(contents) {
		return nil, errBody
	}
	out := make([]byte, 0, len(body))
	out = append(out, '[')
	var tmp []byte
	for i, m := range arr {
		if i > 0 {
			out = append(out, ',')
		}
		tmp = m.MarshalTo(tmp[:0])
		if !changed[i] {
			out = append(out, tmp...)
			continue
		}
		if c := m.Get("content"); c == nil || c.Type() != fastjson.TypeString {
			return nil, errBody
		}
		msg, err := jsonx.Set(nil, tmp, "content", jsonx.AppendString(nil, contents[i]))
		if err != nil {
			return nil, fmt.Errorf("compress: message %d: %w", i, err)
		}
		out = append(out, msg...)
	}
	out = append(out, ']')
	b, err := jsonx.Set(nil, body, "messages", out)
	if err != nil {
		return nil, fmt.Errorf("compress: request body: %w", err)
	}
	return b, nil
}

// setPrompt returns body with its prompt replaced by p (a string).
func setPrompt(body []byte, p string) ([]byte, error) {
	b, err := jsonx.Set(nil, body, "prompt", jsonx.AppendString(nil, p))
	if err != nil {
		return nil, fmt.Errorf("compress: request body: %w", err)
	}
	return b, nil
}
