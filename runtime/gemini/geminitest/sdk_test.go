package geminitest_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/runtime/cloudtest"
	"github.com/sluice-llm/sluice/runtime/gemini/geminitest"
	"google.golang.org/genai"
)

// These tests drive the fake with Google's official Go SDK: if the SDK reads its
// answers, streams and errors, the fake speaks the API's wire format.

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func client(t *testing.T, s *geminitest.Server, key string) *genai.Client {
	t.Helper()
	c, err := genai.NewClient(ctx(t), &genai.ClientConfig{APIKey: key, Backend: genai.BackendGeminiAPI,
		HTTPOptions: genai.HTTPOptions{BaseURL: s.URL}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func config() *genai.GenerateContentConfig {
	return &genai.GenerateContentConfig{SystemInstruction: genai.NewContentFromText("You are terse.", genai.RoleUser),
		MaxOutputTokens: 64}
}

func TestSDKGenerate(t *testing.T) {
	s := geminitest.New(geminitest.Options{ReplyTokens: 12})
	defer s.Close()
	resp, err := client(t, s, "test-key").Models.GenerateContent(ctx(t), "gemini-test", genai.Text("Write about the sea."), config())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := resp.Text(), strings.Join(cloudtest.Tokens(12), ""); got != want {
		t.Fatalf("text = %q, want %q", got, want)
	}
	c := resp.Candidates[0]
	if c.FinishReason != genai.FinishReasonStop || c.Content.Role != genai.RoleModel {
		t.Fatalf("candidate = %+v", c)
	}
	u := resp.UsageMetadata
	if u.PromptTokenCount <= 0 || u.CandidatesTokenCount != 12 || u.TotalTokenCount != u.PromptTokenCount+12 {
		t.Fatalf("usage = %+v", u)
	}
	got, _ := s.LastRequest()
	if got.Model != "gemini-test" || got.SystemInstruction.Parts[0].Text != "You are terse." ||
		got.LastText() != "Write about the sea." || *got.GenerationConfig.MaxOutputTokens != 64 {
		t.Fatalf("the fake decoded %+v", got)
	}
}

func TestSDKStream(t *testing.T) {
	s := geminitest.New(geminitest.Options{ReplyTokens: 9})
	defer s.Close()
	var text strings.Builder
	var last *genai.GenerateContentResponse
	n := 0
	for resp, err := range client(t, s, "test-key").Models.GenerateContentStream(ctx(t), "gemini-test", genai.Text("Hi."), config()) {
		if err != nil {
			t.Fatal(err)
		}
		text.WriteString(resp.Text())
		last = resp
		n++
	}
	if text.String() != strings.Join(cloudtest.Tokens(9), "") || n != 9 {
		t.Fatalf("%d responses, text %q", n, text.String())
	}
	if last.Candidates[0].FinishReason != genai.FinishReasonStop || last.UsageMetadata.CandidatesTokenCount != 9 {
		t.Fatalf("last response = %+v / %+v", last.Candidates[0], last.UsageMetadata)
	}
}

func TestSDKFunctionCalling(t *testing.T) {
	s := geminitest.New(geminitest.Options{ThoughtSignatures: true, Reply: func(r *geminitest.Request) geminitest.Reply {
		if r.LastText() == "" { // a function response turn
			return geminitest.Reply{Text: "It is 18 degrees."}
		}
		return geminitest.Reply{Calls: []geminitest.Call{{Name: "get_weather", Args: `{"city":"Paris"}`}}}
	}})
	defer s.Close()
	c := client(t, s, "test-key")
	cfg := config()
	cfg.Tools = []*genai.Tool{{FunctionDeclarations: []*genai.FunctionDeclaration{{Name: "get_weather", Description: "Weather",
		ParametersJsonSchema: map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}}}}}
	cfg.ToolConfig = &genai.ToolConfig{FunctionCallingConfig: &genai.FunctionCallingConfig{Mode: genai.FunctionCallingConfigModeAny}}
	contents := genai.Text("Weather in Paris?")
	var call *genai.Part
	for resp, err := range c.Models.GenerateContentStream(ctx(t), "gemini-test", contents, cfg) {
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range resp.Candidates[0].Content.Parts {
			if p.FunctionCall != nil {
				call = p
			}
		}
	}
	if call == nil || call.FunctionCall.Name != "get_weather" || call.FunctionCall.Args["city"] != "Paris" || len(call.ThoughtSignature) == 0 {
		t.Fatalf("function call = %+v", call)
	}
	// Send the call back with its signature and the function's result.
	contents = append(contents, genai.NewContentFromParts([]*genai.Part{call}, genai.RoleModel),
		genai.NewContentFromParts([]*genai.Part{genai.NewPartFromFunctionResponse("get_weather", map[string]any{"output": "18 C"})}, genai.RoleUser))
	resp, err := c.Models.GenerateContent(ctx(t), "gemini-test", contents, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Text() != "It is 18 degrees." {
		t.Fatalf("answer = %q", resp.Text())
	}
	// Without the signature, Gemini 3 refuses the call.
	unsigned := *call
	unsigned.ThoughtSignature = nil
	contents[1] = genai.NewContentFromParts([]*genai.Part{&unsigned}, genai.RoleModel)
	_, err = c.Models.GenerateContent(ctx(t), "gemini-test", contents, cfg)
	var ae genai.APIError
	if !errors.As(err, &ae) || ae.Code != 400 || !strings.Contains(ae.Message, "thought_signature") {
		t.Fatalf("unsigned call: %v", err)
	}
	// A function response without the call before it is refused.
	_, err = c.Models.GenerateContent(ctx(t), "gemini-test", []*genai.Content{contents[0], contents[2]}, cfg)
	if !errors.As(err, &ae) || ae.Code != 400 || !strings.Contains(ae.Message, "function response turn") {
		t.Fatalf("orphan response: %v", err)
	}
}

func TestSDKErrors(t *testing.T) {
	s := geminitest.New(geminitest.Options{ContextTokens: 50})
	defer s.Close()
	c := client(t, s, "test-key")
	cases := []struct {
		fail   *geminitest.Failure
		long   bool
		code   int
		status string
		msg    string
	}{
		{fail: &geminitest.Failure{Status: 429, RetryDelay: "37s"}, code: 429, status: "RESOURCE_EXHAUSTED", msg: "quota"},
		{fail: &geminitest.Failure{Status: 503}, code: 503, status: "UNAVAILABLE", msg: "overloaded"},
		{fail: &geminitest.Failure{Status: 500}, code: 500, status: "INTERNAL"},
		{long: true, code: 400, status: "INVALID_ARGUMENT", msg: "The input token count"},
	}
	for _, tc := range cases {
		if tc.fail != nil {
			s.Fail(*tc.fail)
		}
		prompt := "Hi."
		if tc.long {
			prompt = strings.Repeat("long prompt ", 100)
		}
		_, err := c.Models.GenerateContent(ctx(t), "gemini-test", genai.Text(prompt), config())
		var ae genai.APIError
		if !errors.As(err, &ae) || ae.Code != tc.code || ae.Status != tc.status || !strings.Contains(ae.Message, tc.msg) {
			t.Fatalf("want %d %s, got %v", tc.code, tc.status, err)
		}
		if tc.code == 429 {
			found := false
			for _, d := range ae.Details {
				if d["@type"] == "type.googleapis.com/google.rpc.RetryInfo" && d["retryDelay"] == "37s" {
					found = true
				}
			}
			if !found {
				t.Fatalf("429 without RetryInfo: %+v", ae.Details)
			}
		}
	}
	_, err := client(t, s, "wrong").Models.GenerateContent(ctx(t), "gemini-test", genai.Text("Hi."), config())
	var ae genai.APIError
	if !errors.As(err, &ae) || ae.Code != 400 || !strings.Contains(ae.Message, "API key not valid") {
		t.Fatalf("bad key: %v", err)
	}
}

func TestSDKStreamError(t *testing.T) {
	s := geminitest.New(geminitest.Options{ReplyTokens: 10})
	defer s.Close()
	s.Fail(geminitest.Failure{Status: 503, InStream: true, AfterTokens: 3})
	var text strings.Builder
	var serr error
	for resp, err := range client(t, s, "test-key").Models.GenerateContentStream(ctx(t), "gemini-test", genai.Text("Hi."), config()) {
		if err != nil {
			serr = err
			break
		}
		text.WriteString(resp.Text())
	}
	var ae genai.APIError
	if !errors.As(serr, &ae) || ae.Status != "UNAVAILABLE" {
		t.Fatalf("stream error = %v", serr)
	}
	if text.String() != strings.Join(cloudtest.Tokens(3), "") {
		t.Fatalf("text before the error = %q", text.String())
	}
}
