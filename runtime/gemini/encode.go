package gemini

import (
	"bytes"
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/sluice-llm/sluice/internal/jsonx"
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/runtime/internal/cloud"
	"github.com/valyala/fastjson"
)

// sigSep joins a tool call's id and the thought signature Gemini attached to the call.
// Gemini wants the signature back with the call in later turns (Gemini 3 refuses a
// function call without it); an OpenAI client keeps only the call's id, so the
// signature travels inside the id.
const sigSep = "__thought__"

// splitID splits a tool call id into Gemini's call id and the thought signature.
func splitID(id string) (callID, sig string) {
	if i := strings.Index(id, sigSep); i >= 0 {
		return id[:i], id[i+len(sigSep):]
	}
	return id, ""
}

// encodeRequest writes r as a generateContent request body.
//
// System and developer messages become systemInstruction; user turns become "user"
// contents (text and inlineData images), assistant turns "model" contents (text and
// functionCall parts), tool results functionResponse parts of a "user" content, with
// consecutive parts of one role merged. Tools become functionDeclarations with the
// JSON schema as parametersJsonSchema; tool_choice becomes toolConfig's calling mode;
// sampling, stop sequences and response_format go to generationConfig.
func encodeRequest(dst []byte, r *models.Request) ([]byte, error) {
	dst = append(dst, `{"contents":[`...)
	w := contentWriter{b: dst}
	switch r.Kind {
	case models.KindChat:
		if err := w.messages(r.Messages); err != nil {
			return nil, err
		}
	case models.KindCompletion:
		w.part("user")
		w.b = appendTextPart(w.b, strings.Join(r.Prompt, "\n"))
	default:
		return nil, models.Errorf(models.ErrInvalid, "gemini: %s requests are not supported", r.Kind)
	}
	dst = w.close()
	dst = append(dst, ']')

	first := true
	for i := range r.Messages {
		m := &r.Messages[i]
		if (m.Role != "system" && m.Role != "developer") || m.Content == "" {
			continue
		}
		if first {
			dst = append(dst, `,"systemInstruction":{"parts":[`...)
			first = false
		} else {
			dst = append(dst, ',')
		}
		dst = appendTextPart(dst, m.Content)
	}
	if !first {
		dst = append(dst, "]}"...)
	}

	dst, err := appendTools(dst, r)
	if err != nil {
		return nil, err
	}
	return appendGeneration(dst, r)
}

func appendTextPart(dst []byte, s string) []byte {
	dst = append(dst, `{"text":`...)
	dst = jsonx.AppendString(dst, s)
	return append(dst, '}')
}

// contentWriter writes the contents array, merging consecutive parts of one role.
type contentWriter struct {
	b     []byte
	role  string
	open  bool
	n     int
	names map[string]string // tool call id → function name, for tool results
}

func (w *contentWriter) part(role string) {
	if !w.open || w.role != role {
		if w.open {
			w.b = append(w.b, "]},"...)
		}
		w.b = append(w.b, `{"role":"`...)
		w.b = append(w.b, role...)
		w.b = append(w.b, `","parts":[`...)
		w.role, w.open, w.n = role, true, 0
	}
	if w.n > 0 {
		w.b = append(w.b, ',')
	}
	w.n++
}

func (w *contentWriter) close() []byte {
	if w.open {
		w.b = append(w.b, "]}"...)
		w.open = false
	}
	return w.b
}

func (w *contentWriter) messages(msgs []models.Message) error {
	for i := range msgs {
		m := &msgs[i]
		param := "messages[" + strconv.Itoa(i) + "]"
		switch m.Role {
		case "system", "developer":
		case "user":
			for _, img := range m.Images {
				mime := cloud.ImageMIME(img)
				if mime == "" {
					return models.InvalidParam(param+".content", "images must be PNG, JPEG, GIF or WebP")
				}
				w.part("user")
				w.b = append(w.b, `{"inlineData":{"mimeType":"`...)
				w.b = append(w.b, mime...)
				w.b = append(w.b, `","data":"`...)
				w.b = base64.StdEncoding.AppendEncode(w.b, img)
				w.b = append(w.b, `"}}`...)
			}
			if m.Content != "" {
				w.part("user")
				w.b = appendTextPart(w.b, m.Content)
			}
		case "assistant":
			if m.Content != "" {
				w.part("model")
				w.b = appendTextPart(w.b, m.Content)
			}
			if len(m.ToolCalls) == 0 {
				continue
			}
			calls, err := cloud.ParseToolCalls(m.ToolCalls)
			if err != nil {
				return models.InvalidParam(param+".tool_calls", "%v", err)
			}
			for _, c := range calls {
				if w.names == nil {
					w.names = map[string]string{}
				}
				w.names[c.ID] = c.Name
				id, sig := splitID(c.ID)
				w.part("model")
				w.b = append(w.b, `{"functionCall":{`...)
				if id != "" {
					w.b = append(w.b, `"id":`...)
					w.b = jsonx.AppendString(w.b, id)
					w.b = append(w.b, ',')
				}
				w.b = append(w.b, `"name":`...)
				w.b = jsonx.AppendString(w.b, c.Name)
				w.b = append(w.b, `,"args":`...)
				w.b = append(w.b, c.Args...)
				w.b = append(w.b, '}')
				if sig != "" {
					w.b = append(w.b, `,"thoughtSignature":`...)
					w.b = jsonx.AppendString(w.b, sig)
				}
				w.b = append(w.b, '}')
			}
		case "tool", "function":
			name := m.Name
			if name == "" {
				name = w.names[m.ToolCallID]
			}
			if name == "" {
				return models.InvalidParam(param+".tool_call_id",
					"a tool message must answer a tool call of an earlier assistant message")
			}
			id, _ := splitID(m.ToolCallID)
			w.part("user")
			w.b = append(w.b, `{"functionResponse":{`...)
			if id != "" {
				w.b = append(w.b, `"id":`...)
				w.b = jsonx.AppendString(w.b, id)
				w.b = append(w.b, ',')
			}
			w.b = append(w.b, `"name":`...)
			w.b = jsonx.AppendString(w.b, name)
			w.b = append(w.b, `,"response":`...)
			w.b = appendResponse(w.b, m.Content)
			w.b = append(w.b, "}}"...)
		default:
			return models.InvalidParam(param+".role", "role %q is not supported", m.Role)
		}
	}
	return nil
}

// appendResponse writes a tool's result as a functionResponse.response object: a JSON
// object as it is, anything else as {"output": text}, the key Gemini documents.
func appendResponse(dst []byte, content string) []byte {
	if t := strings.TrimSpace(content); strings.HasPrefix(t, "{") {
		var p fastjson.Parser
		if v, err := p.Parse(t); err == nil && v.Type() == fastjson.TypeObject {
			return v.MarshalTo(dst)
		}
	}
	dst = append(dst, `{"output":`...)
	dst = jsonx.AppendString(dst, content)
	return append(dst, '}')
}

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
		return dst, nil
	}
	dst = append(dst, `,"tools":[{"functionDeclarations":[`...)
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
		if len(t.Parameters) > 2 {
			dst = append(dst, `,"parametersJsonSchema":`...)
			dst = append(dst, t.Parameters...)
		}
		dst = append(dst, '}')
	}
	dst = append(dst, "]}]"...)
	switch choice.Mode {
	case "auto":
		dst = append(dst, `,"toolConfig":{"functionCallingConfig":{"mode":"AUTO"}}`...)
	case "none":
		dst = append(dst, `,"toolConfig":{"functionCallingConfig":{"mode":"NONE"}}`...)
	case "required":
		dst = append(dst, `,"toolConfig":{"functionCallingConfig":{"mode":"ANY"}}`...)
	case "function":
		dst = append(dst, `,"toolConfig":{"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":[`...)
		dst = jsonx.AppendString(dst, choice.Function)
		dst = append(dst, "]}}"...)
	}
	return dst, nil
}

// appendGeneration writes generationConfig and closes the request.
func appendGeneration(dst []byte, r *models.Request) ([]byte, error) {
	start := len(dst)
	dst = append(dst, `,"generationConfig":{`...)
	n := 0
	field := func(k string) {
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = append(dst, '"')
		dst = append(dst, k...)
		dst = append(dst, `":`...)
	}
	sp := &r.Sampling
	if sp.MaxTokens > 0 {
		field("maxOutputTokens")
		dst = strconv.AppendInt(dst, int64(sp.MaxTokens), 10)
	}
	for _, f := range []struct {
		k string
		v *float64
	}{{"temperature", sp.Temperature}, {"topP", sp.TopP}, {"presencePenalty", sp.PresencePenalty}, {"frequencyPenalty", sp.FrequencyPenalty}} {
		if f.v != nil {
			field(f.k)
			dst = strconv.AppendFloat(dst, *f.v, 'g', -1, 64)
		}
	}
	if sp.Seed != nil {
		field("seed")
		dst = strconv.AppendInt(dst, int64(int32(*sp.Seed)), 10)
	}
	if len(sp.Stop) > 0 {
		field("stopSequences")
		dst = append(dst, '[')
		for i, s := range sp.Stop {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = jsonx.AppendString(dst, s)
		}
		dst = append(dst, ']')
	}
	if rf := bytes.TrimSpace(r.ResponseFormat); len(rf) > 0 && string(rf) != "null" {
		var p fastjson.Parser
		v, err := p.ParseBytes(rf)
		if err != nil {
			return nil, models.InvalidParam("response_format", "response_format is not JSON")
		}
		switch string(v.GetStringBytes("type")) {
		case "", "text":
		case "json_object":
			field("responseMimeType")
			dst = append(dst, `"application/json"`...)
		case "json_schema":
			schema := v.Get("json_schema", "schema")
			if schema == nil || schema.Type() != fastjson.TypeObject {
				return nil, models.InvalidParam("response_format.json_schema.schema", "response_format.json_schema.schema is required")
			}
			field("responseMimeType")
			dst = append(dst, `"application/json"`...)
			field("responseJsonSchema")
			dst = schema.MarshalTo(dst)
		default:
			return nil, models.InvalidParam("response_format.type", "response_format type %q is not supported", v.GetStringBytes("type"))
		}
	}
	if n == 0 {
		dst = dst[:start]
		return append(dst, '}'), nil
	}
	return append(dst, "}}"...), nil
}
