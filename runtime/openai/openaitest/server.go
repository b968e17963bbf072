package openaitest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-llm/sluice/runtime/cloudtest"
)

// Flavor is the cloud the fake imitates.
type Flavor uint8

// Flavors.
const (
	OpenAI  Flavor = iota // /v1/chat/completions, Authorization: Bearer
	Azure                 // /openai/deployments/{d}/chat/completions?api-version=, api-key
	Mistral               // /v1/chat/completions, Bearer; refuses OpenAI-only fields with 422
)

// Options configure a fake server. The zero value is OpenAI answering at once.
type Options struct {
	Flavor Flavor
	// APIKey is the key the fake accepts (default "test-key").
	APIKey string
	// Deployments are the Azure deployments that exist (empty: any).
	Deployments []string
	Latency     cloudtest.Latency
	// ReplyTokens is the length of the default reply (default 20).
	ReplyTokens int
	// ContextTokens is the model's window (default 128000; about 4 bytes a token).
	ContextTokens int
	// MaxConcurrent answers requests beyond this many at once with 429 (0: no limit).
	MaxConcurrent int
	// Reply decides the answer (nil: the default reply, text only).
	Reply func(*Request) Reply
}

// Reply is an answer: text, then tool calls.
type Reply struct {
	Text      string
	ToolCalls []Call
}

// Call is a tool call in a reply.
type Call struct {
	ID   string // default: a generated call_ id
	Name string
	Args string // JSON object text (default "{}")
}

// Failure is a scripted refusal, played on the next request.
type Failure struct {
	Status     int    // HTTP status
	Code       string // error code (default: the flavour's for Status)
	Message    string // default: a message like the provider's
	RetryAfter int    // seconds (retry-after; Azure also retry-after-ms)
	// InStream: the stream starts and then ends with an error object after AfterTokens
	// tokens (how OpenAI-compatible servers report a failure mid-stream).
	InStream    bool
	AfterTokens int
}

// Server is a fake OpenAI-compatible cloud on a loopback port.
type Server struct {
	// URL is the base URL clients use: http://host:port/v1 for OpenAI and Mistral, the
	// resource endpoint http://host:port for Azure.
	URL   string
	opts  Options
	srv   *httptest.Server
	fails cloudtest.Script[Failure]
	count cloudtest.Counter
	reqs  cloudtest.Recorder[*Request]
}

// New starts a fake server; Close stops it.
func New(opts Options) *Server {
	if opts.APIKey == "" {
		opts.APIKey = "test-key"
	}
	if opts.ReplyTokens <= 0 {
		opts.ReplyTokens = 20
	}
	if opts.ContextTokens <= 0 {
		opts.ContextTokens = 128000
	}
	s := &Server{opts: opts}
	mux := http.NewServeMux()
	if opts.Flavor == Azure {
		mux.HandleFunc("POST /openai/deployments/{deployment}/chat/completions", s.chat)
	} else {
		mux.HandleFunc("POST /v1/chat/completions", s.chat)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		s.fail(w, Failure{Status: 404, Message: "Resource not found"})
	})
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
	if opts.Flavor != Azure {
		s.URL += "/v1"
	}
	return s
}

// Close stops the server, cutting open connections.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// Fail queues failures for the next requests, one each.
func (s *Server) Fail(f ...Failure) { s.fails.Push(f...) }

// Stats returns what the server has served.
func (s *Server) Stats() cloudtest.Stats { return s.count.Stats() }

// Canceled receives once for each request whose client went away before the end.
func (s *Server) Canceled() <-chan struct{} { return s.count.Canceled() }

// LastRequest is the last valid request received.
func (s *Server) LastRequest() (*Request, bool) { return s.reqs.Last() }

func (s *Server) authorized(hr *http.Request) bool {
	if s.opts.Flavor == Azure {
		return hr.Header.Get("api-key") == s.opts.APIKey
	}
	return hr.Header.Get("Authorization") == "Bearer "+s.opts.APIKey
}

func (s *Server) chat(w http.ResponseWriter, hr *http.Request) {
	n := s.count.Begin()
	defer s.count.End()
	w.Header().Set("x-request-id", "req_"+randID())
	dep := hr.PathValue("deployment")
	if s.opts.Flavor == Azure {
		if hr.URL.Query().Get("api-version") == "" {
			s.fail(w, Failure{Status: 404, Message: "Resource not found"})
			return
		}
	}
	if !s.authorized(hr) {
		s.fail(w, Failure{Status: 401})
		return
	}
	if s.opts.Flavor == Azure && len(s.opts.Deployments) > 0 && !contains(s.opts.Deployments, dep) {
		s.fail(w, Failure{Status: 404, Code: "DeploymentNotFound",
			Message: "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."})
		return
	}
	body, err := io.ReadAll(io.LimitReader(hr.Body, 32<<20))
	if err != nil {
		return
	}
	req, err := decode(body, s.opts.Flavor)
	if err != nil {
		s.refuse(w, err.(*reqError))
		return
	}
	req.Deployment = dep
	s.reqs.Add(req)
	if s.opts.MaxConcurrent > 0 && n > int64(s.opts.MaxConcurrent) {
		s.fail(w, Failure{Status: 429, RetryAfter: 1})
		return
	}
	if tokens := cloudtest.CountTokens(req.promptText()); tokens > s.opts.ContextTokens {
		s.fail(w, s.contextFailure(tokens))
		return
	}
	f, scripted := s.fails.Pop()
	if scripted && !(f.InStream && req.Stream) {
		s.fail(w, f)
		return
	}
	a := s.answer(req)
	if !req.Stream {
		if err := s.opts.Latency.Start().WaitAll(hr.Context(), a.completionTokens()); err != nil {
			s.count.Cancel()
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.completion(req, a))
		return
	}
	var fp *Failure
	if scripted {
		fp = &f
	}
	s.stream(hr.Context(), w, req, a, fp)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

type answer struct {
	id      string
	created int64
	tokens  []string
	calls   []Call
	finish  string
	prompt  int
}

func (a *answer) completionTokens() int {
	n := len(a.tokens)
	for _, c := range a.calls {
		n += cloudtest.CountTokens(c.Name+c.Args) + 1
	}
	return max(n, 1)
}

func (s *Server) answer(req *Request) *answer {
	a := &answer{id: "chatcmpl-" + randID(), created: time.Now().Unix(), prompt: cloudtest.CountTokens(req.promptText())}
	var rep Reply
	if s.opts.Reply != nil {
		rep = s.opts.Reply(req)
	} else {
		rep.Text = strings.Join(cloudtest.Tokens(s.opts.ReplyTokens), "")
	}
	for _, c := range rep.ToolCalls {
		if c.ID == "" {
			c.ID = "call_" + randID()
		}
		if c.Args == "" {
			c.Args = "{}"
		}
		a.calls = append(a.calls, c)
	}
	text := rep.Text
	for _, st := range req.stops() {
		if i := strings.Index(text, st); i >= 0 {
			text, a.calls = text[:i], nil
		}
	}
	a.tokens, a.finish = cloudtest.Split(text), "stop"
	if m := req.maxTokens(); len(a.tokens) > m {
		a.tokens, a.calls, a.finish = a.tokens[:m], nil, "length"
	}
	if len(a.calls) > 0 {
		a.finish = "tool_calls"
	}
	return a
}

func (s *Server) usage(a *answer) map[string]any {
	u := map[string]any{"prompt_tokens": a.prompt, "completion_tokens": a.completionTokens(),
		"total_tokens": a.prompt + a.completionTokens()}
	if s.opts.Flavor != Mistral {
		u["prompt_tokens_details"] = map[string]any{"cached_tokens": 0, "audio_tokens": 0}
		u["completion_tokens_details"] = map[string]any{"reasoning_tokens": 0, "audio_tokens": 0,
			"accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
	}
	return u
}

func (s *Server) model(req *Request) string {
	if req.Model == "" {
		return req.Deployment
	}
	return req.Model
}

// completion is a whole chat.completion object.
func (s *Server) completion(req *Request, a *answer) map[string]any {
	msg := map[string]any{"role": "assistant", "content": strings.Join(a.tokens, "")}
	if s.opts.Flavor != Mistral {
		msg["refusal"] = nil
	}
	if len(a.calls) > 0 {
		var calls []any
		for _, c := range a.calls {
			calls = append(calls, map[string]any{"id": c.ID, "type": "function",
				"function": map[string]any{"name": c.Name, "arguments": c.Args}})
		}
		msg["tool_calls"] = calls
		if len(a.tokens) == 0 {
			msg["content"] = nil
		}
	}
	choice := map[string]any{"index": 0, "message": msg, "finish_reason": a.finish}
	if s.opts.Flavor != Mistral {
		choice["logprobs"] = nil
	}
	out := map[string]any{"id": a.id, "object": "chat.completion", "created": a.created, "model": s.model(req),
		"choices": []any{choice}, "usage": s.usage(a)}
	if s.opts.Flavor == OpenAI {
		out["system_fingerprint"] = "fp_fake"
		out["service_tier"] = "default"
	}
	return out
}

// stream sends the answer as chat.completion.chunk events ending with [DONE].
func (s *Server) stream(ctx context.Context, w http.ResponseWriter, req *Request, a *answer, f *Failure) {
	sse := cloudtest.NewSSE(w, false)
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	chunk := func(delta map[string]any, finish any, usage any) map[string]any {
		choice := map[string]any{"index": 0, "delta": delta, "finish_reason": finish}
		if s.opts.Flavor != Mistral {
			choice["logprobs"] = nil
		}
		c := map[string]any{"id": a.id, "object": "chat.completion.chunk", "created": a.created, "model": s.model(req),
			"choices": []any{choice}}
		if s.opts.Flavor == OpenAI {
			c["system_fingerprint"] = "fp_fake"
		}
		if includeUsage {
			c["usage"] = nil // OpenAI: every chunk but the last has "usage": null
		}
		if usage != nil {
			c["usage"] = usage
		}
		return c
	}
	send := func(v any) bool {
		b, _ := json.Marshal(v)
		if sse.Event("", b) != nil {
			s.count.Cancel()
			return false
		}
		return true
	}
	if s.opts.Flavor == Azure {
		// Azure opens a stream with the prompt's content-filter results.
		if !send(map[string]any{"choices": []any{}, "created": 0, "id": "", "model": "", "object": "",
			"prompt_filter_results": []any{map[string]any{"prompt_index": 0, "content_filter_results": map[string]any{}}}}) {
			return
		}
	}
	first := map[string]any{"role": "assistant", "content": ""}
	if s.opts.Flavor == OpenAI {
		first["refusal"] = nil
	}
	if !send(chunk(first, nil, nil)) {
		return
	}
	pace := s.opts.Latency.Start()
	failAt := -1
	if f != nil {
		failAt = f.AfterTokens
	}
	for i, t := range a.tokens {
		if i == failAt {
			s.count.Fail()
			send(s.errorBody(*f))
			return
		}
		if pace.Wait(ctx) != nil {
			s.count.Cancel()
			return
		}
		if !send(chunk(map[string]any{"content": t}, nil, nil)) {
			return
		}
	}
	if failAt >= 0 {
		s.count.Fail()
		send(s.errorBody(*f))
		return
	}
	for k, c := range a.calls {
		if pace.Wait(ctx) != nil {
			s.count.Cancel()
			return
		}
		head := map[string]any{"index": k, "id": c.ID, "type": "function", "function": map[string]any{"name": c.Name, "arguments": ""}}
		if !send(chunk(map[string]any{"tool_calls": []any{head}}, nil, nil)) {
			return
		}
		for _, part := range splitArgs(c.Args) {
			if !send(chunk(map[string]any{"tool_calls": []any{map[string]any{"index": k, "function": map[string]any{"arguments": part}}}}, nil, nil)) {
				return
			}
		}
	}
	if s.opts.Flavor == Mistral {
		// Mistral reports usage on the last chunk, always.
		if !send(chunk(map[string]any{}, a.finish, s.usage(a))) {
			return
		}
	} else {
		if !send(chunk(map[string]any{}, a.finish, nil)) {
			return
		}
		if includeUsage {
			c := chunk(nil, nil, s.usage(a))
			c["choices"] = []any{}
			if !send(c) {
				return
			}
		}
	}
	_ = sse.Event("", []byte("[DONE]"))
}

func splitArgs(s string) []string {
	const n = 8
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

func (s *Server) contextFailure(tokens int) Failure {
	if s.opts.Flavor == Mistral {
		return Failure{Status: 400, Code: "3051", Message: fmt.Sprintf(
			"Prompt contains %d tokens and 0 draft tokens, too large for model with %d maximum context length", tokens, s.opts.ContextTokens)}
	}
	return Failure{Status: 400, Code: "context_length_exceeded", Message: fmt.Sprintf(
		"This model's maximum context length is %d tokens. However, your messages resulted in %d tokens. Please reduce the length of the messages.",
		s.opts.ContextTokens, tokens)}
}

// errorBody is the flavour's error object.
func (s *Server) errorBody(f Failure) map[string]any {
	typ, code, msg := "invalid_request_error", any(nil), f.Message
	switch {
	case f.Status == 401:
		typ, code = "invalid_request_error", "invalid_api_key"
		if msg == "" {
			msg = "Incorrect API key provided: " + "sk-fa***key" + ". You can find your API key at https://platform.openai.com/account/api-keys."
		}
	case f.Status == 429:
		typ, code = "requests", "rate_limit_exceeded"
		if msg == "" {
			msg = "Rate limit reached for requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in 1s."
		}
	case f.Status >= 500:
		typ = "server_error"
		if msg == "" {
			msg = "The server had an error while processing your request. Sorry about that!"
			if f.Status == 503 {
				msg = "The engine is currently overloaded, please try again later"
			}
		}
	}
	if msg == "" {
		msg = "Invalid request"
	}
	if f.Code != "" {
		code = f.Code
	}
	switch s.opts.Flavor {
	case Azure:
		c := code
		if c == nil {
			c = strconv.Itoa(f.Status)
		}
		if f.Status == 401 {
			msg = "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."
		}
		if f.Status == 429 && f.Message == "" {
			msg = fmt.Sprintf("Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after %d seconds.", max(f.RetryAfter, 1))
		}
		return map[string]any{"error": map[string]any{"code": c, "message": msg, "type": typ, "param": nil}}
	case Mistral:
		if f.Status == 401 {
			return map[string]any{"message": "Unauthorized", "request_id": randID()}
		}
		if f.Status == 429 {
			msg, typ = "Requests rate limit exceeded", "rate_limited"
		}
		return map[string]any{"object": "error", "message": msg, "type": typ, "param": nil, "code": code}
	}
	return map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": code}}
}

func (s *Server) fail(w http.ResponseWriter, f Failure) {
	s.count.Fail()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if f.RetryAfter > 0 {
		h.Set("retry-after", strconv.Itoa(f.RetryAfter))
		if s.opts.Flavor == Azure {
			h.Set("retry-after-ms", strconv.Itoa(f.RetryAfter*1000))
		}
	}
	if f.Status == 429 && s.opts.Flavor == OpenAI {
		h.Set("x-ratelimit-limit-requests", "500")
		h.Set("x-ratelimit-remaining-requests", "0")
		h.Set("x-ratelimit-reset-requests", strconv.Itoa(max(f.RetryAfter, 1))+"s")
	}
	w.WriteHeader(f.Status)
	_ = json.NewEncoder(w).Encode(s.errorBody(f))
}

// refuse answers a request the flavour's validation refused.
func (s *Server) refuse(w http.ResponseWriter, e *reqError) {
	s.count.Fail()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	var body map[string]any
	switch {
	case s.opts.Flavor == Mistral && e.extra != nil:
		body = map[string]any{"object": "error", "message": map[string]any{"detail": e.extra},
			"type": "invalid_request_error", "param": nil, "code": nil}
	case s.opts.Flavor == Mistral:
		body = map[string]any{"object": "error", "message": e.msg, "type": "invalid_request_error", "param": nil, "code": nil}
	default:
		var param any
		if e.param != "" {
			param = e.param
		}
		body = map[string]any{"error": map[string]any{"message": e.msg, "type": "invalid_request_error", "param": param, "code": nil}}
	}
	_ = json.NewEncoder(w).Encode(body)
}

func randID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
