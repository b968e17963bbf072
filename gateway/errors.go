package gateway

import (
	"errors"
	"strconv"
	"time"

	"github.com/sluice-llm/sluice/internal/jsonx"
	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fasthttp"
)

// statusOf maps an error to an HTTP status, an OpenAI error type and a default code.
func statusOf(err error) (status int, typ, code string) {
	var e *models.Error
	if errors.As(err, &e) && e.Status != 0 {
		status = e.Status
	}
	pick := func(s int, t, c string) (int, string, string) {
		if status == 0 {
			status = s
		}
		return status, t, c
	}
	switch {
	case errors.Is(err, models.ErrInvalid):
		return pick(fasthttp.StatusBadRequest, "invalid_request_error", "")
	case errors.Is(err, models.ErrAuth):
		return pick(fasthttp.StatusUnauthorized, "invalid_request_error", "invalid_api_key")
	case errors.Is(err, models.ErrForbidden):
		return pick(fasthttp.StatusForbidden, "invalid_request_error", "forbidden")
	case errors.Is(err, models.ErrNotFound):
		return pick(fasthttp.StatusNotFound, "invalid_request_error", "not_found")
	case errors.Is(err, models.ErrTooLarge):
		return pick(fasthttp.StatusRequestEntityTooLarge, "invalid_request_error", "request_too_large")
	case errors.Is(err, models.ErrRejected), errors.Is(err, models.ErrSaturated):
		// Saturated: the router found no allowed overflow, so the client should back off.
		return pick(fasthttp.StatusTooManyRequests, "rate_limit_error", "rate_limit_exceeded")
	case errors.Is(err, models.ErrOverBudget):
		return pick(fasthttp.StatusTooManyRequests, "insufficient_quota", "budget_exceeded")
	case errors.Is(err, models.ErrUpstream):
		return pick(fasthttp.StatusBadGateway, "server_error", "engine_error")
	case errors.Is(err, models.ErrOverloaded):
		return pick(fasthttp.StatusServiceUnavailable, "server_error", "engine_overloaded")
	case errors.Is(err, models.ErrUnavailable), errors.Is(err, models.ErrNoCapacity):
		return pick(fasthttp.StatusServiceUnavailable, "server_error", "engine_unavailable")
	case errors.Is(err, models.ErrTimeout):
		return pick(fasthttp.StatusGatewayTimeout, "server_error", "timeout")
	case errors.Is(err, models.ErrCanceled):
		return pick(499, "invalid_request_error", "canceled")
	}
	return pick(fasthttp.StatusInternalServerError, "server_error", "internal_error")
}

// clientMessage is what a client is told about err. For the client's own mistakes (4xx)
// it is the error's message, which names the offending field. For failures on sluice's
// side (5xx) it is a fixed sentence per category and the request id: those errors carry
// internal detail (engine addresses, dial errors, engine output) that belongs in the
// logs only, where the request id finds it.
func clientMessage(err error, status int, code, id string) string {
	if status < 500 {
		return err.Error()
	}
	var msg string
	switch {
	case code == "queue_timeout":
		msg = "no engine slot became free before the request's deadline"
	case errors.Is(err, models.ErrTimeout):
		msg = "the engine did not answer before the request's deadline"
	case errors.Is(err, models.ErrOverloaded):
		msg = "the engine serving this model is overloaded; retry later"
	case errors.Is(err, models.ErrUnavailable), errors.Is(err, models.ErrNoCapacity):
		msg = "no engine serving this model is available right now; retry later"
	case errors.Is(err, models.ErrUpstream):
		msg = "the engine failed to answer this request"
	case status == fasthttp.StatusServiceUnavailable:
		msg = "the server cannot take this request right now; retry later"
	default:
		msg = "internal error"
	}
	if id == "" {
		return msg
	}
	return msg + " (request id " + id + ")"
}

// appendErrorJSON writes {"error":{...}} in OpenAI's shape; id is the request's id (empty
// before it has one).
func appendErrorJSON(dst []byte, err error, id string) []byte {
	status, typ, code := statusOf(err)
	param := ""
	var e *models.Error
	if errors.As(err, &e) {
		param = e.Param
		if e.Code != "" {
			code = e.Code
		}
	}
	msg := clientMessage(err, status, code, id)
	dst = append(dst, `{"error":{"message":`...)
	dst = jsonx.AppendString(dst, msg)
	dst = append(dst, `,"type":`...)
	dst = jsonx.AppendString(dst, typ)
	dst = append(dst, `,"param":`...)
	if param == "" {
		dst = append(dst, "null"...)
	} else {
		dst = jsonx.AppendString(dst, param)
	}
	dst = append(dst, `,"code":`...)
	if code == "" {
		dst = append(dst, "null"...)
	} else {
		dst = jsonx.AppendString(dst, code)
	}
	return append(dst, "}}"...)
}

// writeError answers ctx with err in OpenAI's error format; id is the request's id.
func writeError(ctx *fasthttp.RequestCtx, err error, id string) {
	status, _, _ := statusOf(err)
	var e *models.Error
	if errors.As(err, &e) && e.RetryAfter > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	} else if status == fasthttp.StatusServiceUnavailable || status == fasthttp.StatusTooManyRequests {
		ctx.Response.Header.Set("Retry-After", "1")
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(appendErrorJSON(nil, err, id))
}

// anthropicStatusOf maps an error to the HTTP status and error type of Anthropic's
// Messages API (its overloaded_error is status 529).
func anthropicStatusOf(err error) (status int, typ string) {
	status, _, _ = statusOf(err)
	switch status {
	case fasthttp.StatusBadRequest, fasthttp.StatusMethodNotAllowed, fasthttp.StatusUnprocessableEntity:
		return status, "invalid_request_error"
	case fasthttp.StatusUnauthorized:
		return status, "authentication_error"
	case fasthttp.StatusForbidden:
		return status, "permission_error"
	case fasthttp.StatusNotFound:
		return status, "not_found_error"
	case fasthttp.StatusRequestEntityTooLarge:
		return status, "request_too_large"
	case fasthttp.StatusTooManyRequests:
		return status, "rate_limit_error"
	case fasthttp.StatusServiceUnavailable:
		return 529, "overloaded_error"
	case fasthttp.StatusGatewayTimeout:
		return status, "timeout_error"
	}
	return status, "api_error"
}

// appendAnthropicError writes {"type":"error","error":{...}} in Anthropic's shape; id is
// the request's id (empty before it has one).
func appendAnthropicError(dst []byte, err error, id string) []byte {
	_, typ := anthropicStatusOf(err)
	status, _, code := statusOf(err)
	var e *models.Error
	if errors.As(err, &e) && e.Code != "" {
		code = e.Code
	}
	dst = append(dst, `{"type":"error","error":{"type":`...)
	dst = jsonx.AppendString(dst, typ)
	dst = append(dst, `,"message":`...)
	dst = jsonx.AppendString(dst, clientMessage(err, status, code, id))
	return append(dst, "}}"...)
}

// writeAnthropicError answers ctx with err in Anthropic's error format; id is the
// request's id.
func writeAnthropicError(ctx *fasthttp.RequestCtx, err error, id string) {
	status, _ := anthropicStatusOf(err)
	var e *models.Error
	if errors.As(err, &e) && e.RetryAfter > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	} else if status == 529 || status == fasthttp.StatusTooManyRequests {
		ctx.Response.Header.Set("Retry-After", "1")
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(appendAnthropicError(nil, err, id))
}
