package sched

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// client sends streamed chat requests to the gateway.
type client struct {
	hc   *http.Client
	base string
}

func newClient(base string) *client {
	tr := &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, IdleConnTimeout: time.Minute,
		DisableCompression: true}
	return &client{hc: &http.Client{Transport: tr}, base: base}
}

func (c *client) close() { c.hc.CloseIdleConnections() }

// outcome is what one request measured. Times are absolute.
type outcome struct {
	id                 string // the gateway's request id (X-Request-Id)
	sent, first, end   time.Time
	prompt, cached     int
	completion, chunks int
	err                error
}

type chatBody struct {
	Model         string         `json:"model"`
	Messages      []chatMessage  `json:"messages"`
	MaxTokens     int            `json:"max_tokens"`
	Temperature   float64        `json:"temperature"`
	Stream        bool           `json:"stream"`
	StreamOptions map[string]any `json:"stream_options"`
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// chat sends one streamed chat (system + user) and reads it to the end.
func (c *client) chat(ctx context.Context, system, user string, maxTokens int) outcome {
	var o outcome
	body, err := json.Marshal(chatBody{Model: modelName, MaxTokens: maxTokens, Stream: true,
		StreamOptions: map[string]any{"include_usage": true},
		Messages:      []chatMessage{{Role: "system", Content: system}, {Role: "user", Content: user}}})
	if err != nil {
		o.err = err
		return o
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		o.err = err
		return o
	}
	req.Header.Set("Content-Type", "application/json")
	o.sent = time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		o.err = err
		o.end = time.Now()
		return o
	}
	defer resp.Body.Close()
	o.id = resp.Header.Get("X-Request-Id")
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		o.err = fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
		o.end = time.Now()
		return o
	}
	o.err = o.read(resp.Body)
	o.end = time.Now()
	return o
}

type sseChunk struct {
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens        int `json:"prompt_tokens"`
		CompletionTokens    int `json:"completion_tokens"`
		PromptTokensDetails struct {
			CachedTokens int `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
	} `json:"usage"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// read parses the SSE stream: the first content delta marks the first token, the usage
// chunk gives the token counts, and the stream must end with [DONE].
func (o *outcome) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	done, usage := false, false
	for sc.Scan() {
		data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: "))
		if !ok {
			continue
		}
		if string(data) == "[DONE]" {
			done = true
			continue
		}
		var ch sseChunk
		if err := json.Unmarshal(data, &ch); err != nil {
			return fmt.Errorf("bad chunk %.100q: %w", data, err)
		}
		if ch.Error != nil {
			return fmt.Errorf("stream error: %s", ch.Error.Message)
		}
		if len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != "" {
			if o.first.IsZero() {
				o.first = time.Now()
			}
			o.chunks++
		}
		if ch.Usage != nil {
			usage = true
			o.prompt, o.completion = ch.Usage.PromptTokens, ch.Usage.CompletionTokens
			o.cached = ch.Usage.PromptTokensDetails.CachedTokens
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	switch {
	case !done:
		return errors.New("stream ended without [DONE]")
	case !usage:
		return errors.New("stream without a usage chunk")
	case o.first.IsZero():
		return errors.New("stream without content")
	}
	return nil
}
