package anthropic

import (
	"encoding/base64"
	"strconv"

	"github.com/sluice-llm/sluice/internal/jsonx"
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/runtime/internal/cloud"
)

// encodeRequest writes r as a Messages API request body for model.
//
// System and developer messages (wherever they are) become the system prompt; tool
// results become tool_result blocks of a user turn; an assistant's tool calls become
// tool_use blocks; consecutive turns of one role are merged into one message, as the
// API wants. Images travel as base64 image blocks before the text of their message.
// Sampling: max_tokens defaults to defMax (the API requires it); temperature is clamped
// to Anthropic's [0, 1]; top_p is sent only without temperature (recent models take one
// or the other); seed and the penalties have no Anthropic equivalent and are dropped.
func encodeRequest(dst []byte, model string, r *models.Request, defMax int) ([]byte, error) {
	dst = append(dst, `{"model":`...)
	dst = jsonx.AppendString(dst, model)
	dst = append(dst, `,"max_tokens":`...)
	maxTokens := r.Sampling.MaxTokens
	if maxTokens <= 0 {
		maxTokens = defMax
	}
	dst = strconv.AppendInt(dst, int64(maxTokens), 10)

	// The system prompt: every system/developer message, in order.
	first := true
	for i := range r.Messages {
		m := &r.Messages[i]
		if (m.Role != "system" && m.Role != "developer") || m.Content == "" {
			continue
		}
		if first {
			dst = append(dst, `,"system":"`...)
			first = false
		} else {
			dst = append(dst, `\n\n`...)
		}
		dst = appendInner(dst, m.Content)
	}
	if !first {
		dst = append(dst, '"')
	}

	dst = append(dst, `,"messages":[`...)
	var err error
	w := msgWriter{b: dst}
	switch r.Kind {
	case models.KindChat:
		err = w.messages(r.Messages)
	case models.KindCompletion:
		// Completions have no Messages equivalent: the prompt becomes one user turn.
		w.block("user")
		w.b = appendText(w.b, joinPrompt(r.Prompt))
	default:
		return nil, models.Errorf(models.ErrInvalid, "anthropic: %s requests are not supported", r.Kind)
	}
	if err != nil {
		return nil, err
	}
	dst = w.close()
	dst = append(dst, ']')

	if r.Stream {
		dst = append(dst, `,"stream":true`...)
	}
	sp := &r.Sampling
	if sp.Temperature != nil {
		t := min(max(*sp.Temperature, 0), 1)
		dst = append(dst, `,"temperature":`...)
		dst = strconv.AppendFloat(dst, t, 'g', -1, 64)
	} else if sp.TopP != nil {
		dst = append(dst, `,"top_p":`...)
		dst = strconv.AppendFloat(dst, *sp.TopP, 'g', -1, 64)
	}
	if len(sp.Stop) > 0 {
		dst = append(dst, `,"stop_sequences":[`...)
		for i, s := range sp.Stop {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = jsonx.AppendString(dst, s)
		}
		dst = append(dst, ']')
	}
	return appendTools(dst, r)
}

func joinPrompt(p []string) string {
	switch len(p) {
	case 0:
		return ""
	case 1:
		return p[0]
	}
	n := 0
	for _, s := range p {
		n += len(s) + 1
	}
	b := make([]byte, 0, n)
	for i, s := range p {
		if i > 0 {
			b = append(b, '\n')
		}
		b = append(b, s...)
	}
	return string(b)
}

// appendTools writes tools (OpenAI function tools → name, description, input_schema)
// and tool_choice (auto → auto, required → any, none → none, a function → tool).
func appendTools(dst []byte, r *models.Request) ([]byte, error) {
	tools, err := cloud.ParseTools(r.Tools)
	if err != nil {
		return nil, models.InvalidParam("tools", "%v", err)
	}
	choice, err := cloud.ParseToolChoice(r.ToolChoice)
	if err != nil {
		return nil, models.InvalidParam("tool_choice", "%v", err)
	}
	if len(tools) == 0 {
		return append(dst, '}'), nil
	}
	dst = append(dst, `,"tools":[`...)
	for i, t := range tools {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = jsonx.AppendString(dst, t.Name)
		if t.Description != "" {
			dst = append(dst, `,"description":`...)
			dst = jsonx.AppendString(dst, t.Description)
		}
		dst = append(dst, `,"input_schema":`...)
		if len(t.Parameters) > 2 {
			dst = append(dst, t.Parameters...)
		} else {
			dst = append(dst, `{"type":"object","properties":{}}`...)
		}
		dst = append(dst, '}')
	}
	dst = append(dst, ']')
	// OpenAI's parallel_tool_calls:false is Anthropic's disable_parallel_tool_use, a
	// field of tool_choice (auto when the client chose none).
	serial := false
	if s, e, ok := jsonx.Find(r.Body, "parallel_tool_calls"); ok && string(r.Body[s:e]) == "false" {
		serial = true
		if choice.Mode == "" {
			choice.Mode = "auto"
		}
	}
	switch choice.Mode {
	case "auto":
		dst = append(dst, `,"tool_choice":{"type":"auto"`...)
	case "none":
		dst = append(dst, `,"tool_choice":{"type":"none"`...)
		serial = false
	case "required":
		dst = append(dst, `,"tool_choice":{"type":"any"`...)
	case "function":
		dst = append(dst, `,"tool_choice":{"type":"tool","name":`...)
		dst = jsonx.AppendString(dst, choice.Function)
	}
	if choice.Mode != "" {
		if serial {
			dst = append(dst, `,"disable_parallel_tool_use":true`...)
		}
		dst = append(dst, '}')
	}
	return append(dst, '}'), nil
}

// msgWriter writes the messages array, opening a message at the first block of a role
// and merging consecutive blocks of the same role into it.
type msgWriter struct {
	b    []byte
	role string
	open bool
	n    int // blocks in the open message
}

// block prepares for one more content block of role.
func (w *msgWriter) block(role string) {
	if !w.open || w.role != role {
		if w.open {
			w.b = append(w.b, "]}"...)
			w.b = append(w.b, ',')
		}
		w.b = append(w.b, `{"role":"`...)
		w.b = append(w.b, role...)
		w.b = append(w.b, `","content":[`...)
		w.role, w.open, w.n = role, true, 0
	}
	if w.n > 0 {
		w.b = append(w.b, ',')
	}
	w.n++
}

func (w *msgWriter) close() []byte {
	if w.open {
		w.b = append(w.b, "]}"...)
		w.open = false
	}
	return w.b
}

func (w *msgWriter) messages(msgs []models.Message) error {
	for i := range msgs {
		m := &msgs[i]
		switch m.Role {
		case "system", "developer":
			// In the system prompt.
		case "user":
			for _, img := range m.Images {
				mime := cloud.ImageMIME(img)
				if mime == "" {
					return models.InvalidParam("messages["+strconv.Itoa(i)+"].content",
						"images must be PNG, JPEG, GIF or WebP")
				}
				w.block("user")
				w.b = append(w.b, `{"type":"image","source":{"type":"base64","media_type":"`...)
				w.b = append(w.b, mime...)
				w.b = append(w.b, `","data":"`...)
				w.b = base64.StdEncoding.AppendEncode(w.b, img)
				w.b = append(w.b, `"}}`...)
			}
			if m.Content != "" {
				w.block("user")
				w.b = appendText(w.b, m.Content)
			}
		case "assistant":
			if m.Content != "" {
				w.block("assistant")
				w.b = appendText(w.b, m.Content)
			}
			if len(m.ToolCalls) > 0 {
				calls, err := cloud.ParseToolCalls(m.ToolCalls)
				if err != nil {
					return models.InvalidParam("messages["+strconv.Itoa(i)+"].tool_calls", "%v", err)
				}
				for _, c := range calls {
					if c.ID == "" {
						return models.InvalidParam("messages["+strconv.Itoa(i)+"].tool_calls", "tool calls need an id")
					}
					w.block("assistant")
					w.b = append(w.b, `{"type":"tool_use","id":`...)
					w.b = jsonx.AppendString(w.b, c.ID)
					w.b = append(w.b, `,"name":`...)
					w.b = jsonx.AppendString(w.b, c.Name)
					w.b = append(w.b, `,"input":`...)
					w.b = append(w.b, c.Args...)
					w.b = append(w.b, '}')
				}
			}
		case "tool", "function":
			if m.ToolCallID == "" {
				return models.InvalidParam("messages["+strconv.Itoa(i)+"].tool_call_id",
					"a tool message needs the tool_call_id it answers")
			}
			w.block("user")
			w.b = append(w.b, `{"type":"tool_result","tool_use_id":`...)
			w.b = jsonx.AppendString(w.b, m.ToolCallID)
			if m.Content != "" {
				w.b = append(w.b, `,"content":`...)
				w.b = jsonx.AppendString(w.b, m.Content)
			}
			w.b = append(w.b, '}')
		default:
			return models.InvalidParam("messages["+strconv.Itoa(i)+"].role", "role %q is not supported", m.Role)
		}
	}
	return nil
}

func appendText(dst []byte, s string) []byte {
	dst = append(dst, `{"type":"text","text":`...)
	dst = jsonx.AppendString(dst, s)
	return append(dst, '}')
}

// appendInner appends s JSON-escaped, without the quotes.
func appendInner(dst []byte, s string) []byte {
	n := len(dst)
	dst = jsonx.AppendString(dst, s)
	// Drop the quotes AppendString wrote.
	copy(dst[n:], dst[n+1:len(dst)-1])
	return dst[:len(dst)-2]
}
