//go:build linux

package openai

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/models"
)

// TestStreamsShareBuffers: many streams at once over one backend (one client, its
// connection and SSE reader pools, one parser pool), each engine answer written in
// fragments cut at random bytes with pauses between some (so that the reader waits with
// models.WaitReady with nothing buffered, and the buffers go back to their pools), read
// as the gateway reads (AtHand to coalesce, WaitReady between slow events). Every stream
// must get exactly its own events, in order, and connections are reused.
func TestStreamsShareBuffers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const events = 40
	want := func(id string) string {
		var b strings.Builder
		for i := range events {
			fmt.Fprintf(&b, "%s-%d \"é\" ", id, i)
		}
		return b.String()
	}
	serve := func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
		for {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, _ := io.ReadAll(r.Body)
			// The stream's id is the user message: "id:XYZ".
			i := strings.Index(string(body), "id:")
			id := string(body)[i+3 : i+3+6]
			var out []byte
			out = append(out, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"...)
			chunk := func(s string) { out = fmt.Appendf(out, "%x\r\n%s\r\n", len(s), s) }
			for k := range events {
				text := fmt.Sprintf(`%s-%d \"\u00e9\" `, id, k)
				ev := `data: {"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":"` + text + `"},"finish_reason":null}]}` + "\n\n"
				if k%7 == 3 {
					ev += ": keep-alive\n\n" + `data: {"id":"c","choices":[]}` + "\n\n"
				}
				chunk(ev)
			}
			chunk(`data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n")
			chunk(`data: {"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":40}}` + "\n\n")
			chunk("data: [DONE]\n\n")
			out = append(out, "0\r\n\r\n"...)
			for len(out) > 0 {
				n := min(len(out), 1+rng.IntN(300))
				if _, err := c.Write(out[:n]); err != nil {
					return
				}
				out = out[n:]
				if rng.IntN(4) == 0 {
					time.Sleep(time.Duration(1+rng.IntN(4)) * time.Millisecond)
				}
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	b, err := New(Options{Name: "fake", BaseURL: "http://" + ln.Addr().String() + "/v1"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const streams, rounds = 12, 4
	var wg sync.WaitGroup
	errs := make(chan error, streams*rounds)
	for g := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 2))
			for round := range rounds {
				id := fmt.Sprintf("%02d%04d", g, round)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				r := &models.Request{Kind: models.KindChat, Model: "m", Stream: true, Messages: []models.Message{{Role: "user", Content: "id:" + id}}}
				st, err := b.Open(ctx, models.Target{Model: "m", UpstreamModel: "m"}, r)
				if err != nil {
					cancel()
					errs <- err
					return
				}
				var got strings.Builder
				finish := ""
				var usage *models.Usage
				for {
					if !models.AtHand(st) || rng.IntN(3) == 0 {
						models.WaitReady(st)
					}
					c, err := st.Recv()
					if err == io.EOF {
						break
					}
					if err != nil {
						errs <- fmt.Errorf("stream %s: %v", id, err)
						break
					}
					got.WriteString(c.Text)
					if c.FinishReason != "" {
						finish = c.FinishReason
					}
					if c.Usage != nil {
						usage = c.Usage
					}
				}
				st.Close()
				cancel()
				if got.String() != want(id) || finish != "stop" || usage == nil || usage.CompletionTokens != 40 {
					errs <- fmt.Errorf("stream %s: text %q, finish %q, usage %v", id, got.String(), finish, usage)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if d := b.client.Dials(); d > streams*2 {
		t.Errorf("%d dials for %d streams of %d rounds: connections not reused", d, streams, rounds)
	}
}
