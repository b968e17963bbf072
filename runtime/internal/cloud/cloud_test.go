package cloud

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fasthttp"
)

func TestErrorTable(t *testing.T) {
	cases := []struct {
		f     Failure
		kind  error
		code  string
		retry time.Duration
	}{
		{Failure{Status: 400, Message: "bad"}, models.ErrInvalid, "", 0},
		{Failure{Status: 422}, models.ErrInvalid, "", 0},
		{Failure{Status: 400, ContextLength: true}, models.ErrInvalid, CodeContextLength, 0},
		{Failure{Status: 401, Message: "key sk-abc"}, models.ErrUpstream, CodeAuth, 0},
		{Failure{Status: 403}, models.ErrUpstream, CodeAuth, 0},
		{Failure{Status: 400, Auth: true}, models.ErrUpstream, CodeAuth, 0},
		{Failure{Status: 402}, models.ErrUpstream, CodeBilling, 0},
		{Failure{Status: 404}, models.ErrUpstream, CodeNotFound, 0},
		{Failure{Status: 408}, models.ErrTimeout, "", 0},
		{Failure{Status: 413}, models.ErrTooLarge, "", 0},
		{Failure{Status: 429, RetryAfter: 3 * time.Second}, models.ErrOverloaded, CodeRateLimited, 3 * time.Second},
		{Failure{Status: 429}, models.ErrOverloaded, CodeRateLimited, DefaultRetryAfter},
		{Failure{Status: 503}, models.ErrOverloaded, CodeOverloaded, DefaultRetryAfter},
		{Failure{Status: 529}, models.ErrOverloaded, CodeOverloaded, DefaultRetryAfter},
		{Failure{Status: 500}, models.ErrUpstream, CodeProvider, 0},
		{Failure{Status: 502}, models.ErrUpstream, CodeProvider, 0},
	}
	for _, tc := range cases {
		e := Error("p", "b", tc.f)
		if !errors.Is(e, tc.kind) || e.Code != tc.code || e.RetryAfter != tc.retry {
			t.Errorf("%+v → %v code %q retry %v", tc.f, e.Kind, e.Code, e.RetryAfter)
		}
		if tc.code == CodeAuth && strings.Contains(e.Msg, "sk-abc") {
			t.Errorf("a credential error shows the provider's message: %q", e.Msg)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		h    map[string]string
		want time.Duration
	}{
		{nil, 0},
		{map[string]string{"Retry-After": "7"}, 7 * time.Second},
		{map[string]string{"Retry-After": "0.5"}, 500 * time.Millisecond},
		{map[string]string{"Retry-After": "7", "Retry-After-Ms": "1500"}, 1500 * time.Millisecond},
		{map[string]string{"Retry-After": "Thu, 01 Jan 2026 12:00:30 GMT"}, 30 * time.Second},
		{map[string]string{"Retry-After": "soon"}, 0},
		{map[string]string{"Retry-After": "-3"}, 0},
	} {
		var h fasthttp.ResponseHeader
		for k, v := range tc.h {
			h.Set(k, v)
		}
		if got := RetryAfter(&h, now); got != tc.want {
			t.Errorf("%v → %v, want %v", tc.h, got, tc.want)
		}
	}
}

func TestTransportError(t *testing.T) {
	future, past := time.Now().Add(time.Hour), time.Now().Add(-time.Second)
	for _, tc := range []struct {
		err      error
		deadline time.Time
		kind     error
	}{
		{context.Canceled, time.Time{}, models.ErrCanceled},
		{os.ErrDeadlineExceeded, time.Time{}, models.ErrCanceled}, // interrupted by a cancel
		{os.ErrDeadlineExceeded, future, models.ErrCanceled},
		{fmt.Errorf("read: %w", os.ErrDeadlineExceeded), past, models.ErrTimeout},
		{errors.New("dial tcp 10.0.0.1:443: connection refused"), time.Time{}, models.ErrUnavailable},
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}, time.Time{}, models.ErrUnavailable}, // dial timeout
	} {
		err := TransportError("p", "b", tc.err, tc.deadline)
		if !errors.Is(err, tc.kind) {
			t.Errorf("%v → %v, want %v", tc.err, err, tc.kind)
		}
		if strings.Contains(err.Error(), "10.0.0.1") {
			t.Errorf("the message shows an address: %v", err)
		}
	}
}

func TestHealth(t *testing.T) {
	h := NewHealth(7)
	if c := h.Capacity(); !c.Healthy || c.Slots != 7 {
		t.Fatalf("%+v", c)
	}
	h.SetCircuit(true, "")
	if c := h.Capacity(); c.Healthy || c.Reason != "circuit open" || !h.CircuitOpen() {
		t.Fatalf("%+v", c)
	}
	if c := h.Overlay(models.Capacity{Slots: 2, Healthy: true}); c.Healthy || c.Slots != 2 {
		t.Fatalf("overlay %+v", c)
	}
	h.SetCircuit(false, "x")
	if !h.Capacity().Healthy || h.CircuitOpen() {
		t.Fatal("closed")
	}
}

func TestParseToolCalls(t *testing.T) {
	calls, err := ParseToolCalls([]byte(`[{"id":"a","type":"function","function":{"name":"f","arguments":"{\"x\": 1}"}},
		{"id":"b","function":{"name":"g","arguments":""}},{"id":"c","function":{"name":"h","arguments":{"y":[2]}}}]`))
	if err != nil {
		t.Fatal(err)
	}
	want := []ToolCall{{"a", "f", []byte(`{"x":1}`)}, {"b", "g", []byte(`{}`)}, {"c", "h", []byte(`{"y":[2]}`)}}
	for i, c := range calls {
		if c.ID != want[i].ID || c.Name != want[i].Name || string(c.Args) != string(want[i].Args) {
			t.Fatalf("call %d = %+v (%s)", i, c, c.Args)
		}
	}
	for _, bad := range []string{`[{"function":{}}]`, `[{"function":{"name":"f","arguments":"[1]"}}]`, `{}`, `[1`} {
		if _, err := ParseToolCalls([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestToolDeltas(t *testing.T) {
	d := AppendToolCallDelta(nil, 2, "call_1", "f", "")
	if string(d) != `[{"index":2,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]` {
		t.Fatal(string(d))
	}
	d = AppendToolCallDelta(nil, 2, "", "", `{"a"`)
	if string(d) != `[{"index":2,"function":{"arguments":"{\"a\""}}]` {
		t.Fatal(string(d))
	}
}

func FuzzParseTools(f *testing.F) {
	f.Add([]byte(`[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object"}}}]`), []byte(`"auto"`))
	f.Add([]byte(`[{"id":"a","function":{"name":"f","arguments":"{}"}}]`), []byte(`{"type":"function","function":{"name":"f"}}`))
	f.Fuzz(func(t *testing.T, raw, choice []byte) {
		if tools, err := ParseTools(raw); err == nil {
			for _, tl := range tools {
				if tl.Name == "" || (tl.Parameters != nil && !json.Valid(tl.Parameters)) {
					t.Fatalf("tool %+v", tl)
				}
			}
		}
		if calls, err := ParseToolCalls(raw); err == nil {
			for _, c := range calls {
				if !json.Valid(c.Args) || c.Args[0] != '{' {
					t.Fatalf("args %q", c.Args)
				}
			}
		}
		_, _ = ParseToolChoice(choice)
	})
}
