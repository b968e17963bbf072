package cloud

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fasthttp"
)

// Codes of the errors cloud backends return (models.Error.Code).
const (
	CodeContextLength = "context_length_exceeded" // the prompt does not fit the model
	CodeAuth          = "provider_auth_failed"    // the provider refused sluice's own credentials
	CodeBilling       = "provider_billing"        // the provider account cannot pay
	CodeNotFound      = "provider_not_found"      // model or deployment unknown to the provider
	CodeRateLimited   = "provider_rate_limited"   // 429: over the account's rate limit
	CodeOverloaded    = "provider_overloaded"     // 503/529: the provider sheds load
	CodeProvider      = "provider_error"          // 5xx and anything else unexpected
	CodeUnavailable   = "provider_unavailable"    // could not connect, or the connection broke
	CodeStreamEnded   = "provider_stream_ended"   // a stream ended before its last event
	CodeBadResponse   = "provider_bad_response"   // an answer sluice could not read
)

// DefaultRetryAfter is the back-off hint when a refusal carries none.
const DefaultRetryAfter = time.Second

// Failure describes a provider's refusal, as each backend reads it from the body.
type Failure struct {
	Status     int           // HTTP status (or the status an in-stream error type stands for)
	Message    string        // the provider's message
	Type       string        // the provider's error type or status name, for the code
	RetryAfter time.Duration // 0: DefaultRetryAfter where one applies
	// ContextLength: the provider said the prompt is longer than the model's window.
	ContextLength bool
	// Auth: the provider said sluice's credentials are wrong (Gemini answers a bad key
	// with 400).
	Auth bool
}

// Error maps a provider's refusal to sluice's categories, the same way for every
// provider:
//
//	prompt too long                → ErrInvalid, code context_length_exceeded
//	400, 409, 422 and other 4xx     → ErrInvalid (the provider's message)
//	401, 403 (sluice's credentials) → ErrUpstream, code provider_auth_failed, no details
//	402                             → ErrUpstream, code provider_billing
//	404                             → ErrUpstream, code provider_not_found (a config error)
//	408                             → ErrTimeout
//	413                             → ErrTooLarge
//	429                             → ErrOverloaded, code provider_rate_limited, Retry-After
//	503, 529                        → ErrOverloaded, code provider_overloaded, Retry-After
//	other 5xx                       → ErrUpstream, code provider_error
//
// provider is the provider's name ("anthropic") and backend the configured engine name;
// both are safe to show. A provider's message is shown except on credential errors,
// whose messages may echo part of the key.
func Error(provider, backend string, f Failure) *models.Error {
	who := fmt.Sprintf("%s backend %q", provider, backend)
	msg := f.Message
	if msg == "" {
		msg = "no details"
	}
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	e := &models.Error{Msg: who + ": " + msg}
	retry := f.RetryAfter
	if retry <= 0 {
		retry = DefaultRetryAfter
	}
	switch s := f.Status; {
	case f.Auth || s == 401 || s == 403:
		e.Kind, e.Code = models.ErrUpstream, CodeAuth
		e.Msg = fmt.Sprintf("%s: the provider refused sluice's credentials (%d); check the engine's api_key", who, s)
	case f.ContextLength:
		e.Kind, e.Code, e.Param = models.ErrInvalid, CodeContextLength, "messages"
	case s == 402:
		e.Kind, e.Code = models.ErrUpstream, CodeBilling
	case s == 404:
		e.Kind, e.Code = models.ErrUpstream, CodeNotFound
	case s == 408:
		e.Kind = models.ErrTimeout
	case s == 413:
		e.Kind = models.ErrTooLarge
	case s == 429:
		e.Kind, e.Code, e.RetryAfter = models.ErrOverloaded, CodeRateLimited, retry
	case s == 503 || s == 529:
		e.Kind, e.Code, e.RetryAfter = models.ErrOverloaded, CodeOverloaded, retry
	case s >= 400 && s < 500:
		e.Kind = models.ErrInvalid
	default:
		e.Kind, e.Code = models.ErrUpstream, CodeProvider
		e.Msg = fmt.Sprintf("%s answered %d: %s", who, s, msg)
	}
	return e
}

// RetryAfter reads a refusal's back-off hint: retry-after-ms (Azure, OpenAI), else
// Retry-After in seconds or as an HTTP date; 0 when there is none.
func RetryAfter(h *fasthttp.ResponseHeader, now time.Time) time.Duration {
	if v := h.Peek("Retry-After-Ms"); len(v) > 0 {
		if ms, err := strconv.ParseFloat(string(v), 64); err == nil && ms > 0 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := h.Peek("Retry-After")
	if len(v) == 0 {
		return 0
	}
	if n, err := strconv.ParseFloat(string(v), 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(n * float64(time.Second))
	}
	if t, err := fasthttp.ParseHTTPDate(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// TransportError maps an error of the HTTP exchange: cancellation, the request's
// deadline (zero: none), or a provider that cannot be reached. The cause stays in Err,
// out of the client-visible message.
func TransportError(provider, backend string, err error, deadline time.Time) error {
	who := fmt.Sprintf("%s backend %q", provider, backend)
	var op *net.OpError
	switch {
	case errors.Is(err, context.Canceled):
		return &models.Error{Kind: models.ErrCanceled, Msg: who + ": request canceled", Err: err}
	case errors.As(err, &op) && op.Op == "dial":
		// Could not connect (a dial timeout included): the provider is unreachable.
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		// The upstream client interrupts a cancelled call by moving its connection's
		// deadline into the past: a deadline error before the request's own deadline
		// is a cancellation.
		if deadline.IsZero() || time.Now().Before(deadline) {
			return &models.Error{Kind: models.ErrCanceled, Msg: who + ": request canceled", Err: err}
		}
		return &models.Error{Kind: models.ErrTimeout, Msg: who + ": the provider did not answer in time", Err: err}
	}
	return &models.Error{Kind: models.ErrUnavailable, Code: CodeUnavailable, RetryAfter: DefaultRetryAfter,
		Msg: who + ": the provider is unreachable or the connection broke", Err: err}
}

// BadResponse reports an answer that could not be read.
func BadResponse(provider, backend, what string) error {
	return &models.Error{Kind: models.ErrUpstream, Code: CodeBadResponse,
		Msg: fmt.Sprintf("%s backend %q: %s", provider, backend, what)}
}

// StreamEnded reports a stream cut before its last event.
func StreamEnded(provider, backend string) error {
	return &models.Error{Kind: models.ErrUpstream, Code: CodeStreamEnded,
		Msg: fmt.Sprintf("%s backend %q: the provider ended the stream before finishing", provider, backend)}
}
