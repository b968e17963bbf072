package ledger

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-llm/sluice/models"
)

// ConfigKey is a key from the config file: its digest and policy.
type ConfigKey struct {
	Digest [32]byte
	Key    *models.Key
}

// KeyRing resolves API keys on the request path: one map lookup by the key's SHA-256
// digest in an immutable snapshot (atomic.Pointer), rebuilt whenever keys change. Keys
// come from the config file and from the store (`sluice keys`, the admin API); a key in
// both is the config's. The map is keyed by the digest, so a lookup's timing depends on
// the digest only, which tells an attacker nothing about any key.
type KeyRing struct {
	config []ConfigKey
	store  Store // nil: config keys only

	snap    atomic.Pointer[keySnap]
	mu      sync.Mutex // one reload at a time
	version int64
}

type keySnap struct {
	byDigest map[[32]byte]*models.Key
	keys     []KeyInfo
}

// KeyInfo describes a key for listings: never the key itself.
type KeyInfo struct {
	models.Key
	Source  string // "config" or "store"
	Created time.Time
	Revoked time.Time
}

// NewKeyRing loads the config's keys and the store's (store may be nil).
func NewKeyRing(ctx context.Context, config []ConfigKey, store Store) (*KeyRing, error) {
	k := &KeyRing{config: config, store: store}
	k.version = -1
	if err := k.Reload(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

// Lookup returns the active key whose SHA-256 digest is d, or nil.
func (k *KeyRing) Lookup(d *[32]byte) *models.Key { return k.snap.Load().byDigest[*d] }

// Required reports whether requests must carry a key: true as soon as any key exists,
// revoked ones included (revoking the last key locks everyone out; it must not turn
// authentication off).
func (k *KeyRing) Required() bool { return len(k.snap.Load().keys) > 0 }

// List returns every key, config keys first, revoked store keys included.
func (k *KeyRing) List() []KeyInfo { return k.snap.Load().keys }

// Reload rebuilds the snapshot from the config and the store.
func (k *KeyRing) Reload(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var stored []StoredKey
	var ver int64
	if k.store != nil {
		var err error
		if ver, err = k.store.KeysVersion(ctx); err != nil {
			return fmt.Errorf("ledger: keys: %w", err)
		}
		if stored, err = k.store.Keys(ctx); err != nil {
			return fmt.Errorf("ledger: keys: %w", err)
		}
	}
	s := &keySnap{byDigest: make(map[[32]byte]*models.Key, len(k.config)+len(stored))}
	for _, c := range k.config {
		s.byDigest[c.Digest] = c.Key
		s.keys = append(s.keys, KeyInfo{Key: *c.Key, Source: "config"})
	}
	for i := range stored {
		sk := &stored[i]
		s.keys = append(s.keys, KeyInfo{Key: sk.Key, Source: "store", Created: sk.Created, Revoked: sk.Revoked})
		if _, dup := s.byDigest[sk.Digest]; dup || !sk.Revoked.IsZero() {
			continue
		}
		key := sk.Key
		s.byDigest[sk.Digest] = &key
	}
	k.snap.Store(s)
	k.version = ver
	return nil
}

// Run reloads the keys whenever the store says they changed (another process ran
// `sluice keys`), checking every `every`, until ctx ends.
func (k *KeyRing) Run(ctx context.Context, every time.Duration) {
	if k.store == nil {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, err := k.store.KeysVersion(ctx)
		k.mu.Lock()
		changed := err == nil && v != k.version
		k.mu.Unlock()
		if changed {
			_ = k.Reload(ctx)
		}
	}
}

// NewSecret makes a new API key: "sk-sluice-" and 48 random hex digits.
func NewSecret() (string, [32]byte, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", [32]byte{}, err
	}
	s := "sk-sluice-" + hex.EncodeToString(b[:])
	return s, sha256.Sum256([]byte(s)), nil
}

// CheckKeySpec validates a new key's policy and fills its defaults.
func CheckKeySpec(k *models.Key) error {
	switch k.Residency {
	case "":
		k.Residency = models.ResidencyAny
	case models.ResidencyAny, models.ResidencyEU, models.ResidencyLocalOnly:
	default:
		return models.InvalidParam("residency", "residency must be local-only, eu or any, got %q", k.Residency)
	}
	if len(k.Name) > 128 || len(k.Tenant) > 128 {
		return models.InvalidParam("name", "name and tenant must be at most 128 bytes")
	}
	if k.RequestsPerMinute < 0 || k.TokensPerMinute < 0 || k.DailyUSD < 0 || k.MonthlyUSD < 0 {
		return models.InvalidParam("limits", "limits must not be negative")
	}
	return nil
}

// Create makes a key with spec's policy, stores its digest and returns the key (shown
// once: it is not kept).
func (k *KeyRing) Create(ctx context.Context, spec models.Key, now time.Time) (string, KeyInfo, error) {
	if k.store == nil {
		return "", KeyInfo{}, models.Errorf(models.ErrForbidden, "keys cannot be created: the ledger is disabled")
	}
	if err := CheckKeySpec(&spec); err != nil {
		return "", KeyInfo{}, err
	}
	secret, d, err := NewSecret()
	if err != nil {
		return "", KeyInfo{}, err
	}
	spec.ID = models.KeyID(d)
	if spec.Tenant == "" {
		spec.Tenant = spec.ID
	}
	if err := k.store.CreateKey(ctx, StoredKey{Digest: d, Key: spec, Created: now}); err != nil {
		return "", KeyInfo{}, err
	}
	if err := k.Reload(ctx); err != nil {
		return "", KeyInfo{}, err
	}
	return secret, KeyInfo{Key: spec, Source: "store", Created: now.UTC().Truncate(time.Second)}, nil
}

// Revoke revokes a stored key; keys from the config file are revoked by editing it.
func (k *KeyRing) Revoke(ctx context.Context, id string, now time.Time) error {
	for _, c := range k.config {
		if c.Key.ID == id {
			return &models.Error{Kind: models.ErrInvalid, Status: 409, Code: "key_in_config",
				Msg: fmt.Sprintf("key %s is defined in the config file: remove it there", id)}
		}
	}
	if k.store == nil {
		return models.Errorf(models.ErrNotFound, "no key %s", id)
	}
	ok, err := k.store.RevokeKey(ctx, id, now)
	if err != nil {
		return err
	}
	if !ok {
		return &models.Error{Kind: models.ErrNotFound, Code: "key_not_found", Msg: fmt.Sprintf("no active key %s", id)}
	}
	return k.Reload(ctx)
}

// Find returns a key's description by id.
func (k *KeyRing) Find(id string) (KeyInfo, bool) {
	for _, ki := range k.List() {
		if ki.ID == id {
			return ki, true
		}
	}
	return KeyInfo{}, false
}
