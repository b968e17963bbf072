package anthropictest

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

// Options configure a fake server. The zero value answers at once.
type Options struct {
	// APIKey is the key the fake accepts in x-api-key (default "test-key").
	APIKey string
	// Latency shapes answers: time to first token, tokens per second.
	Latency cloudtest.Latency
	// ReplyTokens is the length of the default reply (default 20; max_tokens cuts it).
	ReplyTokens int
	// ContextTokens is the model's window: longer prompts get "prompt is too long"
	// (default 200000; tokens counted as about 4 bytes each).
	ContextTokens int
	// MaxConcurrent answers requests beyond this many at once with 429
	// rate_limit_error (0: no limit).
	MaxConcurrent int
	// Reply decides the answer to a request (nil: the default reply, text only).
	Reply func(*Request) Reply
}

// Reply is an answer: text, then tool calls.
type Reply struct {
	Text       string
	ToolCalls  []ToolUse
	StopReason string // default: tool_use with tool calls, else end_turn (or max_tokens)
}

// ToolUse is a tool call in a reply.
type ToolUse struct {
	ID    string // default: a generated toolu_ id
	Name  string
	Input string // a JSON object (default "{}")
}

// Failure is a scripted refusal, played on the next request.
type Failure struct {
	Status     int    // HTTP status (400, 401, 429, 500, 529, ...)
	Type       string // error type (default: the one Anthropic documents for Status)
	Message    string // default: a message like Anthropic's
	RetryAfter int    // seconds, sent as retry-after (0: none)
	// InStream: the request starts streaming (200, message_start) and fails with an
	// error event after AfterTokens text tokens. Only for streamed requests; a whole
	// request gets the plain error instead.
	InStream    bool
	AfterTokens int
}

// Server is a fake Anthropic API on a loopback port.
type Server struct {
	URL   string // base URL, e.g. http://127.0.0.1:41234 (the SDK's base URL)
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
		opts.ContextTokens = 200000
	}
	s := &Server{opts: opts}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/messages", s.messages)
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
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

// Canceled receives once for each request whose client went away before the answer
// ended (the provider saw the disconnect).
func (s *Server) Canceled() <-chan struct{} { return s.count.Canceled() }

// LastRequest is the last valid request received.
func (s *Server) LastRequest() (*Request, bool) { return s.reqs.Last() }

func (s *Server) messages(w http.ResponseWriter, hr *http.Request) {
	n := s.count.Begin()
	defer s.count.End()
	w.Header().Set("request-id", "req_"+randID())
	// The API documents x-api-key; recent SDKs send the same key as a bearer token.
	key := hr.Header.Get("x-api-key")
	if b, ok := strings.CutPrefix(hr.Header.Get("Authorization"), "Bearer "); ok && key == "" {
		key = b
	}
	switch {
	case key == "":
		s.fail(w, Failure{Status: 401, Message: "x-api-key header is required"})
		return
	case key != s.opts.APIKey:
		s.fail(w, Failure{Status: 401, Message: "invalid x-api-key"})
		return
	}
	if hr.Header.Get("anthropic-version") == "" {
		s.fail(w, Failure{Status: 400, Message: "anthropic-version: header is required"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(hr.Body, 32<<20))
	if err != nil {
		return
	}
	req := &Request{}
	if err := decodeStrict(body, req, ""); err != nil {
		s.fail(w, Failure{Status: 400, Message: err.Error()})
		return
	}
	if err := req.validate(); err != nil {
		s.fail(w, Failure{Status: 400, Message: err.Error()})
		return
	}
	s.reqs.Add(req)
	if s.opts.MaxConcurrent > 0 && n > int64(s.opts.MaxConcurrent) {
		s.fail(w, Failure{Status: 429, RetryAfter: 1})
		return
	}
	if tokens := cloudtest.CountTokens(req.promptText()); tokens > s.opts.ContextTokens {
		s.fail(w, Failure{Status: 400, Message: fmt.Sprintf("prompt is too long: %d tokens > %d maximum", tokens, s.opts.ContextTokens)})
		return
	}
	f, scripted := s.fails.Pop()
	if scripted && !(f.InStream && req.Stream) {
		s.fail(w, f)
		return
	}
	a := s.answer(req)
	if req.Stream {
		var fp *Failure
		if scripted {
			fp = &f
		}
		s.stream(hr.Context(), w, req, a, fp)
		return
	}
	pace := s.opts.Latency.Start()
	if err := pace.WaitAll(hr.Context(), a.outputTokens()); err != nil {
		s.count.Cancel()
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(a.message(req))
}

// answer is a reply ready to send.
type answer struct {
	id          string
	tokens      []string
	calls       []ToolUse
	stopReason  string
	stopSeq     *string
	inputTokens int
}

func (a *answer) outputTokens() int {
	n := len(a.tokens)
	for _, c := range a.calls {
		n += cloudtest.CountTokens(c.Input) + 1
	}
	return max(n, 1)
}

func (s *Server) answer(req *Request) *answer {
	a := &answer{id: "msg_" + randID(), inputTokens: cloudtest.CountTokens(req.promptText())}
	var rep Reply
	if s.opts.Reply != nil {
		rep = s.opts.Reply(req)
	} else {
		rep.Text = strings.Join(cloudtest.Tokens(s.opts.ReplyTokens), "")
	}
	a.tokens = cloudtest.Split(rep.Text)
	for _, c := range rep.ToolCalls {
		if c.ID == "" {
			c.ID = "toolu_" + randID()
		}
		if c.Input == "" {
			c.Input = "{}"
		}
		a.calls = append(a.calls, c)
	}
	a.stopReason = rep.StopReason
	// Stop sequences cut the text where the first one appears.
	text := strings.Join(a.tokens, "")
	cut, seq := len(text), ""
	for _, st := range req.StopSequences {
		if i := strings.Index(text, st); i >= 0 && i < cut {
			cut, seq = i, st
		}
	}
	if seq != "" {
		a.tokens, a.calls = cloudtest.Split(text[:cut]), nil
		a.stopReason, a.stopSeq = "stop_sequence", &seq
	}
	if max := *req.MaxTokens; len(a.tokens) > max {
		a.tokens, a.calls, a.stopReason = a.tokens[:max], nil, "max_tokens"
	}
	if a.stopReason == "" {
		a.stopReason = "end_turn"
		if len(a.calls) > 0 {
			a.stopReason = "tool_use"
		}
	}
	return a
}

func (a *answer) usage() map[string]any {
	return map[string]any{"input_tokens": a.inputTokens, "output_tokens": a.outputTokens(),
		"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "service_tier": "standard"}
}

// message is the whole answer, as a non-streamed request gets it.
func (a *answer) message(req *Request) map[string]any {
	content := []map[string]any{}
	if len(a.tokens) > 0 {
		content = append(content, map[string]any{"type": "text", "text": strings.Join(a.tokens, "")})
	}
	for _, c := range a.calls {
		content = append(content, map[string]any{"type": "tool_use", "id": c.ID, "name": c.Name, "input": json.RawMessage(c.Input)})
	}
	return map[string]any{"id": a.id, "type": "message", "role": "assistant", "model": req.Model,
		"content": content, "stop_reason": a.stopReason, "stop_sequence": a.stopSeq, "usage": a.usage()}
}

// stream sends the answer as Anthropic's event stream.
func (s *Server) stream(ctx context.Context, w http.ResponseWriter, req *Request, a *answer, f *Failure) {
	sse := cloudtest.NewSSE(w, false)
	ev := func(name string, v any) bool {
		b, _ := json.Marshal(v)
		return sse.Event(name, b) == nil
	}
	start := map[string]any{"id": a.id, "type": "message", "role": "assistant", "model": req.Model, "content": []any{},
		"stop_reason": nil, "stop_sequence": nil,
		"usage": map[string]any{"input_tokens": a.inputTokens, "output_tokens": 1,
			"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "service_tier": "standard"}}
	if !ev("message_start", map[string]any{"type": "message_start", "message": start}) {
		s.count.Cancel()
		return
	}
	pace := s.opts.Latency.Start()
	failAt := -1
	if f != nil {
		failAt = f.AfterTokens
	}
	failNow := func() {
		ft := f.Type
		if ft == "" {
			ft = typeOfStatus(f.Status)
		}
		msg := f.Message
		if msg == "" {
			msg = defaultMessage(ft)
		}
		s.count.Fail()
		ev("error", map[string]any{"type": "error", "error": map[string]any{"type": ft, "message": msg}})
	}
	block := 0
	if len(a.tokens) > 0 || len(a.calls) == 0 {
		if !ev("content_block_start", map[string]any{"type": "content_block_start", "index": 0,
			"content_block": map[string]any{"type": "text", "text": ""}}) {
			s.count.Cancel()
			return
		}
		ev("ping", map[string]any{"type": "ping"})
		for i, t := range a.tokens {
			if i == failAt {
				failNow()
				return
			}
			if pace.Wait(ctx) != nil || !ev("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0,
				"delta": map[string]any{"type": "text_delta", "text": t}}) {
				s.count.Cancel()
				return
			}
		}
		ev("content_block_stop", map[string]any{"type": "content_block_stop", "index": 0})
		block++
	}
	if failAt >= 0 {
		failNow()
		return
	}
	for _, c := range a.calls {
		if !ev("content_block_start", map[string]any{"type": "content_block_start", "index": block,
			"content_block": map[string]any{"type": "tool_use", "id": c.ID, "name": c.Name, "input": map[string]any{}}}) {
			s.count.Cancel()
			return
		}
		// The input arrives as partial JSON: first an empty fragment, then pieces.
		parts := append([]string{""}, splitJSON(c.Input)...)
		for _, p := range parts {
			if pace.Wait(ctx) != nil || !ev("content_block_delta", map[string]any{"type": "content_block_delta", "index": block,
				"delta": map[string]any{"type": "input_json_delta", "partial_json": p}}) {
				s.count.Cancel()
				return
			}
		}
		ev("content_block_stop", map[string]any{"type": "content_block_stop", "index": block})
		block++
	}
	ev("message_delta", map[string]any{"type": "message_delta",
		"delta": map[string]any{"stop_reason": a.stopReason, "stop_sequence": a.stopSeq},
		"usage": map[string]any{"output_tokens": a.outputTokens()}})
	ev("message_stop", map[string]any{"type": "message_stop"})
}

// splitJSON cuts a JSON text into a few fragments, as the API streams tool input.
func splitJSON(s string) []string {
	const n = 8
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

// fail answers with Anthropic's error shape.
func (s *Server) fail(w http.ResponseWriter, f Failure) {
	s.count.Fail()
	if f.Type == "" {
		f.Type = typeOfStatus(f.Status)
	}
	if f.Message == "" {
		f.Message = defaultMessage(f.Type)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if f.RetryAfter > 0 {
		h.Set("retry-after", strconv.Itoa(f.RetryAfter))
	}
	if f.Status == 429 {
		h.Set("anthropic-ratelimit-requests-limit", "50")
		h.Set("anthropic-ratelimit-requests-remaining", "0")
		h.Set("anthropic-ratelimit-requests-reset", time.Now().Add(time.Duration(max(f.RetryAfter, 1))*time.Second).UTC().Format(time.RFC3339))
	}
	w.WriteHeader(f.Status)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": "error",
		"error":      map[string]any{"type": f.Type, "message": f.Message},
		"request_id": w.Header().Get("request-id")})
}

// typeOfStatus is the error type Anthropic documents for a status.
func typeOfStatus(status int) string {
	switch status {
	case 400:
		return "invalid_request_error"
	case 401:
		return "authentication_error"
	case 402:
		return "billing_error"
	case 403:
		return "permission_error"
	case 404:
		return "not_found_error"
	case 413:
		return "request_too_large"
	case 429:
		return "rate_limit_error"
	case 504:
		return "timeout_error"
	case 529:
		return "overloaded_error"
	}
	return "api_error"
}

func defaultMessage(typ string) string {
	switch typ {
	case "overloaded_error":
		return "Overloaded"
	case "rate_limit_error":
		return "Number of request tokens has exceeded your per-minute rate limit"
	case "api_error":
		return "Internal server error"
	case "authentication_error":
		return "invalid x-api-key"
	case "not_found_error":
		return "model: not found"
	}
	return "Invalid request"
}

func randID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
