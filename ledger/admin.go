package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sluice-llm/sluice/models"
)

// KeySpec is the body of POST /admin/keys, and what `sluice keys create` sends.
type KeySpec struct {
	Name              string   `json:"name,omitempty"`
	Tenant            string   `json:"tenant,omitempty"`
	Residency         string   `json:"residency,omitempty"`
	Tiers             []string `json:"tiers,omitempty"`
	Models            []string `json:"models,omitempty"`
	NoCache           bool     `json:"no_cache,omitempty"`
	RequestsPerMinute int      `json:"requests_per_minute,omitempty"`
	TokensPerMinute   int      `json:"tokens_per_minute,omitempty"`
	DailyUSD          float64  `json:"daily_usd,omitempty"`
	MonthlyUSD        float64  `json:"monthly_usd,omitempty"`
}

// Key returns the spec as a models.Key (without id).
func (s KeySpec) Key() models.Key {
	return models.Key{Name: s.Name, Tenant: s.Tenant, Residency: s.Residency, Tiers: s.Tiers, Models: s.Models,
		NoCache: s.NoCache, RequestsPerMinute: s.RequestsPerMinute, TokensPerMinute: s.TokensPerMinute,
		DailyUSD: s.DailyUSD, MonthlyUSD: s.MonthlyUSD}
}

// KeyView is a key as the admin API shows it: never the key itself, except in the
// answer to its creation (Secret).
type KeyView struct {
	ID     string `json:"id"`
	Object string `json:"object"` // "api_key"
	Secret string `json:"key,omitempty"`
	KeySpec
	Source  string `json:"source"` // config or store
	Created int64  `json:"created,omitempty"`
	Revoked int64  `json:"revoked,omitempty"`
}

// ViewOf describes a key for the admin API.
func ViewOf(k KeyInfo) KeyView {
	v := KeyView{ID: k.ID, Object: "api_key", Source: k.Source, KeySpec: KeySpec{Name: k.Name, Tenant: k.Tenant,
		Residency: k.Residency, Tiers: k.Tiers, Models: k.Models, NoCache: k.NoCache,
		RequestsPerMinute: k.RequestsPerMinute, TokensPerMinute: k.TokensPerMinute, DailyUSD: k.DailyUSD, MonthlyUSD: k.MonthlyUSD}}
	if !k.Created.IsZero() {
		v.Created = k.Created.Unix()
	}
	if !k.Revoked.IsZero() {
		v.Revoked = k.Revoked.Unix()
	}
	return v
}

// ServeAdmin answers the admin API's key routes: POST /admin/keys (create; the answer
// holds the key, once), GET /admin/keys (list), GET /admin/keys/{id}, DELETE
// /admin/keys/{id} (revoke). id is "" for the collection.
func (k *KeyRing) ServeAdmin(ctx context.Context, method, id string, body []byte, now time.Time) (int, []byte, error) {
	switch {
	case method == "POST" && id == "":
		var spec KeySpec
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if len(bytes.TrimSpace(body)) > 0 {
			if err := dec.Decode(&spec); err != nil {
				return 0, nil, models.InvalidParam("body", "the body must be a JSON object of name, tenant, residency, tiers, "+
					"models, no_cache, requests_per_minute, tokens_per_minute, daily_usd, monthly_usd: %v", err)
			}
		}
		secret, info, err := k.Create(ctx, spec.Key(), now)
		if err != nil {
			return 0, nil, err
		}
		v := ViewOf(info)
		v.Secret = secret
		b, _ := json.Marshal(v)
		return 201, b, nil
	case method == "GET" && id == "":
		list := k.List()
		views := make([]KeyView, len(list))
		for i, ki := range list {
			views[i] = ViewOf(ki)
		}
		b, _ := json.Marshal(struct {
			Object string    `json:"object"`
			Data   []KeyView `json:"data"`
		}{"list", views})
		return 200, b, nil
	case method == "GET":
		ki, ok := k.Find(id)
		if !ok {
			return 0, nil, &models.Error{Kind: models.ErrNotFound, Code: "key_not_found", Msg: fmt.Sprintf("no key %s", id)}
		}
		b, _ := json.Marshal(ViewOf(ki))
		return 200, b, nil
	case method == "DELETE" && id != "":
		if err := k.Revoke(ctx, id, now); err != nil {
			return 0, nil, err
		}
		b, _ := json.Marshal(map[string]any{"id": id, "object": "api_key", "revoked": true})
		return 200, b, nil
	}
	return 0, nil, &models.Error{Kind: models.ErrInvalid, Status: 405, Code: "method_not_allowed",
		Msg: fmt.Sprintf("method %s is not allowed here: POST or GET /admin/keys, GET or DELETE /admin/keys/{id}", method)}
}
