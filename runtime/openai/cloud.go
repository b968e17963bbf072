package openai

import (
	"bytes"
	"net/url"
	"strings"
	"time"

	"github.com/sluice-llm/sluice/internal/jsonx"
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/runtime/internal/cloud"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

// Provider is the cloud an OpenAI-compatible backend talks to.
type Provider uint8

// Providers.
const (
	ProviderGeneric Provider = iota // an engine sluice probes (vLLM, llama-server, Ollama /v1)
	ProviderOpenAI                  // api.openai.com: Bearer key
	ProviderAzure                   // Azure OpenAI: api-key header, /openai/deployments/{d}/...?api-version=
	ProviderMistral                 // api.mistral.ai: Bearer key; refuses OpenAI-only fields
)

// DefaultAzureAPIVersion is the Azure OpenAI api-version used when none is configured.
const DefaultAzureAPIVersion = "2024-10-21"

// ParseProvider reads a provider name (as in the config file).
func ParseProvider(s string) (Provider, bool) {
	switch s {
	case "", "generic":
		return ProviderGeneric, true
	case "openai":
		return ProviderOpenAI, true
	case "azure":
		return ProviderAzure, true
	case "mistral":
		return ProviderMistral, true
	}
	return ProviderGeneric, false
}

func (p Provider) String() string {
	switch p {
	case ProviderOpenAI:
		return "openai"
	case ProviderAzure:
		return "azure"
	case ProviderMistral:
		return "mistral"
	}
	return "generic"
}

// Cloud reports whether p is a cloud provider (never probed, errors mapped the cloud way).
func (p Provider) Cloud() bool { return p != ProviderGeneric }

// path is the request path for kind: Azure puts the deployment in the path and the
// api-version in the query.
func (b *Backend) path(kind models.Kind, model string) (string, error) {
	var p string
	switch kind {
	case models.KindChat:
		p = "/chat/completions"
	case models.KindCompletion:
		p = "/completions"
	case models.KindEmbedding:
		p = "/embeddings"
	default:
		return "", models.Errorf(models.ErrInvalid, "unsupported request kind %v", kind)
	}
	if b.opts.Provider != ProviderAzure {
		return p, nil
	}
	dep := b.opts.Deployment
	if dep == "" {
		dep = model
	}
	if dep == "" {
		return "", models.Errorf(models.ErrInvalid, "azure backend %q: no deployment", b.opts.Name)
	}
	return "/openai/deployments/" + url.PathEscape(dep) + p + "?api-version=" + url.QueryEscape(b.opts.APIVersion), nil
}

// mistralDrop are OpenAI request fields Mistral's API refuses (422 extra_forbidden).
// Mistral reports usage at the end of every stream, so stream_options is not needed.
var mistralDrop = []string{"stream_options", "user", "store", "metadata", "service_tier", "logprobs",
	"top_logprobs", "logit_bias", "reasoning_effort", "modalities", "audio", "web_search_options",
	"functions", "function_call", "verbosity", "prompt_cache_key", "safety_identifier"}

// mistralBody rewrites an OpenAI body for Mistral: max_completion_tokens becomes
// max_tokens, seed becomes random_seed, and fields Mistral refuses are dropped.
func mistralBody(b []byte) []byte {
	for _, rn := range [...][2]string{{"max_completion_tokens", "max_tokens"}, {"seed", "random_seed"}} {
		if s, e, ok := jsonx.Find(b, rn[0]); ok {
			v := bytes.Clone(b[s:e])
			b = jsonx.Delete(nil, b, rn[0])
			if _, _, has := jsonx.Find(b, rn[1]); !has {
				b, _ = jsonx.Set(nil, b, rn[1], v)
			}
		}
	}
	for _, k := range mistralDrop {
		if _, _, ok := jsonx.Find(b, k); ok {
			b = jsonx.Delete(nil, b, k)
		}
	}
	return b
}

// cloudError reads a provider's error answer: OpenAI's and Azure's
// {"error":{"message","type","param","code"}}, Mistral's {"object":"error","message",
// "type","code"} (whose message may be an object of validation details).
func (b *Backend) cloudError(resp *fasthttp.Response) error {
	f := cloud.Failure{Status: resp.StatusCode(), RetryAfter: cloud.RetryAfter(&resp.Header, time.Now())}
	var p fastjson.Parser
	code := ""
	if v, err := p.ParseBytes(resp.Body()); err == nil {
		e := v.Get("error")
		if e == nil || e.Type() != fastjson.TypeObject {
			e = v
		}
		switch m := e.Get("message"); {
		case m == nil:
		case m.Type() == fastjson.TypeString:
			f.Message = string(m.GetStringBytes())
		default:
			f.Message = string(m.MarshalTo(nil))
		}
		f.Type = string(e.GetStringBytes("type"))
		if c := e.Get("code"); c != nil {
			if c.Type() == fastjson.TypeString {
				code = string(c.GetStringBytes())
			} else if c.Type() == fastjson.TypeNumber {
				code = c.String()
			}
		}
	} else {
		f.Message = string(bytes.TrimSpace(resp.Body()[:min(len(resp.Body()), 512)]))
	}
	m := strings.ToLower(f.Message)
	switch {
	case code == "insufficient_quota":
		// OpenAI's 429 for an account out of credit: no retry helps.
		f.Status = 402
	case f.Status >= 400 && f.Status < 500 && (code == "context_length_exceeded" ||
		strings.Contains(m, "maximum context length") || strings.Contains(m, "too large for model with") ||
		strings.Contains(m, "context_length_exceeded")):
		f.ContextLength = true
	}
	return cloud.Error(b.opts.Provider.String(), b.opts.Name, f)
}
