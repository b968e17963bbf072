package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/sluice-llm/sluice/config"
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/router"
	"github.com/sluice-llm/sluice/runtime/anthropic"
	"github.com/sluice-llm/sluice/runtime/gemini"
	"github.com/sluice-llm/sluice/runtime/llamacpp"
	"github.com/sluice-llm/sluice/runtime/ollama"
	"github.com/sluice-llm/sluice/runtime/openai"
	"github.com/sluice-llm/sluice/runtime/upstream"
	"github.com/sluice-llm/sluice/scheduler"
)

// engine is one configured engine, wired.
type engine struct {
	name    string
	cfg     config.Engine
	backend scheduler.Backend
	run     func(context.Context, time.Duration) error // nil for engines sluice does not run
	ready   func(context.Context) error                // waits for a managed engine
	list    func(context.Context) ([]string, error)    // discovers models
	close   func()
}

type engineSet struct{ list []*engine }

func buildEngines(cfg *config.Config, counter models.TokenCounter, log *slog.Logger) (*engineSet, error) {
	set := &engineSet{}
	// Managed engines inherit only an allow-list of sluice's environment (PATH, HOME,
	// locale, CUDA_*, ...): never its secrets.
	baseEnv := config.OSEngineEnviron()
	for _, ec := range cfg.Engines {
		e := &engine{name: ec.Name, cfg: ec}
		switch ec.Kind {
		case "llamacpp":
			b, err := llamacpp.New(llamacpp.Options{
				Name: ec.Name, URL: ec.URL, Binary: ec.Binary, Model: ec.ModelPath, Slots: ec.Slots,
				Context: ec.Context, Threads: ec.Threads, GPULayers: ec.GPULayers, Embedding: ec.Embedding,
				Args: ec.Args, Env: ec.Env, BaseEnv: baseEnv, MaxEvent: cfg.Server.Limits.MaxEngineLineBytes, Counter: counter, Logger: log, Alias: firstModel(ec),
			})
			if err != nil {
				set.close()
				return nil, err
			}
			e.backend, e.list, e.close = b, b.Models, b.Close
			if p := b.Process(); p != nil {
				e.run, e.ready = b.Run, p.WaitReady
			}
		case "ollama":
			b, err := ollama.New(ollama.Options{Name: ec.Name, URL: ec.URL, Slots: ec.Slots, Counter: counter})
			if err != nil {
				set.close()
				return nil, err
			}
			e.backend, e.list, e.close = b, b.Models, b.Close
		case "openai":
			slots := ec.MaxConcurrency
			prov, _ := openai.ParseProvider(ec.Provider) // config validated it
			b, err := openai.New(openai.Options{Name: ec.Name, BaseURL: ec.URL, APIKey: ec.APIKey, Slots: slots, Counter: counter,
				Provider: prov, APIVersion: ec.APIVersion, Deployment: ec.Deployment,
				Upstream: upstream.Options{MaxEvent: cfg.Server.Limits.MaxEngineLineBytes}})
			if err != nil {
				set.close()
				return nil, err
			}
			e.backend, e.list, e.close = b, b.Models, b.Close
		case config.KindAnthropic:
			b, err := anthropic.New(anthropic.Options{Name: ec.Name, BaseURL: ec.URL, APIKey: ec.APIKey, Version: ec.APIVersion,
				MaxConcurrency: ec.MaxConcurrency, MaxTokens: ec.MaxTokens, Counter: counter})
			if err != nil {
				set.close()
				return nil, err
			}
			e.backend, e.close = b, b.Close
		case config.KindGemini:
			b, err := gemini.New(gemini.Options{Name: ec.Name, BaseURL: ec.URL, APIKey: ec.APIKey, APIVersion: ec.APIVersion,
				MaxConcurrency: ec.MaxConcurrency, Counter: counter})
			if err != nil {
				set.close()
				return nil, err
			}
			e.backend, e.close = b, b.Close
		default:
			set.close()
			return nil, fmt.Errorf("engine %s: unknown kind %q", ec.Name, ec.Kind)
		}
		set.list = append(set.list, e)
	}
	return set, nil
}

func firstModel(ec config.Engine) string {
	if len(ec.Models) > 0 {
		return ec.Models[0].Upstream
	}
	return ""
}

// schedulerOptions tells the scheduler what it may do with each engine: address
// llama-server's slots (id_slot), and group requests by model on engines that hold one
// model at a time.
func (s *engineSet) schedulerOptions() map[string]scheduler.EngineOptions {
	m := make(map[string]scheduler.EngineOptions, len(s.list))
	for _, e := range s.list {
		o := scheduler.EngineOptions{Addressable: e.cfg.Kind == "llamacpp", Exclusive: e.cfg.MaxLoadedModels == 1,
			KVTokens: e.cfg.KVTokens}
		if e.cfg.Kind != "llamacpp" && e.cfg.MaxConcurrency > 0 {
			o.Slots = e.cfg.MaxConcurrency
		} else if e.cfg.Kind != "llamacpp" {
			o.Slots = e.cfg.Slots
		}
		m[e.name] = o
	}
	return m
}

func (s *engineSet) names() string {
	n := make([]string, len(s.list))
	for i, e := range s.list {
		n[i] = e.name + " (" + e.cfg.Kind + ")"
	}
	return strings.Join(n, ", ")
}

func (s *engineSet) close() {
	for _, e := range s.list {
		if e.close != nil {
			e.close()
		}
	}
}

// catalog lists the models clients can call: those configured, and for engines with
// none configured, those the engine itself reports.
func (s *engineSet) catalog(ctx context.Context, cfg *config.Config, log *slog.Logger) ([]router.Entry, error) {
	now := time.Now().Unix()
	table := cloudPrices(cfg)
	var out []router.Entry
	for _, e := range s.list {
		if len(e.cfg.Models) > 0 {
			for _, m := range e.cfg.Models {
				en := router.Entry{Name: m.Name, Aliases: m.Aliases, Backend: e.name,
					UpstreamModel: m.Upstream, Kind: m.Kind, Created: now}
				entryRouting(&en, e.cfg, m, table)
				out = append(out, en)
			}
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		names, err := e.list(dctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("engine %s: cannot list its models (is it running at %s?): %w", e.name, e.cfg.URL, err)
		}
		if len(names) == 0 {
			log.Warn("engine reports no models", "engine", e.name)
		}
		for _, n := range names {
			kind := "chat"
			if strings.Contains(strings.ToLower(n), "embed") {
				kind = "embedding"
			}
			en := router.Entry{Name: n, Backend: e.name, UpstreamModel: n, Kind: kind, Created: now}
			entryRouting(&en, e.cfg, config.Model{Name: n, Upstream: n}, table)
			out = append(out, en)
		}
	}
	return out, nil
}

// waitReady waits for every managed engine, printing progress.
func (s *engineSet) waitReady(ctx context.Context, w io.Writer) error {
	for _, e := range s.list {
		if e.ready == nil {
			continue
		}
		start := time.Now()
		if err := e.ready(ctx); err != nil {
			return fmt.Errorf("engine %s did not start: %w", e.name, err)
		}
		fmt.Fprintf(w, "engine %s ready in %.1fs\n", e.name, time.Since(start).Seconds())
	}
	return nil
}
