package models

import "time"

// Kind says which endpoint a request came in on.
type Kind uint8

// Request kinds.
const (
	KindChat       Kind = iota + 1 // /v1/chat/completions
	KindCompletion                 // /v1/completions
	KindEmbedding                  // /v1/embeddings
)

func (k Kind) String() string {
	switch k {
	case KindChat:
		return "chat"
	case KindCompletion:
		return "completion"
	case KindEmbedding:
		return "embedding"
	}
	return "unknown"
}

// Priority classes: interactive work goes first; batch work fills idle capacity.
type Priority uint8

// Priority classes.
const (
	PriorityInteractive Priority = iota
	PriorityBatch
)

// Message is one chat message. Content holds the text (the text parts joined when the
// client sent an array of parts); Raw keeps the client's JSON of the whole message so
// backends that speak OpenAI can forward it untouched (tool calls, images).
type Message struct {
	Role       string
	Content    string
	Name       string
	ToolCallID string
	// ToolCalls is the raw JSON array of an assistant message's tool calls, if any.
	ToolCalls []byte
	// Images holds decoded image bytes from image_url parts given as base64 data URLs.
	Images [][]byte
}

// Sampling holds the generation options sluice understands. Nil pointers mean "engine
// default". Backends that forward the client's JSON (Request.Body) do not need them.
type Sampling struct {
	MaxTokens        int // 0: engine default
	Temperature      *float64
	TopP             *float64
	Seed             *int64
	Stop             []string
	PresencePenalty  *float64
	FrequencyPenalty *float64
}

// Request is one client request, parsed once by the gateway.
type Request struct {
	ID       string
	Kind     Kind
	Model    string // the name the client used
	Stream   bool
	Priority Priority
	Tenant   string // key or tenant id; scopes caches and budgets
	// Key is the authenticated API key and its policy (nil: authentication is off).
	Key *Key
	// User is the OpenAI "user" field; Feature the X-Sluice-Feature header (for reports).
	User    string
	Feature string
	// Compress is the X-Sluice-Compress header as sent (the compress stage parses it).
	Compress string
	// Tier is the tier the client forces (X-Sluice-Tier header); "" lets the router choose.
	Tier string

	// IncludeUsage: the client asked for a usage chunk at the end of a stream.
	IncludeUsage bool
	// Cache is what the client asked of the answer cache (Cache-Control and
	// X-Sluice-Cache request headers).
	Cache CacheDirective

	Messages []Message // chat
	Prompt   []string  // completions
	Input    []string  // embeddings
	Sampling Sampling

	// Tools and ResponseFormat are passed through as the client's raw JSON.
	Tools          []byte
	ToolChoice     []byte
	ResponseFormat []byte

	// EncodingFormat of an embeddings request ("float" or "base64").
	EncodingFormat string

	// Body is the client's request body in OpenAI's wire format. Backends that speak
	// OpenAI forward it with only the fields they must change spliced in.
	Body []byte

	Arrived  time.Time
	Deadline time.Time // zero: none

	// Trace is filled in by the stages the request passes through.
	Trace Trace
}

// PromptText returns the text of the prompt (messages or completion prompts), used to
// estimate token counts when an engine does not report them.
func (r *Request) PromptText() string {
	switch r.Kind {
	case KindChat:
		n := 0
		for i := range r.Messages {
			n += len(r.Messages[i].Content) + len(r.Messages[i].Role) + 2
		}
		b := make([]byte, 0, n)
		for i := range r.Messages {
			b = append(b, r.Messages[i].Role...)
			b = append(b, '\n')
			b = append(b, r.Messages[i].Content...)
			b = append(b, '\n')
		}
		return string(b)
	case KindCompletion:
		return joinLines(r.Prompt)
	case KindEmbedding:
		return joinLines(r.Input)
	}
	return ""
}

func joinLines(s []string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	n := 0
	for _, p := range s {
		n += len(p) + 1
	}
	b := make([]byte, 0, n)
	for i, p := range s {
		if i > 0 {
			b = append(b, '\n')
		}
		b = append(b, p...)
	}
	return string(b)
}

// CacheDirective is a client's instruction to the answer cache; the flags combine.
type CacheDirective uint8

// Cache directives.
const (
	// CacheNoRead (Cache-Control: no-cache, X-Sluice-Cache: refresh): do not answer from
	// the cache; the fresh answer may replace the cached one.
	CacheNoRead CacheDirective = 1 << iota
	// CacheNoStore (Cache-Control: no-store, X-Sluice-Cache: off): neither read nor store.
	CacheNoStore
	// CacheForce (X-Sluice-Cache: force): cache the request even when its sampling is not
	// deterministic enough (a high temperature).
	CacheForce
)

// Candidate is one backend that serves a model, and the name it knows the model by.
type Candidate struct {
	Backend       string
	UpstreamModel string
	Region        string // "local" for the box's own engines; a provider region otherwise
	// Model is the catalog name (what clients see), Tier its tier and ContextWindow its
	// context in tokens (0: unknown). The router fills them; a fallback to another
	// model answers under that model's name.
	Model         string
	Tier          string
	ContextWindow int
}

// Target is where a request goes. The router fills Model and Candidates (every backend
// that serves the model); the scheduler picks one and fills Backend, UpstreamModel and,
// for engines with addressable slots, Slot.
type Target struct {
	Candidates []Candidate
	// Fallbacks are where the request may go, in order, when no candidate can take it
	// (local capacity saturated, or a failure before the first token): other engines and
	// models of at least the requested tier, already filtered by the key's residency
	// policy. Only the overflow stage reads them.
	Fallbacks []Candidate

	Model         string // catalog name (what the client sees)
	Backend       string // backend id
	UpstreamModel string // name sent to the engine
	Tier          string // small, large, cloud...
	Region        string // region of Backend ("local", "eu", "us", ...)
	// Slot is the engine slot chosen for the request when HasSlot is set (llama-server's
	// id_slot); otherwise the engine picks one.
	Slot    int
	HasSlot bool
}

// Capacity is one snapshot of what a backend can take.
type Capacity struct {
	Slots     int     // sequences the engine decodes together (0: unknown)
	Busy      int     // slots in use as the engine reports them
	Queued    int     // requests waiting inside the engine
	KVUsed    float64 // fraction of KV cache in use, 0..1 (0 when unknown)
	Healthy   bool
	Reason    string // why not healthy
	UpdatedAt time.Time
}

// ModelInfo describes a model the gateway serves, for /v1/models.
type ModelInfo struct {
	ID      string
	OwnedBy string
	Created int64  // unix seconds
	Kind    string // "chat" or "embedding"
	Backend string
	AliasOf string // set on an alias: the model it names
}
