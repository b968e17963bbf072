package gateway

import (
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/sluice-llm/sluice/internal/jsonx"
	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fastjson"
)

// parseAnthropic validates an Anthropic Messages request (POST /v1/messages) and fills
// r: the typed fields, and in r.Body an equivalent OpenAI chat body, since backends
// that speak OpenAI forward r.Body. Errors name the offending field the way Anthropic
// does (messages.0.content.1.type).
func parseAnthropic(p *fastjson.Parser, body []byte, r *models.Request) error {
	if len(body) == 0 {
		return models.InvalidParam("", "request body is empty: send a JSON object")
	}
	v, err := p.ParseBytes(body)
	if err != nil {
		return models.InvalidParam("", "request body is not valid JSON: %v", err)
	}
	if v.Type() != fastjson.TypeObject {
		return models.InvalidParam("", "request body must be a JSON object, got %s", v.Type())
	}
	r.Kind = models.KindChat
	model, err := str(v, "model", true)
	if err != nil {
		return err
	}
	if model == "" {
		return models.InvalidParam("model", "model: must not be empty")
	}
	r.Model = model
	n, ok, err := integer(v, "max_tokens")
	if err != nil {
		return err
	}
	if !ok {
		return models.InvalidParam("max_tokens", "max_tokens: Field required")
	}
	if n < 1 {
		return models.InvalidParam("max_tokens", "max_tokens: must be at least 1, got %d", n)
	}
	r.Sampling.MaxTokens = int(n)
	if r.Stream, err = boolean(v, "stream"); err != nil {
		return err
	}
	if r.Sampling.Temperature, err = number(v, "temperature", 0, 1); err != nil {
		return err
	}
	if r.Sampling.TopP, err = number(v, "top_p", 0, 1); err != nil {
		return err
	}
	if k, ok, err := integer(v, "top_k"); err != nil {
		return err
	} else if ok && k < 0 {
		return models.InvalidParam("top_k", "top_k: must be at least 0")
	}
	if s := v.Get("stop_sequences"); s != nil && s.Type() != fastjson.TypeNull {
		if r.Sampling.Stop, err = strOrStrings(v, "stop_sequences", false); err != nil {
			return err
		}
	}
	if md := v.Get("metadata"); md != nil && md.Type() != fastjson.TypeNull {
		if md.Type() != fastjson.TypeObject {
			return models.InvalidParam("metadata", "metadata: must be an object")
		}
		u, err := str(md, "user_id", false)
		if err != nil {
			return prefixParam(err, "metadata")
		}
		if u != "" {
			r.User = u
			if r.Tenant == "" {
				r.Tenant = u
			}
		}
	}

	b := make([]byte, 0, len(body)+64)
	b = append(b, `{"model":`...)
	b = jsonx.AppendString(b, model)
	b = append(b, `,"messages":[`...)
	mb := &msgBuilder{b: b}
	if sys := v.Get("system"); sys != nil && sys.Type() != fastjson.TypeNull {
		text, err := textOf(sys, "system")
		if err != nil {
			return err
		}
		mb.next()
		mb.b = append(mb.b, `{"role":"system","content":`...)
		mb.b = jsonx.AppendString(mb.b, text)
		mb.b = append(mb.b, '}')
		r.Messages = append(r.Messages, models.Message{Role: "system", Content: text})
	}
	mv := v.Get("messages")
	if mv == nil {
		return models.InvalidParam("messages", "messages: Field required")
	}
	arr, err := mv.Array()
	if err != nil {
		return models.InvalidParam("messages", "messages: must be an array")
	}
	if len(arr) == 0 {
		return models.InvalidParam("messages", "messages: at least one message is required")
	}
	for i, m := range arr {
		param := "messages." + strconv.Itoa(i)
		if err := appendAnthropicMessage(mb, m, param, r); err != nil {
			return err
		}
	}
	b = append(mb.b, ']')
	b = append(b, `,"max_tokens":`...)
	b = strconv.AppendInt(b, n, 10)
	if r.Stream {
		b = append(b, `,"stream":true`...)
	}
	if len(r.Sampling.Stop) > 0 {
		b = append(b, `,"stop":[`...)
		for i, s := range r.Sampling.Stop {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonx.AppendString(b, s)
		}
		b = append(b, ']')
	}
	if t := r.Sampling.Temperature; t != nil {
		b = append(b, `,"temperature":`...)
		b = strconv.AppendFloat(b, *t, 'g', -1, 64)
	}
	if t := r.Sampling.TopP; t != nil {
		b = append(b, `,"top_p":`...)
		b = strconv.AppendFloat(b, *t, 'g', -1, 64)
	}
	if r.User != "" {
		b = append(b, `,"user":`...)
		b = jsonx.AppendString(b, r.User)
	}
	if b, err = appendAnthropicTools(b, v, r); err != nil {
		return err
	}
	b = append(b, '}')
	r.Body = b
	return nil
}

// msgBuilder appends OpenAI messages to a JSON array being written.
type msgBuilder struct {
	b []byte
	n int
}

// next starts a message (a comma before every one but the first).
func (m *msgBuilder) next() {
	if m.n > 0 {
		m.b = append(m.b, ',')
	}
	m.n++
}

// textOf reads a string or an array of text blocks (system prompts, tool results).
func textOf(v *fastjson.Value, param string) (string, error) {
	switch v.Type() {
	case fastjson.TypeString:
		s, _ := v.StringBytes()
		return string(s), nil
	case fastjson.TypeArray:
		var sb strings.Builder
		blocks, _ := v.Array()
		for j, bl := range blocks {
			if bl.Type() != fastjson.TypeObject || string(bl.GetStringBytes("type")) != "text" {
				if bl.Type() == fastjson.TypeObject && string(bl.GetStringBytes("type")) == "image" {
					continue // images in tool results are not forwarded
				}
				return "", models.InvalidParam(param+"."+strconv.Itoa(j), "%s.%d: expected a text block", param, j)
			}
			if sb.Len() > 0 {
				sb.WriteByte('\n')
			}
			sb.Write(bl.GetStringBytes("text"))
		}
		return sb.String(), nil
	}
	return "", models.InvalidParam(param, "%s: must be a string or an array of text blocks", param)
}

// appendAnthropicMessage converts one message: tool results become OpenAI tool
// messages, tool_use blocks an assistant's tool_calls, images image_url parts.
func appendAnthropicMessage(mb *msgBuilder, m *fastjson.Value, param string, r *models.Request) error {
	if m.Type() != fastjson.TypeObject {
		return models.InvalidParam(param, "%s: must be an object", param)
	}
	role := string(m.GetStringBytes("role"))
	if role != "user" && role != "assistant" {
		return models.InvalidParam(param+".role", "%s.role: must be user or assistant, got %q", param, role)
	}
	c := m.Get("content")
	if c == nil {
		return models.InvalidParam(param+".content", "%s.content: Field required", param)
	}
	if c.Type() == fastjson.TypeString {
		s, _ := c.StringBytes()
		mb.next()
		mb.b = append(mb.b, `{"role":"`...)
		mb.b = append(mb.b, role...)
		mb.b = append(mb.b, `","content":`...)
		mb.b = jsonx.AppendString(mb.b, string(s))
		mb.b = append(mb.b, '}')
		r.Messages = append(r.Messages, models.Message{Role: role, Content: string(s)})
		return nil
	}
	blocks, err := c.Array()
	if err != nil {
		return models.InvalidParam(param+".content", "%s.content: must be a string or an array of content blocks", param)
	}
	var (
		text      strings.Builder
		parts     []byte // OpenAI content parts, when there are images
		hasImage  bool
		toolCalls []byte
		images    [][]byte
	)
	addText := func(s []byte) {
		if text.Len() > 0 {
			text.WriteByte('\n')
		}
		text.Write(s)
		if len(parts) > 0 {
			parts = append(parts, ',')
		}
		parts = append(parts, `{"type":"text","text":`...)
		parts = jsonx.AppendString(parts, string(s))
		parts = append(parts, '}')
	}
	for j, bl := range blocks {
		bp := param + ".content." + strconv.Itoa(j)
		if bl.Type() != fastjson.TypeObject {
			return models.InvalidParam(bp, "%s: must be an object", bp)
		}
		switch typ := string(bl.GetStringBytes("type")); typ {
		case "text":
			t := bl.Get("text")
			if t == nil || t.Type() != fastjson.TypeString {
				return models.InvalidParam(bp+".text", "%s.text: Field required", bp)
			}
			s, _ := t.StringBytes()
			addText(s)
		case "image":
			if role != "user" {
				return models.InvalidParam(bp, "%s: images are only allowed in user messages", bp)
			}
			url, img, err := imageURL(bl, bp)
			if err != nil {
				return err
			}
			hasImage = true
			if img != nil {
				images = append(images, img)
			}
			if len(parts) > 0 {
				parts = append(parts, ',')
			}
			parts = append(parts, `{"type":"image_url","image_url":{"url":`...)
			parts = jsonx.AppendString(parts, url)
			parts = append(parts, "}}"...)
		case "tool_use":
			if role != "assistant" {
				return models.InvalidParam(bp, "%s: tool_use blocks belong to assistant messages", bp)
			}
			id, name := string(bl.GetStringBytes("id")), string(bl.GetStringBytes("name"))
			in := bl.Get("input")
			if id == "" || name == "" || in == nil || in.Type() != fastjson.TypeObject {
				return models.InvalidParam(bp, "%s: tool_use needs id, name and an input object", bp)
			}
			if len(toolCalls) > 0 {
				toolCalls = append(toolCalls, ',')
			}
			toolCalls = append(toolCalls, `{"id":`...)
			toolCalls = jsonx.AppendString(toolCalls, id)
			toolCalls = append(toolCalls, `,"type":"function","function":{"name":`...)
			toolCalls = jsonx.AppendString(toolCalls, name)
			toolCalls = append(toolCalls, `,"arguments":`...)
			toolCalls = jsonx.AppendString(toolCalls, string(in.MarshalTo(nil)))
			toolCalls = append(toolCalls, "}}"...)
		case "tool_result":
			if role != "user" {
				return models.InvalidParam(bp, "%s: tool_result blocks belong to user messages", bp)
			}
			id := string(bl.GetStringBytes("tool_use_id"))
			if id == "" {
				return models.InvalidParam(bp+".tool_use_id", "%s.tool_use_id: Field required", bp)
			}
			content := ""
			if cv := bl.Get("content"); cv != nil && cv.Type() != fastjson.TypeNull {
				if content, err = textOf(cv, bp+".content"); err != nil {
					return err
				}
			}
			if bl.GetBool("is_error") {
				content = "Error: " + content
			}
			// A tool message must follow the assistant's tool calls directly: tool
			// results go before the rest of the user's turn.
			mb.next()
			mb.b = append(mb.b, `{"role":"tool","tool_call_id":`...)
			mb.b = jsonx.AppendString(mb.b, id)
			mb.b = append(mb.b, `,"content":`...)
			mb.b = jsonx.AppendString(mb.b, content)
			mb.b = append(mb.b, '}')
			r.Messages = append(r.Messages, models.Message{Role: "tool", ToolCallID: id, Content: content})
		case "thinking", "redacted_thinking":
			// Reasoning from an earlier turn: not forwarded.
		default:
			return models.InvalidParam(bp+".type", "%s.type: content blocks of type %q are not supported", bp, typ)
		}
	}
	if text.Len() == 0 && len(toolCalls) == 0 && !hasImage {
		return nil // only tool results (or thinking)
	}
	mb.next()
	mb.b = append(mb.b, `{"role":"`...)
	mb.b = append(mb.b, role...)
	mb.b = append(mb.b, `","content":`...)
	switch {
	case hasImage:
		mb.b = append(mb.b, '[')
		mb.b = append(mb.b, parts...)
		mb.b = append(mb.b, ']')
	case text.Len() == 0:
		mb.b = append(mb.b, "null"...)
	default:
		mb.b = jsonx.AppendString(mb.b, text.String())
	}
	msg := models.Message{Role: role, Content: text.String(), Images: images}
	if len(toolCalls) > 0 {
		mb.b = append(mb.b, `,"tool_calls":[`...)
		mb.b = append(mb.b, toolCalls...)
		mb.b = append(mb.b, ']')
		msg.ToolCalls = append(append([]byte{'['}, toolCalls...), ']')
	}
	mb.b = append(mb.b, '}')
	r.Messages = append(r.Messages, msg)
	return nil
}

// imageURL returns an image block's source as an OpenAI image URL, and the decoded
// bytes of a base64 image.
func imageURL(bl *fastjson.Value, param string) (string, []byte, error) {
	src := bl.Get("source")
	if src == nil || src.Type() != fastjson.TypeObject {
		return "", nil, models.InvalidParam(param+".source", "%s.source: Field required", param)
	}
	switch string(src.GetStringBytes("type")) {
	case "base64":
		mt, data := string(src.GetStringBytes("media_type")), string(src.GetStringBytes("data"))
		img, err := base64.StdEncoding.DecodeString(data)
		if err != nil || mt == "" {
			return "", nil, models.InvalidParam(param+".source", "%s.source: needs media_type and base64 data", param)
		}
		return "data:" + mt + ";base64," + data, img, nil
	case "url":
		u := string(src.GetStringBytes("url"))
		if u == "" {
			return "", nil, models.InvalidParam(param+".source.url", "%s.source.url: Field required", param)
		}
		return u, nil, nil
	}
	return "", nil, models.InvalidParam(param+".source.type", "%s.source.type: must be base64 or url", param)
}

// appendAnthropicTools converts tools and tool_choice to OpenAI's, into b and r.
func appendAnthropicTools(b []byte, v *fastjson.Value, r *models.Request) ([]byte, error) {
	tv := v.Get("tools")
	if tv != nil && tv.Type() != fastjson.TypeNull {
		tools, err := tv.Array()
		if err != nil {
			return b, models.InvalidParam("tools", "tools: must be an array")
		}
		if len(tools) > 0 {
			start := len(b)
			b = append(b, `,"tools":[`...)
			for i, t := range tools {
				tp := "tools." + strconv.Itoa(i)
				if t.Type() != fastjson.TypeObject {
					return b, models.InvalidParam(tp, "%s: must be an object", tp)
				}
				if typ := string(t.GetStringBytes("type")); typ != "" && typ != "custom" {
					return b, models.InvalidParam(tp+".type", "%s.type: server tools (%s) are not supported; define a custom tool", tp, typ)
				}
				name := string(t.GetStringBytes("name"))
				schema := t.Get("input_schema")
				if name == "" || schema == nil || schema.Type() != fastjson.TypeObject {
					return b, models.InvalidParam(tp, "%s: a tool needs a name and an input_schema object", tp)
				}
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, `{"type":"function","function":{"name":`...)
				b = jsonx.AppendString(b, name)
				if d := t.GetStringBytes("description"); len(d) > 0 {
					b = append(b, `,"description":`...)
					b = jsonx.AppendString(b, string(d))
				}
				b = append(b, `,"parameters":`...)
				b = schema.MarshalTo(b)
				b = append(b, "}}"...)
			}
			b = append(b, ']')
			r.Tools = append([]byte(nil), b[start+len(`,"tools":`):]...)
		}
	}
	tc := v.Get("tool_choice")
	if tc == nil || tc.Type() == fastjson.TypeNull {
		return b, nil
	}
	if tc.Type() != fastjson.TypeObject {
		return b, models.InvalidParam("tool_choice", "tool_choice: must be an object")
	}
	var choice []byte
	switch typ := string(tc.GetStringBytes("type")); typ {
	case "auto":
		choice = []byte(`"auto"`)
	case "any":
		choice = []byte(`"required"`)
	case "none":
		choice = []byte(`"none"`)
	case "tool":
		name := string(tc.GetStringBytes("name"))
		if name == "" {
			return b, models.InvalidParam("tool_choice.name", "tool_choice.name: Field required")
		}
		choice = append([]byte(`{"type":"function","function":{"name":`), jsonx.AppendString(nil, name)...)
		choice = append(choice, "}}"...)
	default:
		return b, models.InvalidParam("tool_choice.type", "tool_choice.type: must be auto, any, tool or none, got %q", typ)
	}
	if len(r.Tools) > 0 {
		b = append(b, `,"tool_choice":`...)
		b = append(b, choice...)
		r.ToolChoice = choice
		if tc.GetBool("disable_parallel_tool_use") {
			b = append(b, `,"parallel_tool_calls":false`...)
		}
	}
	return b, nil
}
