package cache

import (
	"bytes"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/models"
)

func sampleEntry() *Entry {
	now := time.Unix(1700000000, 123)
	return &Entry{Key: TestKey("t", "m", "q"), Tenant: "t", Model: "m", Kind: models.KindChat, Question: "q?",
		Vector: []float32{0.5, -0.5}, EmbedderID: "engine:e",
		Answer: Answer{Role: "assistant", Text: "a", ToolCalls: []byte(`[{"id":"x"}]`), FinishReason: "stop"},
		Usage:  models.Usage{PromptTokens: 3, CompletionTokens: 4, Estimated: true, Cost: models.Cost{Prompt: 0.5, Completion: 0.25}},
		Region: "eu", Created: now, Expires: now.Add(time.Hour)}
}

func TestEntryRoundTrip(t *testing.T) {
	e := sampleEntry()
	b, _ := e.MarshalBinary()
	var d Entry
	if err := d.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	b2, _ := d.MarshalBinary()
	if !bytes.Equal(b, b2) || d.Usage != e.Usage || !d.Expires.Equal(e.Expires) || d.Answer.Text != "a" || d.Region != "eu" {
		t.Fatalf("round trip: %+v", d)
	}
	for i := range b {
		if err := d.UnmarshalBinary(b[:i]); err == nil {
			t.Fatalf("a %d-byte prefix decoded", i)
		}
	}
}

// TestEntryVersion1: entries stored before the region was recorded decode with an
// unknown region (served only to keys that allow any region).
func TestEntryVersion1(t *testing.T) {
	e := sampleEntry()
	e.Region = ""
	b, _ := e.MarshalBinary()
	b = b[:len(b)-1] // version 1 ended before the region
	b[0] = 1
	var d Entry
	if err := d.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if d.Region != "" || d.Answer.Text != "a" {
		t.Fatalf("version 1: %+v", d)
	}
	if (&models.Key{Residency: models.ResidencyEU}).AllowsRegion(d.Region) {
		t.Fatal("an entry of unknown region would be served to an EU key")
	}
}

func FuzzEntryUnmarshal(f *testing.F) {
	b, _ := sampleEntry().MarshalBinary()
	f.Add(b)
	f.Add([]byte{1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Entry
		if e.UnmarshalBinary(b) != nil {
			return
		}
		again, _ := e.MarshalBinary()
		var e2 Entry
		if err := e2.UnmarshalBinary(again); err != nil {
			t.Fatalf("re-encoded entry does not decode: %v", err)
		}
	})
}

func FuzzToolCalls(f *testing.F) {
	f.Add([]byte(`[{"index":0,"id":"c","type":"function","function":{"name":"f","arguments":"{\"a\":"}}]`), []byte(`[{"index":0,"function":{"arguments":"1}"}}]`))
	f.Add([]byte(`[]`), []byte(`{}`))
	f.Add([]byte(`[{"index":200}]`), []byte(`null`))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		whole, ok := mergeToolCallDeltas([][]byte{a, b})
		if !ok {
			return
		}
		d := toolCallDeltas(whole)
		if len(d) == 0 || d[0] != '[' {
			t.Fatalf("deltas of %s: %s", whole, d)
		}
	})
}

func FuzzParseEvent(f *testing.F) {
	f.Add("put", "0011", "", "")
	f.Add("purge", "", "acme", "tiny")
	f.Fuzz(func(t *testing.T, op, key, tenant, model string) {
		ev, ok := parseEvent(map[string]any{"op": op, "key": key, "tenant": tenant, "model": model})
		if ok && ev.Op == OpPurge && (ev.Tenant != tenant || ev.Model != model) {
			t.Fatal("purge event lost its scope")
		}
	})
}
