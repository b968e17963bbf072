package models

import (
	"errors"
	"fmt"
	"time"
)

// Error categories. Stages wrap them with %w; the gateway maps them to HTTP status codes.
var (
	ErrInvalid     = errors.New("invalid request")    // 400
	ErrAuth        = errors.New("unauthorized")       // 401
	ErrForbidden   = errors.New("forbidden")          // 403
	ErrNotFound    = errors.New("not found")          // 404 (model, route)
	ErrTooLarge    = errors.New("request too large")  // 413
	ErrRejected    = errors.New("rejected")           // 429: queue full, rate limit
	ErrOverBudget  = errors.New("over budget")        // 429 (budget)
	ErrUpstream    = errors.New("engine error")       // 502
	ErrUnavailable = errors.New("engine unavailable") // 503: the engine is down
	// ErrOverloaded: the engine (or cloud provider) is up but refuses work for now (its
	// own queue is full, 429/503/529 with Retry-After). Not an outage: the engine stays
	// in rotation, and another target may take the request.
	ErrOverloaded = errors.New("engine overloaded")   // 503 with Retry-After
	ErrNoCapacity = errors.New("no capacity")         // 503
	ErrTimeout    = errors.New("timed out")           // 504
	ErrCanceled   = errors.New("canceled by client")  // 499
	ErrSaturated  = errors.New("local capacity full") // overflow signal
)

// CodeContextLength is the Error.Code of a request too long for the model's context
// window (OpenAI's own code): a fallback may try a model with a bigger one.
const CodeContextLength = "context_length_exceeded"

// Error is an error with what the client needs to act on it.
type Error struct {
	Kind       error  // one of the categories above
	Msg        string // human-readable, safe to show a client
	Param      string // the offending request field, if any
	Code       string // machine-readable code, e.g. "model_not_found"
	Status     int    // overrides the category's status when non-zero (engine errors)
	RetryAfter time.Duration
	Err        error // an underlying cause, for errors.Is/As; not shown to clients
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return e.Kind.Error()
	}
	return e.Msg
}

// Unwrap exposes the category and the cause.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Kind}
}

// Errorf returns an *Error of the given category.
func Errorf(kind error, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// InvalidParam reports a bad request field.
func InvalidParam(param, format string, args ...any) *Error {
	return &Error{Kind: ErrInvalid, Param: param, Msg: fmt.Sprintf(format, args...)}
}
