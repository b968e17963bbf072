package upstream

import (
	"io"
	"strings"
	"testing"
)

func TestSSE(t *testing.T) {
	in := ": comment\n\ndata: {\"a\":1}\n\nevent: ping\ndata: x\ndata: y\r\n\r\ndata:[DONE]\n\nerror: {\"e\":1}\n\ndata: tail"
	s := NewSSE(strings.NewReader(in))
	defer s.Release()
	want := []struct{ ev, data string }{{"", `{"a":1}`}, {"ping", "x\ny"}, {"", "[DONE]"}, {"error", `{"e":1}`}, {"", "tail"}}
	for i, w := range want {
		ev, data, err := s.Next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if string(ev) != w.ev || string(data) != w.data {
			t.Fatalf("event %d = %q %q, want %q %q", i, ev, data, w.ev, w.data)
		}
	}
	if _, _, err := s.Next(); err != io.EOF {
		t.Fatalf("after last event err = %v, want EOF", err)
	}
}

func TestSSELongLine(t *testing.T) {
	long := strings.Repeat("x", 100<<10)
	s := NewSSE(strings.NewReader("data: " + long + "\n\n"))
	defer s.Release()
	_, data, err := s.Next()
	if err != nil || string(data) != long {
		t.Fatalf("long line: len %d err %v", len(data), err)
	}
}

func FuzzSSE(f *testing.F) {
	f.Add("data: a\n\ndata: b\n\n")
	f.Add("event: x\ndata:\n\n:c\n")
	f.Fuzz(func(t *testing.T, in string) {
		s := NewSSE(strings.NewReader(in))
		defer s.Release()
		for i := 0; i <= len(in); i++ {
			if _, _, err := s.Next(); err != nil {
				if err != io.EOF {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
		}
		t.Fatalf("more events than bytes in %q", in)
	})
}
