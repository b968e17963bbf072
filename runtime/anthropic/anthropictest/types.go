package anthropictest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// Request is a Messages API request as the fake decodes it. Unknown fields are
// refused, as the real API refuses them.
type Request struct {
	Model         string          `json:"model"`
	MaxTokens     *int            `json:"max_tokens"`
	Messages      []Message       `json:"messages"`
	System        json.RawMessage `json:"system,omitempty"` // a string or text blocks
	Stream        bool            `json:"stream,omitempty"`
	Temperature   *float64        `json:"temperature,omitempty"`
	TopP          *float64        `json:"top_p,omitempty"`
	TopK          *int            `json:"top_k,omitempty"`
	StopSequences []string        `json:"stop_sequences,omitempty"`
	Tools         []Tool          `json:"tools,omitempty"`
	ToolChoice    *ToolChoice     `json:"tool_choice,omitempty"`
	Metadata      *Metadata       `json:"metadata,omitempty"`
	ServiceTier   string          `json:"service_tier,omitempty"`
	Thinking      json.RawMessage `json:"thinking,omitempty"`

	// Decoded from the raw fields by validate.
	SystemText string    `json:"-"`
	Turns      [][]Block `json:"-"` // each message's content as blocks
}

// Metadata of a request.
type Metadata struct {
	UserID string `json:"user_id,omitempty"`
}

// Message is one turn; Content is a string or an array of blocks.
type Message struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// Block is a content block of any type the fake knows.
type Block struct {
	Type         string          `json:"type"`
	Text         string          `json:"text,omitempty"`
	Source       *Source         `json:"source,omitempty"`
	ID           string          `json:"id,omitempty"`
	Name         string          `json:"name,omitempty"`
	Input        json.RawMessage `json:"input,omitempty"`
	ToolUseID    string          `json:"tool_use_id,omitempty"`
	Content      json.RawMessage `json:"content,omitempty"` // tool_result: a string or blocks
	IsError      *bool           `json:"is_error,omitempty"`
	CacheControl json.RawMessage `json:"cache_control,omitempty"`
	Citations    json.RawMessage `json:"citations,omitempty"`
	Signature    string          `json:"signature,omitempty"`
	Thinking     string          `json:"thinking,omitempty"`
}

// Source of an image block.
type Source struct {
	Type      string `json:"type"` // base64 | url
	MediaType string `json:"media_type,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
}

// Tool is a client tool.
type Tool struct {
	Name         string          `json:"name"`
	Description  string          `json:"description,omitempty"`
	InputSchema  json.RawMessage `json:"input_schema"`
	CacheControl json.RawMessage `json:"cache_control,omitempty"`
	Type         string          `json:"type,omitempty"`
	Strict       *bool           `json:"strict,omitempty"`
}

// ToolChoice says whether and which tool the model must use.
type ToolChoice struct {
	Type                   string `json:"type"` // auto | any | tool | none
	Name                   string `json:"name,omitempty"`
	DisableParallelToolUse *bool  `json:"disable_parallel_tool_use,omitempty"`
}

// invalid is a 400 invalid_request_error with the API's message.
type invalid string

func (e invalid) Error() string { return string(e) }

func invalidf(format string, args ...any) error { return invalid(fmt.Sprintf(format, args...)) }

// decodeStrict decodes b into v, refusing unknown fields the way the API does.
func decodeStrict(b []byte, v any, path string) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		msg := err.Error()
		if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
			return invalidf("%s%s: Extra inputs are not permitted", path, strings.Trim(f, `"`))
		}
		return invalidf("%sthe request body is not valid JSON: %v", path, err)
	}
	return nil
}

var toolName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,128}$`)

var mediaTypes = map[string]bool{"image/jpeg": true, "image/png": true, "image/gif": true, "image/webp": true}

// validate checks the request as the API does and fills SystemText and Turns.
func (r *Request) validate() error {
	if r.Model == "" {
		return invalidf("model: Field required")
	}
	if r.MaxTokens == nil {
		return invalidf("max_tokens: Field required")
	}
	if *r.MaxTokens < 1 {
		return invalidf("max_tokens: Input should be greater than or equal to 1")
	}
	if r.Temperature != nil && (*r.Temperature < 0 || *r.Temperature > 1) {
		return invalidf("temperature: Input should be less than or equal to 1")
	}
	if r.TopP != nil && (*r.TopP < 0 || *r.TopP > 1) {
		return invalidf("top_p: Input should be less than or equal to 1")
	}
	if len(r.System) > 0 {
		var s string
		if err := json.Unmarshal(r.System, &s); err == nil {
			r.SystemText = s
		} else {
			var blocks []Block
			if err := decodeStrict(r.System, &blocks, "system."); err != nil {
				return err
			}
			for i, b := range blocks {
				if b.Type != "text" {
					return invalidf("system.%d.type: Input should be 'text'", i)
				}
				if b.Text == "" {
					return invalidf("system: text content blocks must be non-empty")
				}
				r.SystemText += b.Text
			}
		}
	}
	for i, t := range r.Tools {
		if !toolName.MatchString(t.Name) {
			return invalidf("tools.%d.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'", i)
		}
		var schema struct {
			Type string `json:"type"`
		}
		if len(t.InputSchema) == 0 {
			return invalidf("tools.%d.input_schema: Field required", i)
		}
		if err := json.Unmarshal(t.InputSchema, &schema); err != nil || schema.Type != "object" {
			return invalidf("tools.%d.input_schema.type: Input should be 'object'", i)
		}
	}
	if tc := r.ToolChoice; tc != nil {
		switch tc.Type {
		case "auto", "any", "none":
		case "tool":
			if !r.hasTool(tc.Name) {
				return invalidf("tool_choice.name: tool %q not found in tools", tc.Name)
			}
		default:
			return invalidf("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
		}
		if len(r.Tools) == 0 && tc.Type != "none" && tc.Type != "auto" {
			return invalidf("tool_choice: tool_choice may only be specified while providing tools")
		}
	}
	if len(r.Messages) == 0 {
		return invalidf("messages: at least one message is required")
	}
	r.Turns = make([][]Block, len(r.Messages))
	for i, m := range r.Messages {
		if m.Role != "user" && m.Role != "assistant" {
			return invalidf("messages.%d.role: Input should be 'user' or 'assistant'", i)
		}
		blocks, err := contentBlocks(m.Content, fmt.Sprintf("messages.%d.content.", i))
		if err != nil {
			return err
		}
		if len(blocks) == 0 {
			return invalidf("messages.%d: all messages must have non-empty content except for the optional final assistant message", i)
		}
		for j, b := range blocks {
			if err := checkBlock(m.Role, b, fmt.Sprintf("messages.%d.content.%d", i, j)); err != nil {
				return err
			}
		}
		r.Turns[i] = blocks
	}
	return r.checkToolPairs()
}

func (r *Request) hasTool(name string) bool {
	for _, t := range r.Tools {
		if t.Name == name {
			return true
		}
	}
	return false
}

func contentBlocks(raw json.RawMessage, path string) ([]Block, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		if s == "" {
			return nil, nil
		}
		return []Block{{Type: "text", Text: s}}, nil
	}
	var blocks []Block
	if err := decodeStrict(raw, &blocks, path); err != nil {
		return nil, err
	}
	return blocks, nil
}

func checkBlock(role string, b Block, path string) error {
	switch b.Type {
	case "text":
		if b.Text == "" {
			return invalidf("messages: text content blocks must be non-empty")
		}
	case "image":
		if role != "user" {
			return invalidf("%s: image blocks are only allowed in user messages", path)
		}
		if b.Source == nil {
			return invalidf("%s.source: Field required", path)
		}
		switch b.Source.Type {
		case "base64":
			if !mediaTypes[b.Source.MediaType] {
				return invalidf("%s.source.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'", path)
			}
			if b.Source.Data == "" {
				return invalidf("%s.source.data: Field required", path)
			}
		case "url":
			if b.Source.URL == "" {
				return invalidf("%s.source.url: Field required", path)
			}
		default:
			return invalidf("%s.source.type: Input should be 'base64' or 'url'", path)
		}
	case "tool_use":
		if role != "assistant" {
			return invalidf("%s: tool_use blocks are only allowed in assistant messages", path)
		}
		if b.ID == "" || b.Name == "" {
			return invalidf("%s: tool_use blocks need an id and a name", path)
		}
		var in map[string]any
		if err := json.Unmarshal(b.Input, &in); err != nil || in == nil {
			return invalidf("%s.input: Input should be a valid dictionary", path)
		}
	case "tool_result":
		if role != "user" {
			return invalidf("%s: tool_result blocks are only allowed in user messages", path)
		}
		if b.ToolUseID == "" {
			return invalidf("%s.tool_use_id: Field required", path)
		}
		if len(b.Content) > 0 {
			if _, err := contentBlocks(b.Content, path+".content."); err != nil {
				return err
			}
		}
	case "thinking", "redacted_thinking", "document":
	default:
		return invalidf("%s.type: Input tag '%s' found using 'type' does not match any of the expected tags", path, b.Type)
	}
	return nil
}

// checkToolPairs enforces the API's rule: every tool_use block is answered by a
// tool_result block in the very next message, which answers nothing else.
func (r *Request) checkToolPairs() error {
	for i, blocks := range r.Turns {
		var want []string
		if i > 0 && r.Messages[i-1].Role == "assistant" {
			for _, b := range r.Turns[i-1] {
				if b.Type == "tool_use" {
					want = append(want, b.ID)
				}
			}
		}
		got := map[string]bool{}
		for j, b := range blocks {
			if b.Type != "tool_result" {
				continue
			}
			found := false
			for _, id := range want {
				if id == b.ToolUseID {
					found = true
				}
			}
			if !found {
				return invalidf("messages.%d.content.%d: unexpected `tool_use_id` found in `tool_result` blocks: %s. "+
					"Each `tool_result` block must have a corresponding `tool_use` block in the previous message.", i, j, b.ToolUseID)
			}
			got[b.ToolUseID] = true
		}
		if len(want) > 0 {
			var missing []string
			for _, id := range want {
				if !got[id] {
					missing = append(missing, id)
				}
			}
			if len(missing) > 0 {
				return invalidf("messages.%d: `tool_use` ids were found without `tool_result` blocks immediately after: %s. "+
					"Each `tool_use` block must have a corresponding `tool_result` block in the next message.", i-1, strings.Join(missing, ", "))
			}
		}
	}
	if n := len(r.Turns); n > 0 && r.Messages[n-1].Role == "assistant" {
		for _, b := range r.Turns[n-1] {
			if b.Type == "tool_use" {
				return invalidf("messages.%d: `tool_use` ids were found without `tool_result` blocks immediately after: %s. "+
					"Each `tool_use` block must have a corresponding `tool_result` block in the next message.", n-1, b.ID)
			}
		}
	}
	return nil
}

// promptText is everything the prompt holds, for the fake's token count.
func (r *Request) promptText() string {
	var b strings.Builder
	b.WriteString(r.SystemText)
	for _, blocks := range r.Turns {
		for _, bl := range blocks {
			b.WriteString(bl.Text)
			b.Write(bl.Input)
			b.Write(bl.Content)
			if bl.Source != nil {
				// Images count as a fixed size, as the API prices them by area.
				b.WriteString(strings.Repeat("i", 1600*4))
			}
		}
	}
	for _, t := range r.Tools {
		b.WriteString(t.Name)
		b.WriteString(t.Description)
		b.Write(t.InputSchema)
	}
	return b.String()
}

// LastText is the text of the last user turn (what a test asked).
func (r *Request) LastText() string {
	for i := len(r.Turns) - 1; i >= 0; i-- {
		if r.Messages[i].Role != "user" {
			continue
		}
		var b strings.Builder
		for _, bl := range r.Turns[i] {
			b.WriteString(bl.Text)
		}
		return b.String()
	}
	return ""
}
