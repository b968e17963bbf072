package cache

import (
	"testing"

	"github.com/sluice-llm/sluice/models"
)

func chatReq(tenant, body string, msgs ...models.Message) *models.Request {
	t := 0.0
	return &models.Request{Kind: models.KindChat, Tenant: tenant, Body: []byte(body), Messages: msgs,
		Sampling: models.Sampling{Temperature: &t}}
}

func user(s string) models.Message { return models.Message{Role: "user", Content: s} }

func TestKeyCanonical(t *testing.T) {
	var k keyer
	base := `{"model":"m","temperature":0,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}`
	describe := func(tenant, body, q string) requestKey {
		t.Helper()
		rk, why := k.describe("m", chatReq(tenant, body, models.Message{Role: "system", Content: "be brief"}, user(q)))
		if why != "" {
			t.Fatalf("%s: not cacheable: %s", body, why)
		}
		return rk
	}
	a := describe("t1", base, "hi")
	same := []string{
		// member order, whitespace, escapes, ignored fields
		`{"messages":[{"content":"be brief","role":"system"},{"role":"user","content":"hi"}],"temperature":0,"model":"m"}`,
		`{ "model" : "m", "temperature" : 0, "messages" : [ {"role":"system","content":"be \u0062rief"}, {"role":"user","content":"hi"} ] }`,
		`{"model":"alias","stream":true,"stream_options":{"include_usage":true},"user":"u","temperature":0,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}`,
	}
	for _, b := range same {
		if got := describe("t1", b, "hi"); got.key != a.key || got.scope != a.scope {
			t.Errorf("%s: key differs from the canonical one", b)
		}
	}
	differ := []string{
		`{"model":"m","temperature":0.1,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}`,
		`{"model":"m","temperature":0,"max_tokens":5,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}`,
		`{"model":"m","temperature":0,"messages":[{"role":"system","content":"be short"},{"role":"user","content":"hi"}]}`,
		`{"model":"m","temperature":0,"tools":[],"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}`,
		`{"model":"m","temperature":0,"response_format":{"type":"json_object"},"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}`,
		`{"model":"m","temperature":0,"top_k":3,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}`,
	}
	for _, b := range differ {
		got := describe("t1", b, "hi")
		if got.key == a.key || got.scope == a.scope {
			t.Errorf("%s: same key or scope as a different request", b)
		}
	}
	if got := describe("t2", base, "hi"); got.key == a.key || got.scope == a.scope {
		t.Error("two tenants share a key")
	}
	other := describe("t1", `{"model":"m","temperature":0,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello"}]}`, "hello")
	if other.scope != a.scope || other.key == a.key {
		t.Error("another last user turn must keep the scope and change the key")
	}
	if other.question != "hello" {
		t.Errorf("question %q", other.question)
	}
}

func TestKeyBypass(t *testing.T) {
	var k keyer
	for _, b := range []string{
		`{"model":"m","n":2,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","logprobs":true,"messages":[{"role":"user","content":"hi"}]}`,
	} {
		if _, why := k.describe("m", chatReq("", b, user("hi"))); why != bypassShape {
			t.Errorf("%s: got %q, want %q", b, why, bypassShape)
		}
	}
	if _, why := k.describe("m", chatReq("", `{"model":"m","n":1,"messages":[{"role":"user","content":"hi"}]}`, user("hi"))); why != "" {
		t.Errorf("n=1 is cacheable, got %q", why)
	}
}

func BenchmarkKey(b *testing.B) {
	var k keyer
	body := `{"model":"bench","messages":[{"role":"system","content":"You are a concise assistant for a travel company. Answer in one short sentence and do not add any greeting."},{"role":"user","content":"What is the capital of France, and which river flows through it?"}],"temperature":0.2,"max_tokens":64}`
	r := chatReq("t", body, models.Message{Role: "system", Content: "x"}, user("What is the capital of France, and which river flows through it?"))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		k.describe("bench", r)
	}
}
