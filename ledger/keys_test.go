package ledger

import (
	"context"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluice-llm/sluice/models"
)

func TestKeyRing(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	cfgKey := &models.Key{ID: models.KeyID(sha256.Sum256([]byte("sk-config"))), Tenant: "acme"}
	ring, err := NewKeyRing(ctx, []ConfigKey{{Digest: sha256.Sum256([]byte("sk-config")), Key: cfgKey}}, s)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("sk-config"))
	if k := ring.Lookup(&d); k != cfgKey || !ring.Required() {
		t.Fatalf("config key: %v", k)
	}
	secret, info, err := ring.Create(ctx, models.Key{Name: "bot", Residency: "eu", DailyUSD: 3}, time.Unix(1780000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "sk-sluice-") || info.ID != models.KeyID(sha256.Sum256([]byte(secret))) || info.Tenant != info.ID {
		t.Fatalf("created %q %+v", secret, info)
	}
	d = sha256.Sum256([]byte(secret))
	if k := ring.Lookup(&d); k == nil || k.Residency != "eu" || k.DailyUSD != 3 || k.Name != "bot" {
		t.Fatalf("stored key: %+v", k)
	}
	// The key itself is nowhere in the store.
	var n int
	if err := s.db.QueryRow(`SELECT count(*) FROM keys WHERE instr(CAST(digest AS TEXT), ?) > 0 OR instr(name, ?) > 0`, secret, secret).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the key is stored: %d %v", n, err)
	}
	if _, _, err := ring.Create(ctx, models.Key{Residency: "moon"}, time.Now()); !errors.Is(err, models.ErrInvalid) {
		t.Errorf("a bad residency: %v", err)
	}
	if err := ring.Revoke(ctx, cfgKey.ID, time.Now()); err == nil {
		t.Error("revoked a config key")
	}
	if err := ring.Revoke(ctx, info.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if k := ring.Lookup(&d); k != nil {
		t.Fatal("a revoked key still works")
	}
	if err := ring.Revoke(ctx, info.ID, time.Now()); !errors.Is(err, models.ErrNotFound) {
		t.Errorf("revoked twice: %v", err)
	}
	if list := ring.List(); len(list) != 2 || list[0].Source != "config" || list[1].Revoked.IsZero() {
		t.Errorf("list = %+v", list)
	}
}

// TestKeyRingSeesOtherProcesses: a key created through another handle on the store
// (`sluice keys create` while sluice runs) is picked up within one refresh period.
func TestKeyRingSeesOtherProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	synctest.Test(t, func(t *testing.T) {
		s, err := OpenSQLite(path, false)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx, cancel := context.WithCancel(context.Background())
		ring, err := NewKeyRing(ctx, nil, s)
		if err != nil {
			t.Fatal(err)
		}
		if ring.Required() {
			t.Fatal("no keys yet, but authentication required")
		}
		done := make(chan struct{})
		go func() { ring.Run(ctx, 2*time.Second); close(done) }()

		other, err := OpenSQLite(path, false)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		otherRing, err := NewKeyRing(ctx, nil, other)
		if err != nil {
			t.Fatal(err)
		}
		secret, _, err := otherRing.Create(ctx, models.Key{Name: "cli"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		d := sha256.Sum256([]byte(secret))
		if ring.Lookup(&d) != nil {
			t.Fatal("seen before a refresh")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if ring.Lookup(&d) == nil || !ring.Required() {
			t.Fatal("not seen after a refresh")
		}
		cancel()
		<-done
	})
}

// TestRevokingTheLastKeyKeepsAuthenticationOn: a server whose only key is revoked (it
// leaked) must refuse everyone, not fall back to serving without keys.
func TestRevokingTheLastKeyKeepsAuthenticationOn(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	ring, err := NewKeyRing(ctx, nil, s)
	if err != nil {
		t.Fatal(err)
	}
	_, info, err := ring.Create(ctx, models.Key{Name: "only"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !ring.Required() {
		t.Fatal("a key exists, but authentication is off")
	}
	if err := ring.Revoke(ctx, info.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if !ring.Required() {
		t.Fatal("revoking the only key turned authentication off: anyone may now call")
	}
	// A fresh process over the same store agrees.
	again, err := NewKeyRing(ctx, nil, s)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Required() {
		t.Fatal("after a restart, a store whose keys are all revoked serves without keys")
	}
}
