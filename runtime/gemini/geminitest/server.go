package geminitest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/sluice-llm/sluice/runtime/cloudtest"
)

// Options configure a fake server. The zero value answers at once.
type Options struct {
	// APIKey is the key the fake accepts in x-goog-api-key or ?key= (default "test-key").
	APIKey string
	// Latency shapes answers: time to first token, tokens per second.
	Latency cloudtest.Latency
	// ReplyTokens is the length of the default reply (default 20; maxOutputTokens cuts it).
	ReplyTokens int
	// ContextTokens is the model's input limit (default 1048576; about 4 bytes a token).
	ContextTokens int
	// MaxConcurrent answers requests beyond this many at once with 429
	// RESOURCE_EXHAUSTED (0: no limit).
	MaxConcurrent int
	// ThoughtSignatures: function calls carry a thought signature, and calls sent back
	// without theirs are refused (Gemini 3's behaviour).
	ThoughtSignatures bool
	// Reply decides the answer to a request (nil: the default reply, text only).
	Reply func(*Request) Reply
}

// Reply is an answer: text, then function calls.
type Reply struct {
	Text         string
	Calls        []Call
	FinishReason string // default STOP (MAX_TOKENS when maxOutputTokens cut the text)
}

// Call is a function call in a reply.
type Call struct {
	Name string
	Args string // a JSON object (default "{}")
}

// Failure is a scripted refusal, played on the next request.
type Failure struct {
	Status     int    // HTTP status (400, 429, 500, 503, ...)
	Code       string // google.rpc status name (default: the one for Status)
	Message    string // default: a message like Gemini's
	RetryDelay string // RetryInfo.retryDelay, e.g. "37s" (429)
	// InStream: the stream starts (200) and sends the error as an event after
	// AfterTokens tokens. Only for streamed requests.
	InStream    bool
	AfterTokens int
}

// Server is a fake Gemini API on a loopback port.
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
		opts.ContextTokens = 1 << 20
	}
	s := &Server{opts: opts}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{version}/models/{call}", s.handle)
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
// ended.
func (s *Server) Canceled() <-chan struct{} { return s.count.Canceled() }

// LastRequest is the last valid request received.
func (s *Server) LastRequest() (*Request, bool) { return s.reqs.Last() }

func (s *Server) handle(w http.ResponseWriter, hr *http.Request) {
	n := s.count.Begin()
	defer s.count.End()
	model, method, ok := strings.Cut(hr.PathValue("call"), ":")
	if v := hr.PathValue("version"); !ok || (v != "v1beta" && v != "v1") || (method != "generateContent" && method != "streamGenerateContent") {
		s.fail(w, Failure{Status: 404, Message: "Not found: " + hr.URL.Path})
		return
	}
	key := hr.Header.Get("x-goog-api-key")
	if key == "" {
		key = hr.URL.Query().Get("key")
	}
	switch {
	case key == "":
		s.fail(w, Failure{Status: 403, Message: "Method doesn't allow unregistered callers (callers without established identity). " +
			"Please use API Key or other form of API consumer identity to call this API."})
		return
	case key != s.opts.APIKey:
		s.fail(w, Failure{Status: 400, Message: "API key not valid. Please pass a valid API key."})
		return
	}
	body, err := io.ReadAll(io.LimitReader(hr.Body, 32<<20))
	if err != nil {
		return
	}
	req := &Request{}
	if err := decodeStrict(body, req); err != nil {
		s.fail(w, Failure{Status: 400, Message: err.Error()})
		return
	}
	req.Model = model
	if err := req.validate(s.opts.ThoughtSignatures); err != nil {
		s.fail(w, Failure{Status: 400, Message: err.Error()})
		return
	}
	s.reqs.Add(req)
	if s.opts.MaxConcurrent > 0 && n > int64(s.opts.MaxConcurrent) {
		s.fail(w, Failure{Status: 429, RetryDelay: "1s"})
		return
	}
	if tokens := cloudtest.CountTokens(req.promptText()); tokens > s.opts.ContextTokens {
		s.fail(w, Failure{Status: 400, Message: fmt.Sprintf("The input token count (%d) exceeds the maximum number of tokens allowed (%d).", tokens, s.opts.ContextTokens)})
		return
	}
	stream := method == "streamGenerateContent"
	f, scripted := s.fails.Pop()
	if scripted && !(f.InStream && stream) {
		s.fail(w, f)
		return
	}
	a := s.answer(req)
	if !stream {
		if err := s.opts.Latency.Start().WaitAll(hr.Context(), a.outputTokens()); err != nil {
			s.count.Cancel()
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		_ = json.NewEncoder(w).Encode(a.response(req, a.tokens, a.calls, a.finish, a.outputTokens()))
		return
	}
	var fp *Failure
	if scripted {
		fp = &f
	}
	s.stream(hr.Context(), w, hr.URL.Query().Get("alt") == "sse", req, a, fp)
}

type answer struct {
	id     string
	tokens []string
	calls  []Call
	sigs   []string
	finish string
	input  int
}

func (a *answer) outputTokens() int {
	n := len(a.tokens)
	for _, c := range a.calls {
		n += cloudtest.CountTokens(c.Name+c.Args) + 1
	}
	return max(n, 1)
}

func (s *Server) answer(req *Request) *answer {
	a := &answer{id: randID(), input: cloudtest.CountTokens(req.promptText())}
	var rep Reply
	if s.opts.Reply != nil {
		rep = s.opts.Reply(req)
	} else {
		rep.Text = strings.Join(cloudtest.Tokens(s.opts.ReplyTokens), "")
	}
	a.tokens, a.finish = cloudtest.Split(rep.Text), rep.FinishReason
	for _, c := range rep.Calls {
		if c.Args == "" {
			c.Args = "{}"
		}
		a.calls = append(a.calls, c)
		if s.opts.ThoughtSignatures {
			a.sigs = append(a.sigs, base64.StdEncoding.EncodeToString([]byte("sig-"+randID())))
		} else {
			a.sigs = append(a.sigs, "")
		}
	}
	g := req.GenerationConfig
	if g != nil {
		text := strings.Join(a.tokens, "")
		for _, st := range g.StopSequences {
			if i := strings.Index(text, st); i >= 0 {
				text = text[:i]
				a.calls = nil
			}
		}
		a.tokens = cloudtest.Split(text)
		if g.MaxOutputTokens != nil && len(a.tokens) > *g.MaxOutputTokens {
			a.tokens, a.calls, a.finish = a.tokens[:*g.MaxOutputTokens], nil, "MAX_TOKENS"
		}
	}
	if a.finish == "" {
		a.finish = "STOP"
	}
	return a
}

// response is one GenerateContentResponse with these tokens and calls (finish "" for a
// response in the middle of a stream), usage counting out output tokens so far.
func (a *answer) response(req *Request, tokens []string, calls []Call, finish string, out int) map[string]any {
	parts := []map[string]any{}
	if len(tokens) > 0 {
		parts = append(parts, map[string]any{"text": strings.Join(tokens, "")})
	}
	for i, c := range calls {
		p := map[string]any{"functionCall": map[string]any{"name": c.Name, "args": json.RawMessage(c.Args)}}
		if sig := a.sigs[i]; sig != "" {
			p["thoughtSignature"] = sig
		}
		parts = append(parts, p)
	}
	cand := map[string]any{"content": map[string]any{"parts": parts, "role": "model"}, "index": 0}
	if finish != "" {
		cand["finishReason"] = finish
	}
	usage := map[string]any{"promptTokenCount": a.input, "totalTokenCount": a.input + out,
		"promptTokensDetails": []any{map[string]any{"modality": "TEXT", "tokenCount": a.input}}}
	if out > 0 {
		usage["candidatesTokenCount"] = out
	}
	model := req.Model
	return map[string]any{"candidates": []any{cand}, "usageMetadata": usage, "modelVersion": model, "responseId": a.id}
}

// stream sends the answer: server-sent events with alt=sse, else a JSON array written
// as it goes (the endpoint's default framing).
func (s *Server) stream(ctx context.Context, w http.ResponseWriter, sse bool, req *Request, a *answer, f *Failure) {
	var send func(v any) bool
	var end func()
	if sse {
		ev := cloudtest.NewSSE(w, true)
		send = func(v any) bool {
			b, _ := json.Marshal(v)
			return ev.Event("", b) == nil
		}
		end = func() {}
	} else {
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.WriteHeader(http.StatusOK)
		fl, _ := w.(http.Flusher)
		first := true
		send = func(v any) bool {
			b, _ := json.Marshal(v)
			sep := ",\r\n"
			if first {
				sep, first = "[", false
			}
			if _, err := w.Write(append([]byte(sep), b...)); err != nil {
				return false
			}
			if fl != nil {
				fl.Flush()
			}
			return true
		}
		end = func() { _, _ = w.Write([]byte("]")) }
	}
	pace := s.opts.Latency.Start()
	failAt := -1
	if f != nil {
		failAt = f.AfterTokens
	}
	out := 0
	for i, t := range a.tokens {
		if i == failAt {
			s.count.Fail()
			send(errorBody(*f))
			end()
			return
		}
		if pace.Wait(ctx) != nil {
			s.count.Cancel()
			return
		}
		out++
		finish := ""
		if i == len(a.tokens)-1 && len(a.calls) == 0 {
			finish = a.finish
		}
		if !send(a.response(req, []string{t}, nil, finish, out)) {
			s.count.Cancel()
			return
		}
	}
	if failAt >= 0 {
		s.count.Fail()
		send(errorBody(*f))
		end()
		return
	}
	if len(a.calls) > 0 || len(a.tokens) == 0 {
		if pace.Wait(ctx) != nil {
			s.count.Cancel()
			return
		}
		// Function calls come whole, in one response.
		if !send(a.response(req, nil, a.calls, a.finish, a.outputTokens())) {
			s.count.Cancel()
			return
		}
	}
	end()
}

// errorBody is a google.rpc.Status error.
func errorBody(f Failure) map[string]any {
	if f.Code == "" {
		f.Code = codeOfStatus(f.Status)
	}
	if f.Message == "" {
		f.Message = defaultMessage(f.Code)
	}
	e := map[string]any{"code": f.Status, "message": f.Message, "status": f.Code}
	var details []any
	if f.Status == 429 {
		details = append(details,
			map[string]any{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []any{map[string]any{
				"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
				"quotaId":     "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}}},
			map[string]any{"@type": "type.googleapis.com/google.rpc.Help", "links": []any{map[string]any{
				"description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}}})
		if f.RetryDelay != "" {
			details = append(details, map[string]any{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f.RetryDelay})
		}
	}
	if strings.HasPrefix(f.Message, "API key not valid") {
		details = append(details, map[string]any{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
			"reason": "API_KEY_INVALID", "domain": "googleapis.com", "metadata": map[string]any{"service": "generativelanguage.googleapis.com"}})
	}
	if details != nil {
		e["details"] = details
	}
	return map[string]any{"error": e}
}

// fail answers with Google's error shape.
func (s *Server) fail(w http.ResponseWriter, f Failure) {
	s.count.Fail()
	// Gemini gives a retry delay in the body (RetryInfo), not in a header.
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(f.Status)
	_ = json.NewEncoder(w).Encode(errorBody(f))
}

// codeOfStatus is the google.rpc code name of an HTTP status.
func codeOfStatus(status int) string {
	switch status {
	case 400:
		return "INVALID_ARGUMENT"
	case 401:
		return "UNAUTHENTICATED"
	case 403:
		return "PERMISSION_DENIED"
	case 404:
		return "NOT_FOUND"
	case 429:
		return "RESOURCE_EXHAUSTED"
	case 503:
		return "UNAVAILABLE"
	case 504:
		return "DEADLINE_EXCEEDED"
	}
	return "INTERNAL"
}

func defaultMessage(code string) string {
	switch code {
	case "RESOURCE_EXHAUSTED":
		return "You exceeded your current quota, please check your plan and billing details. " +
			"For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
	case "UNAVAILABLE":
		return "The model is overloaded. Please try again later."
	case "INTERNAL":
		return "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
	case "NOT_FOUND":
		return "models/unknown is not found for API version v1beta, or is not supported for generateContent."
	}
	return "Request contains an invalid argument."
}

func randID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
