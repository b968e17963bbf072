package openaitest

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Request is a chat completions request as the fake decodes it.
type Request struct {
	Model               string          `json:"model"`
	Messages            []Message       `json:"messages"`
	Stream              bool            `json:"stream"`
	StreamOptions       *StreamOptions  `json:"stream_options"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	Stop                json.RawMessage `json:"stop"`
	Seed                *int64          `json:"seed"`
	RandomSeed          *int64          `json:"random_seed"` // Mistral's seed
	User                string          `json:"user"`
	Tools               []Tool          `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
	ResponseFormat      json.RawMessage `json:"response_format"`

	// Deployment is the Azure deployment named in the path ("" elsewhere).
	Deployment string `json:"-"`
	// Fields are the top-level keys the body had.
	Fields []string `json:"-"`
}

// StreamOptions of a streamed request.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// Message is one chat message; Content is a string or an array of parts.
type Message struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	Name       string          `json:"name,omitempty"`
	ToolCalls  []ToolCall      `json:"tool_calls,omitempty"`
	ToolCallID string          `json:"tool_call_id,omitempty"`
}

// ToolCall is an assistant's tool call.
type ToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// Tool is a function tool.
type Tool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Parameters  json.RawMessage `json:"parameters,omitempty"`
		Strict      *bool           `json:"strict,omitempty"`
	} `json:"function"`
}

// Text returns a message's text (the text parts of an array joined).
func (m Message) Text() string {
	var s string
	if json.Unmarshal(m.Content, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	_ = json.Unmarshal(m.Content, &parts)
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(p.Text)
	}
	return b.String()
}

// LastText is the text of the last user message.
func (r *Request) LastText() string {
	for i := len(r.Messages) - 1; i >= 0; i-- {
		if r.Messages[i].Role == "user" {
			return r.Messages[i].Text()
		}
	}
	return ""
}

// Has reports whether the body had the top-level field k.
func (r *Request) Has(k string) bool {
	for _, f := range r.Fields {
		if f == k {
			return true
		}
	}
	return false
}

func (r *Request) stops() []string {
	var one string
	if json.Unmarshal(r.Stop, &one) == nil && one != "" {
		return []string{one}
	}
	var many []string
	_ = json.Unmarshal(r.Stop, &many)
	return many
}

func (r *Request) maxTokens() int {
	switch {
	case r.MaxCompletionTokens != nil:
		return *r.MaxCompletionTokens
	case r.MaxTokens != nil:
		return *r.MaxTokens
	}
	return 1 << 30
}

func (r *Request) promptText() string {
	var b strings.Builder
	for _, m := range r.Messages {
		b.WriteString(m.Role)
		b.WriteString(m.Text())
		for _, c := range m.ToolCalls {
			b.WriteString(c.Function.Name)
			b.WriteString(c.Function.Arguments)
		}
	}
	for _, t := range r.Tools {
		b.WriteString(t.Function.Name)
		b.WriteString(t.Function.Description)
		b.Write(t.Function.Parameters)
	}
	return b.String()
}

// Fields each flavour accepts at the top level of a chat completions body.
var (
	openAIFields = set("model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
		"temperature", "top_p", "n", "stop", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
		"top_logprobs", "user", "seed", "tools", "tool_choice", "parallel_tool_calls", "response_format",
		"service_tier", "store", "metadata", "reasoning_effort", "modalities", "audio", "prediction",
		"web_search_options", "functions", "function_call", "verbosity", "prompt_cache_key", "safety_identifier")
	mistralFields = set("model", "messages", "stream", "max_tokens", "temperature", "top_p", "n", "stop",
		"random_seed", "presence_penalty", "frequency_penalty", "tools", "tool_choice", "parallel_tool_calls",
		"response_format", "prediction", "prompt_mode", "safe_prompt")
)

func set(ks ...string) map[string]bool {
	m := make(map[string]bool, len(ks))
	for _, k := range ks {
		m[k] = true
	}
	return m
}

// reqError is a refusal with the flavour's status and message.
type reqError struct {
	status int
	msg    string
	param  string
	code   string
	// extra holds Mistral's validation details (its message is then an object).
	extra []map[string]any
}

func (e *reqError) Error() string { return e.msg }

// decode reads and checks a body against the flavour's rules.
func decode(body []byte, f Flavor) (*Request, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, &reqError{status: 400, msg: "We could not parse the JSON body of your request."}
	}
	allowed := openAIFields
	if f == Mistral {
		allowed = mistralFields
	}
	keys := make([]string, 0, len(top))
	for k := range top {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var extra []map[string]any
	for _, k := range keys {
		if allowed[k] {
			continue
		}
		if f == Mistral {
			var in any
			_ = json.Unmarshal(top[k], &in)
			extra = append(extra, map[string]any{"type": "extra_forbidden", "loc": []any{"body", k},
				"msg": "Extra inputs are not permitted", "input": in})
			continue
		}
		return nil, &reqError{status: 400, msg: "Unrecognized request argument supplied: " + k}
	}
	if len(extra) > 0 {
		return nil, &reqError{status: 422, extra: extra}
	}
	r := &Request{Fields: keys}
	if err := json.Unmarshal(body, r); err != nil {
		return nil, &reqError{status: 400, msg: fmt.Sprintf("Invalid type in the request body: %v", err)}
	}
	return r, r.validate(f)
}

func (r *Request) validate(f Flavor) error {
	bad := func(param, format string, args ...any) error {
		return &reqError{status: 400, param: param, msg: fmt.Sprintf(format, args...)}
	}
	if r.Model == "" && f != Azure {
		return bad("model", "you must provide a model parameter")
	}
	if len(r.Messages) == 0 {
		return bad("messages", "[] is too short - 'messages'")
	}
	if r.StreamOptions != nil && !r.Stream {
		return bad("stream_options", "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
	}
	if r.Temperature != nil && (*r.Temperature < 0 || *r.Temperature > 2) {
		return bad("temperature", "%v is greater than the maximum of 2 - 'temperature'", *r.Temperature)
	}
	pending := map[string]bool{}
	for i, m := range r.Messages {
		switch m.Role {
		case "system", "developer", "user", "assistant", "tool":
		default:
			return bad(fmt.Sprintf("messages.[%d].role", i), "'%s' is not one of ['system', 'assistant', 'user', 'tool', 'developer'] - 'messages.%d.role'", m.Role, i)
		}
		if m.Role != "tool" && len(pending) > 0 {
			return bad("messages", "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. "+
				"The following tool_call_ids did not have response messages: %s", keysOf(pending))
		}
		switch m.Role {
		case "assistant":
			for _, c := range m.ToolCalls {
				if c.ID == "" || c.Function.Name == "" {
					return bad(fmt.Sprintf("messages.[%d].tool_calls", i), "tool calls need an id and a function name")
				}
				var args map[string]any
				if json.Unmarshal([]byte(c.Function.Arguments), &args) != nil && f == Mistral {
					return bad(fmt.Sprintf("messages.[%d].tool_calls", i), "arguments must be a JSON object")
				}
				pending[c.ID] = true
			}
		case "tool":
			if !pending[m.ToolCallID] {
				return bad(fmt.Sprintf("messages.[%d].role", i), "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.")
			}
			delete(pending, m.ToolCallID)
		}
	}
	if len(pending) > 0 {
		return bad("messages", "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. "+
			"The following tool_call_ids did not have response messages: %s", keysOf(pending))
	}
	for i, t := range r.Tools {
		if t.Type != "function" || t.Function.Name == "" {
			return bad(fmt.Sprintf("tools[%d]", i), "Missing required parameter: 'tools[%d].function.name'.", i)
		}
	}
	return nil
}

func keysOf(m map[string]bool) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}
