package ollama

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/ollama/ollama/api"
	"github.com/sluice-llm/sluice/internal/jsonx"
	"github.com/sluice-llm/sluice/models"
)

// openAIToolCall is one element of an OpenAI tool_calls array.
type openAIToolCall struct {
	Index    *int   `json:"index,omitempty"`
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name string `json:"name"`
		// Arguments is a JSON string holding a JSON object (OpenAI); an object is
		// accepted too.
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}

// chatRequest converts a chat request for model.
func chatRequest(model string, r *models.Request, keepAlive *api.Duration) (*api.ChatRequest, error) {
	msgs, err := chatMessages(r.Messages)
	if err != nil {
		return nil, err
	}
	tools, err := chatTools(r.Tools, r.ToolChoice)
	if err != nil {
		return nil, err
	}
	format, err := responseFormat(r.ResponseFormat)
	if err != nil {
		return nil, err
	}
	stream := r.Stream
	return &api.ChatRequest{
		Model:     model,
		Messages:  msgs,
		Stream:    &stream,
		Format:    format,
		KeepAlive: keepAlive,
		Tools:     tools,
		Options:   sampling(&r.Sampling),
	}, nil
}

// generateRequest converts a completion request for model. The prompts are joined with
// newlines and sent raw: OpenAI's completions continue the text as given, without the
// model's chat template.
func generateRequest(model string, r *models.Request, keepAlive *api.Duration) (*api.GenerateRequest, error) {
	format, err := responseFormat(r.ResponseFormat)
	if err != nil {
		return nil, err
	}
	stream := r.Stream
	return &api.GenerateRequest{
		Model:     model,
		Prompt:    strings.Join(r.Prompt, "\n"),
		Raw:       true,
		Stream:    &stream,
		Format:    format,
		KeepAlive: keepAlive,
		Options:   sampling(&r.Sampling),
	}, nil
}

// embedRequest converts an embeddings request for model.
func embedRequest(model string, r *models.Request, keepAlive *api.Duration) (*api.EmbedRequest, error) {
	if len(r.Input) == 0 {
		return nil, models.InvalidParam("input", "input must not be empty")
	}
	return &api.EmbedRequest{Model: model, Input: r.Input, KeepAlive: keepAlive}, nil
}

func chatMessages(in []models.Message) ([]api.Message, error) {
	out := make([]api.Message, 0, len(in))
	names := map[string]string{} // tool call id -> function name, for tool results
	for i := range in {
		m := &in[i]
		am := api.Message{Role: m.Role, Content: m.Content, ToolCallID: m.ToolCallID}
		for _, img := range m.Images {
			am.Images = append(am.Images, api.ImageData(img))
		}
		if len(m.ToolCalls) > 0 {
			calls, err := toolCallsIn(m.ToolCalls)
			if err != nil {
				return nil, models.InvalidParam("messages["+strconv.Itoa(i)+"].tool_calls", "%v", err)
			}
			for _, c := range calls {
				if c.ID != "" {
					names[c.ID] = c.Function.Name
				}
			}
			am.ToolCalls = calls
		}
		if m.Role == "tool" {
			am.ToolName = m.Name
			if am.ToolName == "" {
				am.ToolName = names[m.ToolCallID]
			}
		}
		out = append(out, am)
	}
	return out, nil
}

// toolCallsIn converts an OpenAI tool_calls array into Ollama's tool calls.
func toolCallsIn(raw []byte) ([]api.ToolCall, error) {
	var calls []openAIToolCall
	if err := json.Unmarshal(raw, &calls); err != nil {
		return nil, fmt.Errorf("tool_calls is not an array of tool calls: %v", err)
	}
	out := make([]api.ToolCall, len(calls))
	for i, c := range calls {
		if c.Function.Name == "" {
			return nil, fmt.Errorf("tool call %d has no function name", i)
		}
		args := bytes.TrimSpace(c.Function.Arguments)
		if len(args) > 0 && args[0] == '"' {
			var s string
			if err := json.Unmarshal(args, &s); err != nil {
				return nil, fmt.Errorf("tool call %d: arguments: %v", i, err)
			}
			args = bytes.TrimSpace([]byte(s))
		}
		out[i].ID = c.ID
		out[i].Function.Index = i
		out[i].Function.Name = c.Function.Name
		out[i].Function.Arguments = api.NewToolCallFunctionArguments()
		if len(args) == 0 || string(args) == "null" {
			continue
		}
		if err := json.Unmarshal(args, &out[i].Function.Arguments); err != nil {
			return nil, fmt.Errorf("tool call %d: arguments are not a JSON object", i)
		}
	}
	return out, nil
}

// chatTools converts the OpenAI tools array. tool_choice "none" drops the tools (Ollama
// has no tool_choice; other choices cannot be enforced and only the tools are sent).
func chatTools(raw, choice []byte) (api.Tools, error) {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil, nil
	}
	if string(bytes.TrimSpace(choice)) == `"none"` {
		return nil, nil
	}
	var tools api.Tools
	if err := json.Unmarshal(raw, &tools); err != nil {
		return nil, models.InvalidParam("tools", "tools is not an array of tools: %v", err)
	}
	for i := range tools {
		if tools[i].Type == "" {
			tools[i].Type = "function"
		}
		if tools[i].Type != "function" {
			return nil, models.InvalidParam("tools["+strconv.Itoa(i)+"].type", "tool type %q is not supported", tools[i].Type)
		}
		if tools[i].Function.Name == "" {
			return nil, models.InvalidParam("tools["+strconv.Itoa(i)+"].function.name", "tool %d has no function name", i)
		}
		if tools[i].Function.Parameters.Type == "" {
			tools[i].Function.Parameters.Type = "object"
		}
	}
	return tools, nil
}

// responseFormat converts OpenAI's response_format into Ollama's format: "json" for
// json_object, the schema for json_schema, nothing for text.
func responseFormat(raw []byte) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var rf struct {
		Type       string `json:"type"`
		JSONSchema *struct {
			Schema json.RawMessage `json:"schema"`
		} `json:"json_schema"`
	}
	if err := json.Unmarshal(raw, &rf); err != nil {
		return nil, models.InvalidParam("response_format", "response_format is not an object: %v", err)
	}
	switch rf.Type {
	case "", "text":
		return nil, nil
	case "json_object":
		return json.RawMessage(`"json"`), nil
	case "json_schema":
		if rf.JSONSchema == nil || len(bytes.TrimSpace(rf.JSONSchema.Schema)) == 0 ||
			string(bytes.TrimSpace(rf.JSONSchema.Schema)) == "null" {
			return nil, models.InvalidParam("response_format.json_schema.schema", "response_format.json_schema.schema is required")
		}
		return rf.JSONSchema.Schema, nil
	}
	return nil, models.InvalidParam("response_format.type", "response_format type %q is not supported", rf.Type)
}

// sampling converts the options sluice understands into Ollama's options map. Unset
// options are left out, so the model's Modelfile parameters apply.
func sampling(s *models.Sampling) map[string]any {
	o := map[string]any{}
	if s.MaxTokens > 0 {
		o["num_predict"] = s.MaxTokens
	}
	if s.Temperature != nil {
		o["temperature"] = *s.Temperature
	}
	if s.TopP != nil {
		o["top_p"] = *s.TopP
	}
	if s.Seed != nil {
		o["seed"] = *s.Seed
	}
	if len(s.Stop) > 0 {
		o["stop"] = s.Stop
	}
	if s.PresencePenalty != nil {
		o["presence_penalty"] = *s.PresencePenalty
	}
	if s.FrequencyPenalty != nil {
		o["frequency_penalty"] = *s.FrequencyPenalty
	}
	if len(o) == 0 {
		return nil
	}
	return o
}

// appendToolCalls appends calls to dst as an OpenAI tool_calls array; first is the
// index of the first call in the whole answer.
func appendToolCalls(dst []byte, calls []api.ToolCall, first int, newID func() string) []byte {
	dst = append(dst, '[')
	for i, c := range calls {
		if i > 0 {
			dst = append(dst, ',')
		}
		id := c.ID
		if id == "" {
			id = newID()
		}
		args, err := json.Marshal(c.Function.Arguments)
		if err != nil {
			args = []byte("{}")
		}
		dst = append(dst, `{"index":`...)
		dst = strconv.AppendInt(dst, int64(first+i), 10)
		dst = append(dst, `,"id":`...)
		dst = jsonx.AppendString(dst, id)
		dst = append(dst, `,"type":"function","function":{"name":`...)
		dst = jsonx.AppendString(dst, c.Function.Name)
		dst = append(dst, `,"arguments":`...)
		dst = jsonx.AppendString(dst, string(args))
		dst = append(dst, "}}"...)
	}
	return append(dst, ']')
}
