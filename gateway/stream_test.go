package gateway_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/gateway"
)

// streamAPIs are the two streaming APIs: a request body with the prompt at %s, a text
// delta with its text at %s, and the stream's last event.
var streamAPIs = []struct{ path, body, delta, end string }{
	{"/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"%s"}]}`, `"content":"%s"`, "data: [DONE]"},
	{"/v1/messages", `{"model":"m","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"%s"}]}`, `"text":"%s"`, "event: message_stop"},
}

// TestSlowStreamWaits: between the events of a slow stream (an engine generating at its
// own pace) the gateway waits for the engine with models.WaitReady, at a shallow depth,
// instead of inside Recv; a fast stream is not waited on. Both answers arrive whole, on
// the OpenAI and the Anthropic API.
func TestSlowStreamWaits(t *testing.T) {
	g := startGateway(t, gateway.Options{}, 4)
	for _, api := range streamAPIs {
		for _, tc := range []struct {
			prompt string
			slow   bool
		}{{"slow 20", true}, {"words 40", false}} {
			before := g.Fake.waits.Load()
			resp, b := post(t, g.URL+api.path, strings.Replace(api.body, "%s", tc.prompt, 1))
			if resp.StatusCode != 200 {
				t.Fatalf("%s %q: %d %s", api.path, tc.prompt, resp.StatusCode, b)
			}
			words := 20
			if !tc.slow {
				words = 40
			}
			if n := strings.Count(string(b), strings.Replace(api.delta, "%s", "word ", 1)); n != words || !strings.Contains(string(b), api.end) {
				t.Fatalf("%s %q: %d deltas of %d, end %v:\n%s", api.path, tc.prompt, n, words, strings.Contains(string(b), api.end), b)
			}
			waits := g.Fake.waits.Load() - before
			// 21 gaps of 5 ms in the slow stream; the fast one's events come microseconds
			// apart (some may be late on a loaded machine; waiting on every one of its 41
			// gaps is what fails).
			if tc.slow && waits < 15 {
				t.Errorf("%s %q: waited %d times between 21 gaps of 5 ms", api.path, tc.prompt, waits)
			}
			if !tc.slow && waits > 34 {
				t.Errorf("%s %q: a fast stream was waited on %d times", api.path, tc.prompt, waits)
			}
		}
	}
	g.slotFree(t)
}

// chunkedBody sends body to path over a connection of its own and returns the answer's
// body and the number of HTTP chunks it came in (each a write of the gateway's).
func chunkedBody(t *testing.T, addr, path, body string) (string, int) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", path, len(body), body)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || len(resp.TransferEncoding) == 0 {
		t.Fatalf("status %d, transfer encoding %v", resp.StatusCode, resp.TransferEncoding)
	}
	// http.ReadResponse would hide the chunks: read them from the connection itself.
	var out strings.Builder
	chunks := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d chunks: %v", chunks, err)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(line), 16, 64)
		if err != nil {
			t.Fatalf("chunk size %q: %v", line, err)
		}
		if n == 0 {
			return out.String(), chunks
		}
		chunks++
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			t.Fatal(err)
		}
		out.Write(buf[:n])
	}
}

// TestEventsAtHandWrittenTogether: events the engine has already sent go to the client in
// one write (one HTTP chunk) for several; events that are not at hand are written one by
// one, and nothing is lost or reordered either way (the burst's words are numbered).
func TestEventsAtHandWrittenTogether(t *testing.T) {
	g := startGateway(t, gateway.Options{}, 4)
	for _, api := range streamAPIs {
		for _, tc := range []struct {
			prompt string
			burst  bool
		}{{"burst 200", true}, {"words 200", false}} {
			body, chunks := chunkedBody(t, g.Addr, api.path, strings.Replace(api.body, "%s", tc.prompt, 1))
			if !strings.Contains(body, api.end) {
				t.Fatalf("%s %q: no end:\n%s", api.path, tc.prompt, body)
			}
			if tc.burst {
				at := 0
				for i := 1; i <= 200; i++ {
					d := strings.Replace(api.delta, "%s", "w"+strconv.Itoa(i)+" ", 1)
					j := strings.Index(body[at:], d)
					if j < 0 || strings.Count(body, d) != 1 {
						t.Fatalf("%s %q: word %d missing, repeated or out of order:\n%s", api.path, tc.prompt, i, body)
					}
					at += j + len(d)
				}
			} else if n := strings.Count(body, strings.Replace(api.delta, "%s", "word ", 1)); n != 200 {
				t.Fatalf("%s %q: %d deltas of 200:\n%s", api.path, tc.prompt, n, body)
			}
			events := strings.Count(body, "\n\n")
			t.Logf("%s %q: %d events in %d chunks", api.path, tc.prompt, events, chunks)
			if tc.burst && chunks*4 > events {
				t.Errorf("%s %q: %d events at hand came in %d chunks", api.path, tc.prompt, events, chunks)
			}
			if !tc.burst && chunks < 200 {
				t.Errorf("%s %q: %d events not at hand came in %d chunks", api.path, tc.prompt, events, chunks)
			}
		}
	}
	g.slotFree(t)
}
