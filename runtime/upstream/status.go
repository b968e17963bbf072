package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fastjson"
)

// The one table of engine answers. Every runtime (llama-server, Ollama, OpenAI-compatible
// engines) maps an engine's HTTP error status with StatusError and a failure to reach it
// with TransportError, so a given answer means the same to a client whichever engine gave
// it:
//
//	engine answer                       category        client status  code
//	400, 422                            ErrInvalid      400            (the engine's, if any)
//	context too long (any 4xx/500)      ErrInvalid      400            context_length_exceeded
//	401, 403                            ErrUpstream     502            engine_auth_failed
//	404                                 ErrUpstream     502            engine_model_not_found
//	408, 504                            ErrTimeout      504            engine_timeout
//	413                                 ErrTooLarge     413            request_too_large
//	429, 503, 529 (+ Retry-After)       ErrOverloaded   503            engine_overloaded
//	499                                 ErrCanceled     499
//	500, 502, anything else             ErrUpstream     502            engine_error
//	refused, reset, no answer           ErrUnavailable  503            engine_unavailable
//
// An engine's 404 is a 502: the router has already matched the client's model to this
// engine, so a model the engine lacks is sluice's configuration (or the engine's state),
// not a wrong name from the client; the client's own unknown models get 404
// model_not_found from the router. 401/403 concern sluice's credentials for the engine,
// not the client's.
//
// Messages are safe for clients: the engine's text is passed on only for the answers
// about the client's request (400, 413, 422, context length), cut to maxMessage bytes;
// everything else (server errors, auth, addresses in dial errors) stays in Err, for logs.

// maxMessage bounds the engine text passed on to a client.
const maxMessage = 300

// Retry-After bounds: a hint outside them is clamped (an engine asking for an hour is
// asked again in a minute); none, or one that cannot be read, is defaultRetry.
const (
	defaultRetry = time.Second
	maxRetry     = time.Minute
)

// StatusError maps an engine's error answer (HTTP status, Retry-After header, body:
// an OpenAI- or llama-server-style JSON error, or plain text) to a *models.Error.
func StatusError(backend string, status int, retryAfter string, body []byte) *models.Error {
	msg, code, typ := ErrorBody(body)
	cause := fmt.Errorf("engine %s answered %d: %s", backend, status, msg)
	if status != http.StatusTooManyRequests && status != http.StatusServiceUnavailable && status != 529 &&
		contextLength(msg, code, typ) {
		return &models.Error{Kind: models.ErrInvalid, Code: models.CodeContextLength, Param: "messages",
			Msg: fmt.Sprintf("engine %s: %s", backend, clip(msg)), Err: cause}
	}
	e := &models.Error{Err: cause}
	switch status {
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		e.Kind, e.Msg = models.ErrInvalid, fmt.Sprintf("engine %s: %s", backend, clip(msg))
		if isCode(code) {
			e.Code = code
		}
	case http.StatusUnauthorized, http.StatusForbidden:
		e.Kind, e.Code = models.ErrUpstream, "engine_auth_failed"
		e.Msg = fmt.Sprintf("engine %s refused sluice's credentials (%d)", backend, status)
	case http.StatusNotFound:
		e.Kind, e.Code = models.ErrUpstream, "engine_model_not_found"
		e.Msg = fmt.Sprintf("engine %s does not serve the model it was configured for (404)", backend)
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		e.Kind, e.Code = models.ErrTimeout, "engine_timeout"
		e.Msg = fmt.Sprintf("engine %s did not answer in time (%d)", backend, status)
	case http.StatusRequestEntityTooLarge:
		e.Kind, e.Code = models.ErrTooLarge, "request_too_large"
		e.Msg = fmt.Sprintf("engine %s: request too large: %s", backend, clip(msg))
	case http.StatusTooManyRequests, http.StatusServiceUnavailable, 529:
		e.Kind, e.Code = models.ErrOverloaded, "engine_overloaded"
		e.RetryAfter = RetryAfter(retryAfter, time.Now())
		e.Msg = fmt.Sprintf("engine %s is overloaded, retry later (%d)", backend, status)
	case 499: // Ollama: the client closed the request
		e.Kind = models.ErrCanceled
		e.Msg = "request canceled"
	default:
		e.Kind, e.Code = models.ErrUpstream, "engine_error"
		e.Msg = fmt.Sprintf("engine %s failed (%d)", backend, status)
	}
	return e
}

// StreamError maps an error an engine sent inside an answer already under way (an SSE
// error event, or a chunk with an error object): by the status it names, if any, else as
// a server error.
func StreamError(backend string, data []byte) *models.Error {
	status := http.StatusInternalServerError
	var p fastjson.Parser
	if v, err := p.ParseBytes(data); err == nil {
		ev := v.Get("error")
		if ev == nil || ev.Type() != fastjson.TypeObject {
			ev = v
		}
		if n := ev.GetInt("code"); n >= 400 && n < 600 {
			status = n
		}
	}
	return StatusError(backend, status, "", data)
}

// ErrorBody reads an engine's error answer: its message, and its code and type when it
// names them ({"error":{"message","code","type"}} as OpenAI and llama-server send,
// {"error":"..."} as Ollama does, {"message":"..."}), or the text itself.
func ErrorBody(body []byte) (msg, code, typ string) {
	var p fastjson.Parser
	if v, err := p.ParseBytes(body); err == nil && v.Type() == fastjson.TypeObject {
		e := v.Get("error")
		switch {
		case e != nil && e.Type() == fastjson.TypeObject:
			msg = string(e.GetStringBytes("message"))
			code = string(e.GetStringBytes("code")) // llama-server's code is the status (a number): ignored
			typ = string(e.GetStringBytes("type"))
		case e != nil && e.Type() == fastjson.TypeString:
			msg = string(e.GetStringBytes())
		default:
			msg = string(v.GetStringBytes("message"))
		}
		if msg != "" {
			if len(msg) > 4*maxMessage {
				msg = msg[:4*maxMessage]
			}
			return msg, code, typ
		}
	}
	if len(body) > 4*maxMessage {
		body = body[:4*maxMessage]
	}
	msg = strings.TrimSpace(string(body))
	if msg == "" {
		msg = "no details"
	}
	return msg, code, typ
}

// contextLength reports whether an engine's answer says the prompt does not fit its
// context: llama-server ("exceeds the available context size", exceed_context_size_error),
// OpenAI and vLLM (context_length_exceeded, "maximum context length"), Ollama ("exceeds
// maximum context length").
func contextLength(msg, code, typ string) bool {
	if code == "context_length_exceeded" || typ == "exceed_context_size_error" {
		return true
	}
	m := strings.ToLower(msg)
	return strings.Contains(m, "exceeds the available context size") || strings.Contains(m, "maximum context length") ||
		strings.Contains(m, "context_length_exceeded")
}

// isCode reports whether s looks like an OpenAI error code (a short snake_case word),
// worth passing on to the client.
func isCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// clip cuts an engine's text to maxMessage bytes (at a rune boundary) on one line.
func clip(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// RetryAfter reads a Retry-After header value, delay-seconds or an HTTP-date (taken
// against now), as a duration in [1s, 1m]; empty or unreadable: 1s.
func RetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return defaultRetry
	}
	var d time.Duration
	if n, err := strconv.ParseUint(v, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		if err != nil || n > uint64(maxRetry/time.Second) {
			return maxRetry // more digits than fit: a long time
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return defaultRetry
	}
	return min(max(d, defaultRetry), maxRetry)
}

// TransportError maps a failure to get an answer from an engine: the caller's context
// ended (ErrCanceled, ErrTimeout), the I/O deadline passed (ErrTimeout), or the engine
// could not be reached or dropped the connection (ErrUnavailable: the engine is down).
// The message names the backend and the kind of failure, never an address; the full
// error is kept in Err for logs.
func TransportError(backend string, err error) *models.Error {
	switch {
	case errors.Is(err, context.Canceled):
		return &models.Error{Kind: models.ErrCanceled, Msg: "request canceled", Err: err}
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		return &models.Error{Kind: models.ErrTimeout, Code: "engine_timeout",
			Msg: fmt.Sprintf("engine %s did not answer in time", backend), Err: err}
	}
	return &models.Error{Kind: models.ErrUnavailable, Code: "engine_unavailable", RetryAfter: time.Second,
		Msg: fmt.Sprintf("engine %s is unavailable (%s)", backend, Cause(err)), Err: err}
}

// Cause names the kind of a transport failure in a few words, without the addresses a
// dial error carries: for client messages and health reasons.
func Cause(err error) string {
	var dns *net.DNSError
	var ne net.Error
	switch {
	case err == nil:
		return "no error"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	case errors.As(err, &dns):
		return "host name not resolved"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return "connection closed"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	case errors.Is(err, errClosed):
		return "client closed"
	}
	return "unreachable"
}
