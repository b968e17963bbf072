package geminitest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Request is a generateContent request as the fake decodes it. Unknown fields are
// refused, as the real API refuses them.
type Request struct {
	Contents          []Content         `json:"contents"`
	SystemInstruction *Content          `json:"systemInstruction,omitempty"`
	Tools             []Tool            `json:"tools,omitempty"`
	ToolConfig        *ToolConfig       `json:"toolConfig,omitempty"`
	GenerationConfig  *GenerationConfig `json:"generationConfig,omitempty"`
	SafetySettings    json.RawMessage   `json:"safetySettings,omitempty"`
	CachedContent     string            `json:"cachedContent,omitempty"`
	Labels            json.RawMessage   `json:"labels,omitempty"`

	Model string `json:"-"` // from the path
}

// Content is one turn.
type Content struct {
	Role  string `json:"role,omitempty"`
	Parts []Part `json:"parts"`
}

// Part is one piece of a turn; exactly one data field is set.
type Part struct {
	Text             string            `json:"text,omitempty"`
	InlineData       *Blob             `json:"inlineData,omitempty"`
	FileData         *FileData         `json:"fileData,omitempty"`
	FunctionCall     *FunctionCall     `json:"functionCall,omitempty"`
	FunctionResponse *FunctionResponse `json:"functionResponse,omitempty"`
	Thought          bool              `json:"thought,omitempty"`
	ThoughtSignature string            `json:"thoughtSignature,omitempty"`
}

// Blob is inline bytes (base64).
type Blob struct {
	MimeType string `json:"mimeType"`
	Data     string `json:"data"`
}

// FileData is a file reference.
type FileData struct {
	MimeType string `json:"mimeType,omitempty"`
	FileURI  string `json:"fileUri"`
}

// FunctionCall is a call the model made.
type FunctionCall struct {
	ID   string          `json:"id,omitempty"`
	Name string          `json:"name"`
	Args json.RawMessage `json:"args,omitempty"`
}

// FunctionResponse is a tool's result.
type FunctionResponse struct {
	ID       string          `json:"id,omitempty"`
	Name     string          `json:"name"`
	Response json.RawMessage `json:"response"`
}

// Tool holds function declarations (other tool kinds are accepted and ignored).
type Tool struct {
	FunctionDeclarations []FunctionDeclaration `json:"functionDeclarations,omitempty"`
	GoogleSearch         json.RawMessage       `json:"googleSearch,omitempty"`
	CodeExecution        json.RawMessage       `json:"codeExecution,omitempty"`
}

// FunctionDeclaration declares a function the model may call.
type FunctionDeclaration struct {
	Name                 string          `json:"name"`
	Description          string          `json:"description,omitempty"`
	Parameters           json.RawMessage `json:"parameters,omitempty"`
	ParametersJSONSchema json.RawMessage `json:"parametersJsonSchema,omitempty"`
	Response             json.RawMessage `json:"response,omitempty"`
	ResponseJSONSchema   json.RawMessage `json:"responseJsonSchema,omitempty"`
	Behavior             string          `json:"behavior,omitempty"`
}

// ToolConfig configures function calling.
type ToolConfig struct {
	FunctionCallingConfig *FunctionCallingConfig `json:"functionCallingConfig,omitempty"`
}

// FunctionCallingConfig is the calling mode.
type FunctionCallingConfig struct {
	Mode                 string   `json:"mode,omitempty"` // AUTO | ANY | NONE | VALIDATED
	AllowedFunctionNames []string `json:"allowedFunctionNames,omitempty"`
}

// GenerationConfig holds sampling and output options.
type GenerationConfig struct {
	StopSequences      []string        `json:"stopSequences,omitempty"`
	ResponseMimeType   string          `json:"responseMimeType,omitempty"`
	ResponseSchema     json.RawMessage `json:"responseSchema,omitempty"`
	ResponseJSONSchema json.RawMessage `json:"responseJsonSchema,omitempty"`
	CandidateCount     *int            `json:"candidateCount,omitempty"`
	MaxOutputTokens    *int            `json:"maxOutputTokens,omitempty"`
	Temperature        *float64        `json:"temperature,omitempty"`
	TopP               *float64        `json:"topP,omitempty"`
	TopK               *float64        `json:"topK,omitempty"`
	Seed               *int64          `json:"seed,omitempty"`
	PresencePenalty    *float64        `json:"presencePenalty,omitempty"`
	FrequencyPenalty   *float64        `json:"frequencyPenalty,omitempty"`
	ResponseLogprobs   *bool           `json:"responseLogprobs,omitempty"`
	Logprobs           *int            `json:"logprobs,omitempty"`
	ThinkingConfig     json.RawMessage `json:"thinkingConfig,omitempty"`
}

// badRequest is a 400 INVALID_ARGUMENT with the API's message.
type badRequest string

func (e badRequest) Error() string { return string(e) }

func badf(format string, args ...any) error { return badRequest(fmt.Sprintf(format, args...)) }

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return badf("Invalid JSON payload received. Unknown name %s: Cannot find field.", f)
		}
		return badf("Invalid JSON payload received. %v", err)
	}
	return nil
}

// validate checks the request as the API does. requireSig: function calls in model
// turns must carry their thought signature (Gemini 3).
func (r *Request) validate(requireSig bool) error {
	if len(r.Contents) == 0 {
		return badf("* GenerateContentRequest.contents: contents is not specified")
	}
	if r.SystemInstruction != nil {
		for j, p := range r.SystemInstruction.Parts {
			if p.Text == "" {
				return badf("* GenerateContentRequest.system_instruction.parts[%d].data: required oneof field 'data' must have one initialized field", j)
			}
		}
	}
	declared := map[string]bool{}
	for i, t := range r.Tools {
		for j, fd := range t.FunctionDeclarations {
			if fd.Name == "" {
				return badf("* GenerateContentRequest.tools[%d].function_declarations[%d].name: Name cannot be empty.", i, j)
			}
			if len(fd.Parameters) > 0 && len(fd.ParametersJSONSchema) > 0 {
				return badf("* GenerateContentRequest.tools[%d].function_declarations[%d]: parameters and parameters_json_schema are mutually exclusive", i, j)
			}
			declared[fd.Name] = true
		}
	}
	if tc := r.ToolConfig; tc != nil && tc.FunctionCallingConfig != nil {
		fc := tc.FunctionCallingConfig
		switch fc.Mode {
		case "", "AUTO", "ANY", "NONE", "VALIDATED":
		default:
			return badf("Invalid value at 'tool_config.function_calling_config.mode' (type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), %q", fc.Mode)
		}
		for _, n := range fc.AllowedFunctionNames {
			if !declared[n] {
				return badf("* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: %s is not a declared function", n)
			}
		}
		if len(fc.AllowedFunctionNames) > 0 && fc.Mode != "ANY" && fc.Mode != "VALIDATED" {
			return badf("* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: only allowed in ANY or VALIDATED mode")
		}
	}
	if g := r.GenerationConfig; g != nil {
		if g.Temperature != nil && (*g.Temperature < 0 || *g.Temperature > 2) {
			return badf("* GenerateContentRequest.generation_config.temperature: must be in [0.0, 2.0]")
		}
		if g.MaxOutputTokens != nil && *g.MaxOutputTokens < 1 {
			return badf("* GenerateContentRequest.generation_config.max_output_tokens: must be positive")
		}
		if len(g.ResponseJSONSchema) > 0 && g.ResponseMimeType != "application/json" {
			return badf("* GenerateContentRequest.generation_config.response_mime_type: must be application/json with a response schema")
		}
	}
	for i, c := range r.Contents {
		switch c.Role {
		case "", "user", "model", "function":
		default:
			return badf("Please use a valid role: user, model.")
		}
		if len(c.Parts) == 0 {
			return badf("* GenerateContentRequest.contents[%d].parts: contents.parts must not be empty.", i)
		}
		for j, p := range c.Parts {
			n := 0
			for _, set := range []bool{p.Text != "", p.InlineData != nil, p.FileData != nil, p.FunctionCall != nil, p.FunctionResponse != nil} {
				if set {
					n++
				}
			}
			if n != 1 {
				return badf("* GenerateContentRequest.contents[%d].parts[%d].data: required oneof field 'data' must have one initialized field", i, j)
			}
			if p.FunctionCall != nil {
				if c.Role != "model" {
					return badf("* GenerateContentRequest.contents[%d].parts[%d]: function calls are only allowed in model turns", i, j)
				}
				if requireSig && p.ThoughtSignature == "" {
					return badf("Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, "+
						"and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:%s` , position %d.",
						p.FunctionCall.Name, j+1)
				}
			}
			if fr := p.FunctionResponse; fr != nil {
				if fr.Name == "" {
					return badf("* GenerateContentRequest.contents[%d].parts[%d].function_response.name: Name cannot be empty.", i, j)
				}
				var obj map[string]any
				if err := json.Unmarshal(fr.Response, &obj); err != nil || obj == nil {
					return badf("Invalid JSON payload received. contents[%d].parts[%d].function_response.response: Starting an object on a scalar field", i, j)
				}
			}
			if b := p.InlineData; b != nil && (b.MimeType == "" || b.Data == "") {
				return badf("* GenerateContentRequest.contents[%d].parts[%d].inline_data: mime_type and data are required", i, j)
			}
		}
	}
	return r.checkCallTurns()
}

// checkCallTurns enforces that a turn of function responses follows a turn of function
// calls and answers as many calls as it made.
func (r *Request) checkCallTurns() error {
	for i, c := range r.Contents {
		responses := 0
		for _, p := range c.Parts {
			if p.FunctionResponse != nil {
				responses++
			}
		}
		if responses == 0 {
			continue
		}
		calls := 0
		if i > 0 {
			for _, p := range r.Contents[i-1].Parts {
				if p.FunctionCall != nil {
					calls++
				}
			}
		}
		if calls == 0 {
			return badf("Please ensure that function response turn comes immediately after a function call turn.")
		}
		if calls != responses {
			return badf("Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.")
		}
	}
	return nil
}

// promptText is everything the prompt holds, for the fake's token count.
func (r *Request) promptText() string {
	var b strings.Builder
	if r.SystemInstruction != nil {
		for _, p := range r.SystemInstruction.Parts {
			b.WriteString(p.Text)
		}
	}
	for _, c := range r.Contents {
		for _, p := range c.Parts {
			b.WriteString(p.Text)
			if p.InlineData != nil {
				b.WriteString(strings.Repeat("i", 258*4)) // an image is 258 tokens
			}
			if p.FunctionCall != nil {
				b.WriteString(p.FunctionCall.Name)
				b.Write(p.FunctionCall.Args)
			}
			if p.FunctionResponse != nil {
				b.Write(p.FunctionResponse.Response)
			}
		}
	}
	for _, t := range r.Tools {
		for _, fd := range t.FunctionDeclarations {
			b.WriteString(fd.Name)
			b.WriteString(fd.Description)
			b.Write(fd.Parameters)
			b.Write(fd.ParametersJSONSchema)
		}
	}
	return b.String()
}

// LastText is the text of the last user turn.
func (r *Request) LastText() string {
	for i := len(r.Contents) - 1; i >= 0; i-- {
		if r.Contents[i].Role == "model" {
			continue
		}
		var b strings.Builder
		for _, p := range r.Contents[i].Parts {
			b.WriteString(p.Text)
		}
		return b.String()
	}
	return ""
}
