package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/models"
)

// TestStatusError is the table every runtime shares: one row per engine answer.
func TestStatusError(t *testing.T) {
	const addr = "10.1.2.3:8081"
	llamaCtx := `{"error":{"code":400,"message":"request (5000 tokens) exceeds the available context size (2048 tokens), try increasing it","type":"exceed_context_size_error","n_prompt_tokens":5000,"n_ctx":2048}}`
	openaiCtx := `{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`
	tests := []struct {
		name   string
		status int
		retry  string
		body   string
		kind   error
		code   string
		after  time.Duration
		shown  string // in the client message
		hidden string // never in the client message
	}{
		{"bad request (OpenAI)", 400, "", `{"error":{"message":"tools are not supported","type":"invalid_request_error","code":"unsupported_parameter"}}`,
			models.ErrInvalid, "unsupported_parameter", 0, "tools are not supported", ""},
		{"bad request (Ollama)", 400, "", `{"error":"llama3 does not support tools"}`, models.ErrInvalid, "", 0, "does not support tools", ""},
		{"unprocessable", 422, "", `{"detail":"bad"}`, models.ErrInvalid, "", 0, "bad", ""},
		{"context (llama-server)", 400, "", llamaCtx, models.ErrInvalid, "context_length_exceeded", 0, "exceeds the available context size", ""},
		{"context (OpenAI)", 400, "", openaiCtx, models.ErrInvalid, "context_length_exceeded", 0, "maximum context length", ""},
		{"context (Ollama, 500)", 500, "", `{"error":"input exceeds maximum context length and cannot be truncated further"}`,
			models.ErrInvalid, "context_length_exceeded", 0, "maximum context length", ""},
		{"unauthorized", 401, "", `{"error":{"message":"Incorrect API key provided: sk-abc***"}}`, models.ErrUpstream, "engine_auth_failed", 0, "credentials", "sk-abc"},
		{"forbidden", 403, "", `forbidden`, models.ErrUpstream, "engine_auth_failed", 0, "credentials", ""},
		{"model missing", 404, "", `{"error":"model 'llama3' not found, try pulling it first"}`, models.ErrUpstream, "engine_model_not_found", 0, "404", ""},
		{"request timeout", 408, "", ``, models.ErrTimeout, "engine_timeout", 0, "in time", ""},
		{"gateway timeout", 504, "", `upstream ` + addr + ` timed out`, models.ErrTimeout, "engine_timeout", 0, "in time", addr},
		{"too large", 413, "", `{"error":{"message":"payload too large"}}`, models.ErrTooLarge, "request_too_large", 0, "payload too large", ""},
		{"rate limited", 429, "7", `{"error":{"message":"Rate limit reached"}}`, models.ErrOverloaded, "engine_overloaded", 7 * time.Second, "overloaded", ""},
		{"queue full (Ollama)", 503, "", `{"error":"server busy, please try again.  maximum pending requests exceeded"}`, models.ErrOverloaded, "engine_overloaded", time.Second, "overloaded", ""},
		{"loading (llama-server)", 503, "", `{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}`, models.ErrOverloaded, "engine_overloaded", time.Second, "overloaded", ""},
		{"retry-after too long", 503, "86400", ``, models.ErrOverloaded, "engine_overloaded", time.Minute, "overloaded", ""},
		{"overloaded (529)", 529, "2", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`, models.ErrOverloaded, "engine_overloaded", 2 * time.Second, "overloaded", ""},
		{"client closed", 499, "", ``, models.ErrCanceled, "", 0, "canceled", ""},
		{"server error", 500, "", `{"error":{"message":"failed to connect to ` + addr + `: /models/x.gguf"}}`, models.ErrUpstream, "engine_error", 0, "500", addr},
		{"bad gateway", 502, "", `<html>bad gateway at ` + addr + `</html>`, models.ErrUpstream, "engine_error", 0, "502", addr},
		{"not implemented", 501, "", `{"error":{"code":501,"message":"This server does not support embeddings.","type":"not_supported_error"}}`, models.ErrUpstream, "engine_error", 0, "501", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := StatusError("gpu0", tt.status, tt.retry, []byte(tt.body))
			if !errors.Is(e, tt.kind) || e.Code != tt.code || e.RetryAfter != tt.after {
				t.Fatalf("StatusError(%d) = kind %v code %q retry %v, want %v %q %v", tt.status, e.Kind, e.Code, e.RetryAfter, tt.kind, tt.code, tt.after)
			}
			if e.Status != 0 {
				t.Errorf("status override %d: the category decides", e.Status)
			}
			if !strings.Contains(e.Msg, tt.shown) || !strings.Contains(e.Msg, "gpu0") && tt.kind != models.ErrCanceled {
				t.Errorf("message %q, want it to name the engine and say %q", e.Msg, tt.shown)
			}
			if tt.hidden != "" && strings.Contains(e.Msg, tt.hidden) {
				t.Errorf("message %q shows %q to the client", e.Msg, tt.hidden)
			}
			if e.Err == nil || !strings.Contains(e.Err.Error(), fmt.Sprint(tt.status)) {
				t.Errorf("cause %v: want the engine's answer kept for logs", e.Err)
			}
		})
	}
}

func TestStreamError(t *testing.T) {
	ctx := `{"error":{"code":400,"message":"request (9 tokens) exceeds the available context size (8 tokens), try increasing it","type":"exceed_context_size_error"}}`
	if e := StreamError("a", []byte(ctx)); !errors.Is(e, models.ErrInvalid) || e.Code != "context_length_exceeded" {
		t.Fatalf("context error in a stream: %+v", e)
	}
	if e := StreamError("a", []byte(`{"error":{"message":"boom"}}`)); !errors.Is(e, models.ErrUpstream) || e.Code != "engine_error" {
		t.Fatalf("error in a stream: %+v", e)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tt := range []struct {
		v    string
		want time.Duration
	}{
		{"", time.Second}, {"0", time.Second}, {"3", 3 * time.Second}, {" 12 ", 12 * time.Second},
		{"-5", time.Second}, {"soon", time.Second}, {"99999999999999999999", time.Minute}, {"3600", time.Minute},
		{now.Add(20 * time.Second).Format(http.TimeFormat), 20 * time.Second},
		{"Fri, 02 Jan 2026 03:04:35 GMT", 30 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), time.Second},
		{now.Add(time.Hour).Format(http.TimeFormat), time.Minute},
	} {
		if got := RetryAfter(tt.v, now); got != tt.want {
			t.Errorf("RetryAfter(%q) = %v, want %v", tt.v, got, tt.want)
		}
	}
}

func TestTransportError(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 8081},
		Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	reset := &url.Error{Op: "Post", URL: "http://10.1.2.3:8081/api/chat", Err: syscall.ECONNRESET}
	for _, tt := range []struct {
		err   error
		kind  error
		shown string
	}{
		{refused, models.ErrUnavailable, "connection refused"},
		{reset, models.ErrUnavailable, "connection reset"},
		{io.ErrUnexpectedEOF, models.ErrUnavailable, "connection closed"},
		{&net.DNSError{Err: "no such host", Name: "engine.internal"}, models.ErrUnavailable, "not resolved"},
		{fmt.Errorf("read: %w", os.ErrDeadlineExceeded), models.ErrTimeout, "in time"},
		{context.DeadlineExceeded, models.ErrTimeout, "in time"},
		{&url.Error{Op: "Post", URL: "http://10.1.2.3:8081", Err: context.Canceled}, models.ErrCanceled, "canceled"},
	} {
		e := TransportError("gpu0", tt.err)
		if !errors.Is(e, tt.kind) || !strings.Contains(e.Msg, tt.shown) {
			t.Errorf("TransportError(%v) = %v %q, want %v saying %q", tt.err, e.Kind, e.Msg, tt.kind, tt.shown)
		}
		if strings.Contains(e.Msg, "10.1.2.3") || strings.Contains(e.Msg, "engine.internal") {
			t.Errorf("TransportError(%v) shows an address: %q", tt.err, e.Msg)
		}
		if !errors.Is(e, tt.err) {
			t.Errorf("TransportError(%v) lost its cause", tt.err)
		}
	}
}

func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "5", "-1", "Fri, 02 Jan 2026 03:04:35 GMT", "Friday, 02-Jan-26 03:04:35 GMT", "Fri Jan  2 03:04:35 2026", "1e9", "  7  "} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		if d := RetryAfter(v, now); d < time.Second || d > time.Minute {
			t.Fatalf("RetryAfter(%q) = %v, out of [1s, 1m]", v, d)
		}
	})
}

func FuzzStatusError(f *testing.F) {
	f.Add(400, "", []byte(`{"error":{"message":"bad","code":"x"}}`))
	f.Add(503, "3", []byte(`{"error":"server busy"}`))
	f.Add(500, "", []byte(`{"error":{"code":500,"message":"boom","type":"server_error"}}`))
	f.Add(400, "", []byte(`{"error":{"code":400,"message":"exceeds the available context size","type":"exceed_context_size_error"}}`))
	f.Add(200, "", []byte("plain text"))
	f.Add(418, "x", []byte{0xff, 0xfe, '{'})
	f.Fuzz(func(t *testing.T, status int, retry string, body []byte) {
		e := StatusError("b", status, retry, body)
		if e.Kind == nil || e.Msg == "" {
			t.Fatalf("StatusError(%d, %q) = %+v", status, body, e)
		}
		if len(e.Msg) > maxMessage+100 {
			t.Fatalf("message of %d bytes", len(e.Msg))
		}
		if s := StreamError("b", body); s.Kind == nil {
			t.Fatalf("StreamError(%q) = %+v", body, s)
		}
	})
}
