package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Embedder turns questions into unit vectors for the semantic index.
type Embedder interface {
	// ID names the embedder (and model) in stored entries: vectors of another ID are
	// not comparable and are made again.
	ID() string
	// Dim is the vectors' dimension (0 while unknown: an engine reports it with its first
	// answer).
	Dim() int
	// Embed returns one unit vector per text.
	Embed(ctx context.Context, texts []string) ([][]float32, error)
}

// EngineOptions configure an engine's embeddings endpoint.
type EngineOptions struct {
	// URL is the OpenAI-compatible base URL, e.g. http://127.0.0.1:8081/v1 (llama-server
	// started with --embeddings) or http://127.0.0.1:11434/v1 (Ollama).
	URL    string
	Model  string
	APIKey string
	// MaxBatch bounds the texts sent in one request (default 64); Window is how long the
	// first caller waits for others to join its batch (default 2 ms).
	MaxBatch int
	Window   time.Duration
	Timeout  time.Duration // per request (default 10 s)
	Client   *http.Client
}

// Engine embeds through an engine's /embeddings endpoint. Concurrent calls are batched:
// the first caller waits up to Window for others, then sends all their texts in one
// request (engines embed a batch in about the time of one text).
type Engine struct {
	o   EngineOptions
	url string

	mu  sync.Mutex
	cur *embedBatch
	dim int
}

var _ Embedder = (*Engine)(nil)

type embedBatch struct {
	texts []string
	out   [][]float32
	err   error
	full  chan struct{} // closed when the batch reaches MaxBatch
	done  chan struct{}
}

// NewEngine returns an embedder for the engine at o.URL.
func NewEngine(o EngineOptions) (*Engine, error) {
	if o.URL == "" || o.Model == "" {
		return nil, errors.New("cache: an engine embedder needs a URL and a model")
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 64
	}
	if o.Window <= 0 {
		o.Window = 2 * time.Millisecond
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute}}
	}
	return &Engine{o: o, url: strings.TrimRight(o.URL, "/") + "/embeddings"}, nil
}

// ID implements Embedder.
func (e *Engine) ID() string { return "engine:" + e.o.Model }

// Dim implements Embedder.
func (e *Engine) Dim() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dim
}

// Embed implements Embedder.
func (e *Engine) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	if len(texts) == 0 {
		return nil, nil
	}
	e.mu.Lock()
	b := e.cur
	leader := b == nil
	if leader {
		b = &embedBatch{full: make(chan struct{}), done: make(chan struct{})}
		e.cur = b
	}
	off := len(b.texts)
	b.texts = append(b.texts, texts...)
	if len(b.texts) >= e.o.MaxBatch && e.cur == b {
		e.cur = nil
		close(b.full)
	}
	e.mu.Unlock()
	if leader {
		t := time.NewTimer(e.o.Window)
		select {
		case <-b.full:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		e.mu.Lock()
		if e.cur == b {
			e.cur = nil
		}
		e.mu.Unlock()
		// The batch is sent even if this caller gave up: others wait on it.
		b.out, b.err = e.send(context.WithoutCancel(ctx), b.texts)
		close(b.done)
	} else {
		select {
		case <-b.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if b.err != nil {
		return nil, b.err
	}
	return b.out[off : off+len(texts)], nil
}

func (e *Engine) send(ctx context.Context, texts []string) ([][]float32, error) {
	ctx, cancel := context.WithTimeout(ctx, e.o.Timeout)
	defer cancel()
	body, _ := json.Marshal(map[string]any{"model": e.o.Model, "input": texts, "encoding_format": "float"})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if e.o.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+e.o.APIKey)
	}
	resp, err := e.o.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cache: embeddings: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("cache: embeddings: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		if len(raw) > 200 {
			raw = raw[:200]
		}
		return nil, fmt.Errorf("cache: embeddings: status %d: %s", resp.StatusCode, raw)
	}
	var out struct {
		Data []struct {
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("cache: embeddings: %w", err)
	}
	if len(out.Data) != len(texts) {
		return nil, fmt.Errorf("cache: embeddings: %d vectors for %d texts", len(out.Data), len(texts))
	}
	vecs := make([][]float32, len(texts))
	for _, d := range out.Data {
		if d.Index < 0 || d.Index >= len(vecs) || len(d.Embedding) == 0 {
			return nil, errors.New("cache: embeddings: bad index or empty vector")
		}
		normalize(d.Embedding)
		vecs[d.Index] = d.Embedding
	}
	e.mu.Lock()
	if e.dim == 0 {
		e.dim = len(vecs[0])
	}
	dim := e.dim
	e.mu.Unlock()
	for _, v := range vecs {
		if v == nil || len(v) != dim {
			return nil, fmt.Errorf("cache: embeddings: vectors of %d dimensions, want %d", len(v), dim)
		}
	}
	return vecs, nil
}
