package cloud

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net/http"
	"strconv"

	"github.com/sluice-llm/sluice/internal/jsonx"
	"github.com/valyala/fastjson"
)

// NewCallID returns an OpenAI-style id for a tool call the provider did not name.
func NewCallID() string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b [24]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return "call_" + string(b[:])
}

// ImageMIME returns the media type of an image given as bytes (image/png, image/jpeg,
// image/gif or image/webp), or "" for anything else.
func ImageMIME(b []byte) string {
	switch t := http.DetectContentType(b); t {
	case "image/png", "image/jpeg", "image/gif", "image/webp":
		return t
	}
	return ""
}

// ToolCall is one call of an OpenAI tool_calls array.
type ToolCall struct {
	ID   string
	Name string
	// Args is the arguments as a JSON object ("{}" when the call had none).
	Args []byte
}

// ParseToolCalls reads an OpenAI tool_calls array (an assistant message's). Arguments
// may be a JSON string holding an object (OpenAI) or an object.
func ParseToolCalls(raw []byte) ([]ToolCall, error) {
	var p, ap fastjson.Parser // ap parses arguments: a parse invalidates p's values
	v, err := p.ParseBytes(raw)
	if err != nil {
		return nil, err
	}
	arr, err := v.Array()
	if err != nil {
		return nil, err
	}
	out := make([]ToolCall, 0, len(arr))
	for i, c := range arr {
		tc := ToolCall{ID: string(c.GetStringBytes("id")), Name: string(c.GetStringBytes("function", "name"))}
		if tc.Name == "" {
			return nil, fmt.Errorf("tool call %d has no function name", i)
		}
		args := c.Get("function", "arguments")
		switch {
		case args == nil || args.Type() == fastjson.TypeNull:
			tc.Args = []byte("{}")
		case args.Type() == fastjson.TypeString:
			s := bytes.TrimSpace(args.GetStringBytes())
			if len(s) == 0 {
				tc.Args = []byte("{}")
				break
			}
			o, err := ap.ParseBytes(s)
			if err != nil || o.Type() != fastjson.TypeObject {
				return nil, fmt.Errorf("tool call %d: arguments are not a JSON object", i)
			}
			tc.Args = o.MarshalTo(nil)
		case args.Type() == fastjson.TypeObject:
			tc.Args = args.MarshalTo(nil)
		default:
			return nil, fmt.Errorf("tool call %d: arguments are not a JSON object", i)
		}
		out = append(out, tc)
	}
	return out, nil
}

// Tool is one function of an OpenAI tools array.
type Tool struct {
	Name        string
	Description string
	// Parameters is the JSON schema of the arguments (nil when the tool gave none).
	Parameters []byte
}

// ParseTools reads an OpenAI tools array; only function tools are supported.
func ParseTools(raw []byte) ([]Tool, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var p fastjson.Parser
	v, err := p.ParseBytes(raw)
	if err != nil {
		return nil, err
	}
	arr, err := v.Array()
	if err != nil {
		return nil, err
	}
	out := make([]Tool, 0, len(arr))
	for i, t := range arr {
		if typ := string(t.GetStringBytes("type")); typ != "" && typ != "function" {
			return nil, fmt.Errorf("tools[%d]: tool type %q is not supported", i, typ)
		}
		f := t.Get("function")
		if f == nil {
			return nil, fmt.Errorf("tools[%d]: no function", i)
		}
		tool := Tool{Name: string(f.GetStringBytes("name")), Description: string(f.GetStringBytes("description"))}
		if tool.Name == "" {
			return nil, fmt.Errorf("tools[%d]: no function name", i)
		}
		if ps := f.Get("parameters"); ps != nil && ps.Type() == fastjson.TypeObject {
			tool.Parameters = ps.MarshalTo(nil)
		}
		out = append(out, tool)
	}
	return out, nil
}

// ToolChoice is an OpenAI tool_choice: "auto", "none", "required", or a function name.
type ToolChoice struct {
	Mode     string // "" (not given), auto, none, required, function
	Function string // the forced function's name (Mode "function")
}

// ParseToolChoice reads an OpenAI tool_choice.
func ParseToolChoice(raw []byte) (ToolChoice, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ToolChoice{}, nil
	}
	var p fastjson.Parser
	v, err := p.ParseBytes(raw)
	if err != nil {
		return ToolChoice{}, err
	}
	if v.Type() == fastjson.TypeString {
		switch s := string(v.GetStringBytes()); s {
		case "auto", "none", "required":
			return ToolChoice{Mode: s}, nil
		default:
			return ToolChoice{}, fmt.Errorf("tool_choice %q is not one of auto, none, required", s)
		}
	}
	name := string(v.GetStringBytes("function", "name"))
	if name == "" {
		return ToolChoice{}, fmt.Errorf("tool_choice names no function")
	}
	return ToolChoice{Mode: "function", Function: name}, nil
}

// AppendToolCallDelta appends one OpenAI streamed tool-call delta array of one call:
// the first delta of a call carries its id and name, later ones argument fragments.
func AppendToolCallDelta(dst []byte, index int, id, name, args string) []byte {
	dst = append(dst, `[{"index":`...)
	dst = strconv.AppendInt(dst, int64(index), 10)
	if id != "" {
		dst = append(dst, `,"id":`...)
		dst = jsonx.AppendString(dst, id)
		dst = append(dst, `,"type":"function"`...)
	}
	dst = append(dst, `,"function":{`...)
	if name != "" {
		dst = append(dst, `"name":`...)
		dst = jsonx.AppendString(dst, name)
		dst = append(dst, ',')
	}
	dst = append(dst, `"arguments":`...)
	dst = jsonx.AppendString(dst, args)
	return append(dst, "}}]"...)
}

// AppendToolCall appends one whole OpenAI tool call (of a non-streamed answer) to an
// array being built (the caller writes the brackets and commas).
func AppendToolCall(dst []byte, id, name string, args []byte) []byte {
	dst = append(dst, `{"id":`...)
	dst = jsonx.AppendString(dst, id)
	dst = append(dst, `,"type":"function","function":{"name":`...)
	dst = jsonx.AppendString(dst, name)
	dst = append(dst, `,"arguments":`...)
	dst = jsonx.AppendString(dst, string(args))
	return append(dst, "}}"...)
}
