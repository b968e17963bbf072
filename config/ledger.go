package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluice-llm/sluice/models"
	"go.yaml.in/yaml/v3"
)

// APIKey is one entry of server.api_keys: a plain string (the key, or "sha256:<hex>" of
// it) or an object with the key and its policy and limits.
//
//	api_keys:
//	  - ${TEAM_KEY}                 # plain: no policy, no limits
//	  - key: sha256:9f86d0...       # the key's SHA-256, so the file holds no secret
//	    name: support-bot
//	    tenant: acme
//	    residency: eu               # local-only | eu | any (default any)
//	    tiers: [small]              # allowed tiers; empty: all
//	    models: [tiny]              # allowed models; empty: all
//	    requests_per_minute: 60
//	    daily_usd: 5
type APIKey struct {
	Key       string   `yaml:"key"`
	Name      string   `yaml:"name"`
	Tenant    string   `yaml:"tenant"`
	Residency string   `yaml:"residency"`
	Tiers     []string `yaml:"tiers"`
	Models    []string `yaml:"models"`
	NoCache   bool     `yaml:"no_cache"`
	// Limits; 0: none.
	RequestsPerMinute int     `yaml:"requests_per_minute"`
	TokensPerMinute   int     `yaml:"tokens_per_minute"`
	DailyUSD          float64 `yaml:"daily_usd"`
	MonthlyUSD        float64 `yaml:"monthly_usd"`
}

// UnmarshalYAML accepts a plain string (the key or its digest) or a mapping.
func (k *APIKey) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*k = APIKey{Key: n.Value}
		return nil
	}
	type plain APIKey
	return n.Decode((*plain)(k))
}

// acceptsScalar tells checkKeys that a plain string stands for the whole struct.
func (*APIKey) acceptsScalar() {}

// Digest is the SHA-256 of the key (the digest itself when given as "sha256:<hex>").
func (k APIKey) Digest() [32]byte {
	var d [32]byte
	if h, ok := strings.CutPrefix(k.Key, "sha256:"); ok {
		b, _ := hex.DecodeString(h)
		copy(d[:], b)
		return d
	}
	return sha256.Sum256([]byte(k.Key))
}

// Policy returns the key as the gateway attaches it to requests: its id (derived from the
// digest, never the key), tenant (default: the id) and limits.
func (k APIKey) Policy() *models.Key {
	d := k.Digest()
	id := models.KeyID(d)
	tenant := k.Tenant
	if tenant == "" {
		tenant = id
	}
	res := k.Residency
	if res == "" {
		res = models.ResidencyAny
	}
	return &models.Key{ID: id, Name: k.Name, Tenant: tenant, Residency: res, Tiers: k.Tiers, Models: k.Models,
		NoCache: k.NoCache, RequestsPerMinute: k.RequestsPerMinute, TokensPerMinute: k.TokensPerMinute,
		DailyUSD: k.DailyUSD, MonthlyUSD: k.MonthlyUSD}
}

// KeyDigests returns the SHA-256 digests of the configured API keys.
func (s *Server) KeyDigests() [][32]byte {
	out := make([][32]byte, len(s.APIKeys))
	for i, k := range s.APIKeys {
		out[i] = k.Digest()
	}
	return out
}

// Ledger configures the usage ledger, API keys kept in its store, budgets and the
// figures behind honest savings (section `ledger`).
type Ledger struct {
	// Disabled turns the ledger off: no usage records, no budgets, no stored keys.
	Disabled bool `yaml:"disabled"`
	// Path is the SQLite file (default $SLUICE_DATA/ledger.db; see DataDir). Several
	// sluice processes may share it.
	Path string `yaml:"path"`
	// Durability says what survives once a client has the end of its answer:
	// "process" (default): its record has been written to the operating system, so a
	// crash of sluice (kill -9) loses nothing; "power": it has also been fsynced, so a
	// crash of the machine loses nothing either (an fsync per group of requests).
	Durability string `yaml:"durability"`
	// BatchSize and BatchInterval bound how many records go into one SQLite
	// transaction and how long a record waits for one (defaults 512 and 200ms).
	BatchSize     int           `yaml:"batch_size"`
	BatchInterval time.Duration `yaml:"batch_interval"`
	// KeysRefresh is how often keys changed by another process (`sluice keys`) are
	// picked up (default 2s); changes through the admin API apply at once.
	KeysRefresh time.Duration `yaml:"keys_refresh"`
	// DefaultMaxTokens is the completion length a budget assumes for a request that sets
	// no max_tokens (default 1024).
	DefaultMaxTokens int `yaml:"default_max_tokens"`
	// BoxPerHour is what the whole machine costs per hour, for effective cost (default:
	// every GPU NVML sees at pricing.gpu_per_hour, engines or not; pricing.cpu_per_hour
	// on a box without GPUs).
	BoxPerHour *float64 `yaml:"box_per_hour"`
	// References maps a model class (small, large, or a routing tier) to the cloud
	// model its local models are compared with (defaults: small gpt-4o-mini, large
	// gpt-4o). models[].reference and pricing.reference override it.
	References map[string]string `yaml:"references"`
}

// DataDir is where sluice keeps durable data (the ledger): $SLUICE_DATA, else
// $XDG_DATA_HOME/sluice, else ~/.local/share/sluice.
func DataDir(env Env) string {
	if d, ok := env("SLUICE_DATA"); ok && d != "" {
		return d
	}
	if d, ok := env("XDG_DATA_HOME"); ok && d != "" {
		return filepath.Join(d, "sluice")
	}
	home, ok := env("HOME")
	if !ok || home == "" {
		return filepath.Join(CacheDir(env), "data")
	}
	return filepath.Join(home, ".local", "share", "sluice")
}

func (l *Ledger) applyDefaults(env Env) {
	if l.Path == "" {
		l.Path = filepath.Join(DataDir(env), "ledger.db")
	}
	if l.Durability == "" {
		l.Durability = "process"
	}
	if l.BatchSize == 0 {
		l.BatchSize = 512
	}
	if l.BatchInterval == 0 {
		l.BatchInterval = 200 * time.Millisecond
	}
	if l.KeysRefresh == 0 {
		l.KeysRefresh = 2 * time.Second
	}
	if l.DefaultMaxTokens == 0 {
		l.DefaultMaxTokens = 1024
	}
	refs := map[string]string{"small": "gpt-4o-mini", "large": "gpt-4o"}
	for k, v := range l.References {
		refs[k] = v
	}
	l.References = refs
}

func (l *Ledger) validate(bad func(path, format string, args ...any)) {
	switch l.Durability {
	case "process", "power":
	default:
		bad("ledger.durability", "must be process or power, got %q", l.Durability)
	}
	if l.BatchSize < 1 || l.BatchSize > 100000 {
		bad("ledger.batch_size", "must be between 1 and 100000, got %d", l.BatchSize)
	}
	if l.BatchInterval < time.Millisecond {
		bad("ledger.batch_interval", "must be at least 1ms, got %v", l.BatchInterval)
	}
	if l.KeysRefresh < 10*time.Millisecond {
		bad("ledger.keys_refresh", "must be at least 10ms, got %v", l.KeysRefresh)
	}
	if l.DefaultMaxTokens < 1 {
		bad("ledger.default_max_tokens", "must be at least 1")
	}
	if l.BoxPerHour != nil && *l.BoxPerHour < 0 {
		bad("ledger.box_per_hour", "must not be negative")
	}
}

// validateKeys checks server.api_keys.
func (s *Server) validateKeys(bad func(path, format string, args ...any)) {
	seen := map[[32]byte]int{}
	for i, k := range s.APIKeys {
		p := fmt.Sprintf("server.api_keys[%d]", i)
		if k.Key == "" {
			bad(p, "is empty (an unset environment variable?)")
			continue
		}
		if h, ok := strings.CutPrefix(k.Key, "sha256:"); ok {
			if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
				bad(p, "sha256: digest must be 64 hex digits")
				continue
			}
		}
		switch k.Residency {
		case "", models.ResidencyAny, models.ResidencyEU, models.ResidencyLocalOnly:
		default:
			bad(p+".residency", "must be local-only, eu or any, got %q", k.Residency)
		}
		if k.RequestsPerMinute < 0 || k.TokensPerMinute < 0 || k.DailyUSD < 0 || k.MonthlyUSD < 0 {
			bad(p, "limits must not be negative")
		}
		d := k.Digest()
		if j, dup := seen[d]; dup {
			bad(p, "is the same key as server.api_keys[%d]", j)
		}
		seen[d] = i
	}
}
