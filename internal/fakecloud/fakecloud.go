package fakecloud

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options shape a fake cloud. Zero values take the defaults in brackets.
type Options struct {
	// Name is the provider's name in ids and messages ["fakecloud"].
	Name string
	// TTFT is the time to the first token [0]; TokensPerSecond the decode speed after it
	// [unlimited].
	TTFT            time.Duration
	TokensPerSecond float64
	// MaxTokens is the answer length when the request sets no max_tokens [16].
	MaxTokens int
	// ContextWindow in tokens (4 bytes each, prompt plus max_tokens); 0: unlimited.
	ContextWindow int
	// ToolArguments are the arguments of the tool call made when a request has tools
	// (and tool_choice is not "none") [{"query":"sluice"}].
	ToolArguments string
	// Fail, when set, is asked before each completion (n counts from 1) and may answer
	// with an HTTP error status: 429 (with retry-after), 500, 503 or 400 (context
	// length); 0 answers normally.
	Fail func(n int) int
}

// Request is what the fake recorded of one completion request.
type Request struct {
	Model  string
	User   string
	Stream bool
	Tools  bool
	Body   []byte
}

// Server is a running fake cloud.
type Server struct {
	URL  string // base URL with /v1, e.g. http://127.0.0.1:1234/v1
	opts Options
	srv  *http.Server
	ln   net.Listener
	n    atomic.Int64
	live atomic.Int64
	peak atomic.Int64

	fail atomic.Pointer[func(int) int]
	mu   sync.Mutex
	reqs []Request
}

// SetFail replaces Options.Fail (nil: answer normally).
func (s *Server) SetFail(f func(n int) int) {
	if f == nil {
		s.fail.Store(nil)
		return
	}
	s.fail.Store(&f)
}

// Start serves a fake cloud on a loopback port until Close.
func Start(opts Options) (*Server, error) {
	if opts.Name == "" {
		opts.Name = "fakecloud"
	}
	if opts.MaxTokens <= 0 {
		opts.MaxTokens = 16
	}
	if opts.ToolArguments == "" {
		opts.ToolArguments = `{"query":"sluice"}`
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, ln: ln, URL: "http://" + ln.Addr().String() + "/v1"}
	s.SetFail(opts.Fail)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", s.chat)
	mux.HandleFunc("GET /v1/models", s.models)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() { _ = s.srv.Close() }

// Requests returns what was sent so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// Count is the number of completion requests received.
func (s *Server) Count() int { return int(s.n.Load()) }

// Peak is the most completion requests that were in flight at once.
func (s *Server) Peak() int { return int(s.peak.Load()) }

func (s *Server) models(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1721172741,"owned_by":"system"},{"id":"gpt-4o","object":"model","created":1715367049,"owned_by":"system"}]}`)
}

type chatRequest struct {
	Model         string            `json:"model"`
	Messages      []json.RawMessage `json:"messages"`
	Stream        bool              `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	MaxTokens           int             `json:"max_tokens"`
	MaxCompletionTokens int             `json:"max_completion_tokens"`
	User                string          `json:"user"`
	Tools               []toolDef       `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
}

type toolDef struct {
	Type     string `json:"type"`
	Function struct {
		Name string `json:"name"`
	} `json:"function"`
}

func writeError(w http.ResponseWriter, status int, typ, code, param, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	e := map[string]any{"message": msg, "type": typ, "param": nil, "code": nil}
	if code != "" {
		e["code"] = code
	}
	if param != "" {
		e["param"] = param
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"error": e})
}

func (s *Server) chat(w http.ResponseWriter, hr *http.Request) {
	n := int(s.n.Add(1))
	live := s.live.Add(1)
	defer s.live.Add(-1)
	for {
		p := s.peak.Load()
		if live <= p || s.peak.CompareAndSwap(p, live) {
			break
		}
	}
	var body bytes.Buffer
	if _, err := body.ReadFrom(hr.Body); err != nil {
		return
	}
	var req chatRequest
	if err := json.Unmarshal(body.Bytes(), &req); err != nil {
		writeError(w, 400, "invalid_request_error", "", "", "We could not parse the JSON body of your request.")
		return
	}
	if hr.Header.Get("Authorization") == "" {
		writeError(w, 401, "invalid_request_error", "invalid_api_key", "", "You didn't provide an API key.")
		return
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, Request{Model: req.Model, User: req.User, Stream: req.Stream, Tools: len(req.Tools) > 0, Body: body.Bytes()})
	s.mu.Unlock()
	if len(req.Messages) == 0 {
		writeError(w, 400, "invalid_request_error", "", "messages", "[] is too short - 'messages'")
		return
	}
	out := req.MaxCompletionTokens
	if out == 0 {
		out = req.MaxTokens
	}
	if out == 0 {
		out = s.opts.MaxTokens
	}
	prompt := 0
	for _, m := range req.Messages {
		prompt += len(m)/4 + 1
	}
	status := 0
	if f := s.fail.Load(); f != nil {
		status = (*f)(n)
	}
	if status == 0 && s.opts.ContextWindow > 0 && prompt+out > s.opts.ContextWindow {
		status = 400
	}
	switch status {
	case 0:
	case 400:
		writeError(w, 400, "invalid_request_error", "context_length_exceeded", "messages", fmt.Sprintf(
			"This model's maximum context length is %d tokens. However, your messages resulted in %d tokens. Please reduce the length of the messages.",
			s.opts.ContextWindow, prompt+out))
		return
	case 429:
		w.Header().Set("retry-after", "2")
		w.Header().Set("x-ratelimit-remaining-requests", "0")
		writeError(w, 429, "requests", "rate_limit_exceeded", "", "Rate limit reached for requests. Please try again in 2s.")
		return
	case 503:
		w.Header().Set("retry-after", "1")
		writeError(w, 503, "server_error", "", "", "The engine is currently overloaded, please try again later.")
		return
	default:
		writeError(w, status, "server_error", "", "", "The server had an error while processing your request. Sorry about that!")
		return
	}
	toolName := ""
	if len(req.Tools) > 0 && !bytes.Equal(bytes.TrimSpace(req.ToolChoice), []byte(`"none"`)) {
		toolName = req.Tools[0].Function.Name
	}
	a := answer{id: "chatcmpl-" + s.opts.Name + strconv.Itoa(n), model: req.Model, created: time.Now().Unix(),
		prompt: prompt, out: out, tool: toolName, args: s.opts.ToolArguments}
	if !s.wait(hr, s.opts.TTFT) {
		return
	}
	if !req.Stream {
		s.waitTokens(hr, out-1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(a.full())
		return
	}
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	fl, _ := w.(http.Flusher)
	send := func(b []byte) bool {
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return false
		}
		if fl != nil {
			fl.Flush()
		}
		return true
	}
	usage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	for i, c := range a.chunks(usage) {
		if i > 1 && !s.waitTokens(hr, 1) {
			return
		}
		if !send(c) {
			return
		}
	}
	send([]byte("[DONE]"))
}

func (s *Server) wait(hr *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-hr.Context().Done():
		return false
	}
}

func (s *Server) waitTokens(hr *http.Request, n int) bool {
	if s.opts.TokensPerSecond <= 0 || n <= 0 {
		return true
	}
	return s.wait(hr, time.Duration(float64(n)/s.opts.TokensPerSecond*float64(time.Second)))
}

// words the fake answers with, one token each.
var words = []string{"Sure", ",", " here", " is", " a", " fake", " answer", " from", " the", " cloud", "."}

type answer struct {
	id, model  string
	created    int64
	prompt     int
	out        int
	tool, args string
}

func (a *answer) text() string {
	var b strings.Builder
	for i := 0; i < a.out; i++ {
		b.WriteString(words[i%len(words)])
	}
	return b.String()
}

func (a *answer) usage() map[string]any {
	return map[string]any{"prompt_tokens": a.prompt, "completion_tokens": a.out, "total_tokens": a.prompt + a.out,
		"prompt_tokens_details":     map[string]any{"cached_tokens": 0, "audio_tokens": 0},
		"completion_tokens_details": map[string]any{"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
}

func (a *answer) full() []byte {
	msg := map[string]any{"role": "assistant", "content": a.text(), "refusal": nil, "annotations": []any{}}
	finish := "stop"
	if a.tool != "" {
		msg["content"] = nil
		msg["tool_calls"] = []any{map[string]any{"id": "call_" + a.id[len(a.id)-4:], "type": "function",
			"function": map[string]any{"name": a.tool, "arguments": a.args}}}
		finish = "tool_calls"
	}
	b, _ := json.Marshal(map[string]any{"id": a.id, "object": "chat.completion", "created": a.created, "model": a.model,
		"choices": []any{map[string]any{"index": 0, "message": msg, "logprobs": nil, "finish_reason": finish}},
		"usage":   a.usage(), "service_tier": "default", "system_fingerprint": "fp_fake0001"})
	return b
}

func (a *answer) chunk(delta map[string]any, finish any, usage bool) []byte {
	m := map[string]any{"id": a.id, "object": "chat.completion.chunk", "created": a.created, "model": a.model,
		"service_tier": "default", "system_fingerprint": "fp_fake0001",
		"choices": []any{map[string]any{"index": 0, "delta": delta, "logprobs": nil, "finish_reason": finish}}}
	if usage {
		m["usage"] = nil
	}
	b, _ := json.Marshal(m)
	return b
}

// chunks are the stream's events in order (the first carries the role; later ones one
// token or one piece of tool-call arguments each).
func (a *answer) chunks(usage bool) [][]byte {
	var out [][]byte
	if a.tool != "" {
		out = append(out, a.chunk(map[string]any{"role": "assistant", "content": nil, "refusal": nil,
			"tool_calls": []any{map[string]any{"index": 0, "id": "call_" + a.id[len(a.id)-4:], "type": "function",
				"function": map[string]any{"name": a.tool, "arguments": ""}}}}, nil, usage))
		for i := 0; i < len(a.args); i += 8 {
			out = append(out, a.chunk(map[string]any{"tool_calls": []any{map[string]any{"index": 0,
				"function": map[string]any{"arguments": a.args[i:min(i+8, len(a.args))]}}}}, nil, usage))
		}
		out = append(out, a.chunk(map[string]any{}, "tool_calls", usage))
	} else {
		out = append(out, a.chunk(map[string]any{"role": "assistant", "content": "", "refusal": nil}, nil, usage))
		for i := 0; i < a.out; i++ {
			out = append(out, a.chunk(map[string]any{"content": words[i%len(words)]}, nil, usage))
		}
		out = append(out, a.chunk(map[string]any{}, "stop", usage))
	}
	if usage {
		b, _ := json.Marshal(map[string]any{"id": a.id, "object": "chat.completion.chunk", "created": a.created, "model": a.model,
			"service_tier": "default", "system_fingerprint": "fp_fake0001", "choices": []any{}, "usage": a.usage()})
		out = append(out, b)
	}
	return out
}
