package ollama

import (
	"context"
	"errors"
	"io"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/sluice-llm/sluice/models"
)

func TestMapError(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Unix(1, 0))
	defer cancel2()
	refused := &url.Error{Op: "Post", URL: "http://127.0.0.1:1/api/chat", Err: syscall.ECONNREFUSED}
	tests := []struct {
		name   string
		ctx    context.Context
		err    error
		kind   error
		code   string
		retry  time.Duration
		status int
		down   bool // marks the backend unhealthy
	}{
		{"model not found", nil, api.StatusError{StatusCode: 404, ErrorMessage: "model 'x' not found"}, models.ErrUpstream, "engine_model_not_found", 0, 0, false},
		{"bad request", nil, api.StatusError{StatusCode: 400, ErrorMessage: "does not support tools"}, models.ErrInvalid, "", 0, 0, false},
		{"context too long", nil, api.StatusError{StatusCode: 500, ErrorMessage: "input exceeds maximum context length and cannot be truncated further"}, models.ErrInvalid, "context_length_exceeded", 0, 0, false},
		{"too many requests", nil, api.StatusError{StatusCode: 429}, models.ErrOverloaded, "engine_overloaded", time.Second, 0, false},
		{"queue full", nil, api.StatusError{StatusCode: 503, ErrorMessage: "server busy, please try again.  maximum pending requests exceeded"}, models.ErrOverloaded, "engine_overloaded", time.Second, 0, false},
		{"client closed", nil, api.StatusError{StatusCode: 499}, models.ErrCanceled, "", 0, 0, false},
		{"engine failure", nil, api.StatusError{StatusCode: 500, ErrorMessage: "runner stopped"}, models.ErrUpstream, "engine_error", 0, 0, false},
		{"unauthorized", nil, api.AuthorizationError{StatusCode: 401, Status: "401 Unauthorized"}, models.ErrUpstream, "engine_auth_failed", 0, 0, false},
		{"in-stream error", nil, errors.New("an error was encountered while running the model"), models.ErrUpstream, "engine_error", 0, 0, false},
		{"connection refused", nil, refused, models.ErrUnavailable, "engine_unavailable", time.Second, 0, true},
		{"broken body", nil, io.ErrUnexpectedEOF, models.ErrUnavailable, "engine_unavailable", time.Second, 0, true},
		{"canceled", canceled, &url.Error{Op: "Post", Err: context.Canceled}, models.ErrCanceled, "", 0, 0, false},
		{"deadline", expired, &url.Error{Op: "Post", Err: context.DeadlineExceeded}, models.ErrTimeout, "engine_timeout", 0, 0, false},
		{"already mapped", nil, models.InvalidParam("tools", "bad"), models.ErrInvalid, "", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := New(Options{Name: "x", URL: "http://127.0.0.1:1"})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			b.setHealth(true, "", true)
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			got := b.mapError(ctx, tt.err)
			var me *models.Error
			if !errors.As(got, &me) || !errors.Is(got, tt.kind) {
				t.Fatalf("mapError(%v) = %v, want kind %v", tt.err, got, tt.kind)
			}
			if me.Code != tt.code || me.RetryAfter != tt.retry || me.Status != tt.status {
				t.Errorf("mapError(%v) = %+v, want code %q, retry %v, status %d", tt.err, me, tt.code, tt.retry, tt.status)
			}
			if down := !b.Capacity().Healthy; down != tt.down {
				t.Errorf("backend down = %v, want %v", down, tt.down)
			}
			if strings.Contains(me.Msg, "127.0.0.1") || strings.Contains(b.Capacity().Reason, "127.0.0.1") {
				t.Errorf("address shown: message %q, reason %q", me.Msg, b.Capacity().Reason)
			}
		})
	}
}
