package config

import (
	"regexp"
	"strings"
)

// Cloud providers as engines: kinds anthropic and gemini, and kind openai with a
// provider (openai, azure, mistral; generic is any engine sluice probes). Their fields
// live on Engine (provider, region, api_version, deployment, max_tokens); defaults and
// checks are here.

// Engine kinds and providers of the clouds.
const (
	KindAnthropic = "anthropic"
	KindGemini    = "gemini"

	ProviderGeneric = "generic"
	ProviderOpenAI  = "openai"
	ProviderAzure   = "azure"
	ProviderMistral = "mistral"

	// RegionLocal is the region of the box's own engines (models.RegionLocal).
	RegionLocal = "local"

	// DefaultCloudConcurrency is max_concurrency for a cloud engine that sets none.
	DefaultCloudConcurrency = 16
)

// Cloud reports whether the engine is a cloud provider: never probed, priced per token,
// and always in a named region other than local.
func (e *Engine) Cloud() bool {
	switch e.Kind {
	case KindAnthropic, KindGemini:
		return true
	case "openai":
		return e.Provider != "" && e.Provider != ProviderGeneric
	}
	return false
}

// applyCloudDefaults fills in the provider's URL, API version and concurrency, and the
// local region for local engines. A cloud's region has no default: it must be stated.
func applyCloudDefaults(e *Engine) {
	if e.Kind == "openai" && e.Provider == "" {
		e.Provider = ProviderGeneric
	}
	if !e.Cloud() {
		// A local engine's region defaults to local; one at a public address must say
		// where it runs (Routing.applyDefaults leaves it empty, and validation asks).
		if e.Region == "" && !remoteURL(e) {
			e.Region = RegionLocal
		}
		return
	}
	if e.MaxConcurrency == 0 {
		e.MaxConcurrency = DefaultCloudConcurrency
	}
	switch {
	case e.Kind == KindAnthropic:
		def(&e.URL, "https://api.anthropic.com")
		def(&e.APIVersion, "2023-06-01")
		if e.MaxTokens == 0 {
			e.MaxTokens = 4096
		}
	case e.Kind == KindGemini:
		def(&e.URL, "https://generativelanguage.googleapis.com")
		def(&e.APIVersion, "v1beta")
	case e.Provider == ProviderOpenAI:
		def(&e.URL, "https://api.openai.com/v1")
	case e.Provider == ProviderMistral:
		def(&e.URL, "https://api.mistral.ai/v1")
	case e.Provider == ProviderAzure:
		def(&e.APIVersion, "2024-10-21")
	}
}

func def(s *string, v string) {
	if *s == "" {
		*s = v
	}
}

var regionName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// validateCloud checks an engine's cloud fields; p is its path (engines[i]).
func validateCloud(p string, e *Engine, bad func(path, format string, args ...any)) {
	if e.Kind == "openai" {
		switch e.Provider {
		case ProviderGeneric, ProviderOpenAI, ProviderAzure, ProviderMistral:
		default:
			bad(p+".provider", "must be generic, openai, azure or mistral, got %q", e.Provider)
		}
	} else if e.Provider != "" {
		bad(p+".provider", "is only for kind openai (kind %s is its own provider)", e.Kind)
	}
	if e.Region != "" && !regionName.MatchString(e.Region) {
		bad(p+".region", "%q is not a region name (lowercase letters, digits and '-', e.g. eu, us, eu-west)", e.Region)
	}
	if e.Deployment != "" && e.Provider != ProviderAzure {
		bad(p+".deployment", "is only for provider azure")
	}
	if e.MaxTokens < 0 {
		bad(p+".max_tokens", "must not be negative")
	}
	if e.MaxConcurrency < 0 {
		bad(p+".max_concurrency", "must not be negative")
	}
	if !e.Cloud() {
		return
	}
	switch e.Region {
	case "":
		bad(p+".region", "is required for a cloud engine (eu, us, ...): residency policies decide by it")
	case RegionLocal:
		bad(p+".region", "a cloud engine cannot be in region local (the box's own engines)")
	}
	if strings.TrimSpace(e.APIKey) == "" {
		bad(p+".api_key", "is required for a cloud engine (write it as ${ENV_VAR})")
	}
	if e.Provider == ProviderAzure && e.URL == "" {
		bad(p+".url", "is required for azure: the resource endpoint, e.g. https://my-resource.openai.azure.com")
	}
	if len(e.Models) == 0 {
		bad(p+".models", "a cloud engine needs its models listed (sluice does not list a provider's catalog)")
	}
	if e.ModelPath != "" || e.Binary != "" {
		bad(p, "model_path and binary are for llamacpp engines")
	}
}
