package cache

import (
	"cmp"
	"encoding/binary"
	"slices"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fastjson"
)

// Why a request is not cached (the bypass reasons, a bounded metric label).
const (
	bypassDirective = "directive"  // Cache-Control / X-Sluice-Cache
	bypassKey       = "key"        // the API key has caching off
	bypassKind      = "kind"       // embeddings, several prompts
	bypassSampling  = "sampling"   // temperature too high (or unset) without a seed
	bypassShape     = "shape"      // n > 1, logprobs, echo: not replayable
	bypassBody      = "body"       // no body to key on
	bypassOff       = "off"        // the cache is off for this model
	bypassUnknown   = "unexpected" // the body did not parse (the gateway validated it)
)

var bypassReasons = []string{bypassDirective, bypassKey, bypassKind, bypassSampling, bypassShape, bypassBody, bypassOff, bypassUnknown}

// ignoredFields do not change the answer: the model is keyed by its catalog name (so
// aliases share entries) and a streamed and a whole answer are the same answer.
func ignoredField(k []byte) bool {
	switch string(k) {
	case "model", "stream", "stream_options", "user", "metadata", "store", "service_tier":
		return true
	}
	return false
}

// unreplayable fields ask for more than one answer or for data sluice does not keep.
func unreplayable(k []byte, v *fastjson.Value) bool {
	switch string(k) {
	case "n", "best_of":
		n, err := v.Int()
		return err != nil || n != 1
	case "logprobs", "echo":
		return v.Type() != fastjson.TypeFalse && v.Type() != fastjson.TypeNull
	case "top_logprobs":
		return v.Type() != fastjson.TypeNull
	}
	return false
}

// keyer computes request keys. It is safe for concurrent use.
type keyer struct {
	parsers fastjson.ParserPool
	pool    sync.Pool // *keyScratch
}

// keyScratch builds a request's canonical form in buf and hashes it.
type keyScratch struct {
	buf   []byte
	pairs []kv
	d     [3]*xxhash.Digest
	num   [32]byte
}

func (s *keyScratch) b(c byte) { s.buf = append(s.buf, c) }

// sum hashes buf with three seeds: 24 bytes of digest (the tenant and the model are
// compared on every hit, so a collision could only ever mix up one tenant's entries).
func (s *keyScratch) sum(dst []byte) {
	for i, d := range s.d {
		d.ResetWithSeed(keySeeds[i])
		d.Write(s.buf)
		binary.BigEndian.PutUint64(dst[8*i:], d.Sum64())
	}
}

var keySeeds = [3]uint64{0x243f6a8885a308d3, 0x13198a2e03707344, 0xa4093822299f31d0}

type kv struct {
	k []byte
	v *fastjson.Value
}

// requestKey is what the cache knows about a cacheable request.
type requestKey struct {
	key      Key
	scope    Scope
	question string // the last user turn ("" when the request has none: exact match only)
}

// describe returns the request's key and scope, or the reason it is not cacheable.
func (k *keyer) describe(model string, r *models.Request) (requestKey, string) {
	var rk requestKey
	if len(r.Body) == 0 {
		return rk, bypassBody
	}
	// The part keyed apart from the scope: the last user turn of a chat, the prompt of
	// a completion.
	last := -1
	switch r.Kind {
	case models.KindChat:
		if n := len(r.Messages); n > 0 && r.Messages[n-1].Role == "user" && len(r.Messages[n-1].Images) == 0 {
			last = n - 1
			rk.question = r.Messages[last].Content
		}
	case models.KindCompletion:
		if len(r.Prompt) != 1 {
			return rk, bypassKind
		}
		rk.question = r.Prompt[0]
	default:
		return rk, bypassKind
	}
	p := k.parsers.Get()
	defer k.parsers.Put(p)
	v, err := p.ParseBytes(r.Body)
	if err != nil || v.Type() != fastjson.TypeObject {
		return rk, bypassUnknown
	}
	s := k.scratch()
	defer k.pool.Put(s)
	s.buf = s.buf[:0]
	s.str(r.Tenant)
	s.str(model)
	s.b(byte(r.Kind))
	// Top-level fields in key order, the ignored ones left out.
	obj, _ := v.Object()
	base := len(s.pairs)
	why := ""
	obj.Visit(func(key []byte, val *fastjson.Value) {
		if ignoredField(key) {
			return
		}
		if unreplayable(key, val) {
			why = bypassShape
		}
		s.pairs = append(s.pairs, kv{key, val})
	})
	if why != "" {
		s.pairs = s.pairs[:base]
		return rk, why
	}
	top := s.pairs[base:]
	slices.SortFunc(top, func(a, b kv) int { return cmp.Compare(string(a.k), string(b.k)) })
	for _, f := range top {
		s.bytes(f.k)
		switch {
		case r.Kind == models.KindChat && string(f.k) == "messages" && last >= 0:
			arr, _ := f.v.Array()
			s.b('[')
			for i, m := range arr {
				if i == len(arr)-1 {
					// the last user turn without its content
					s.canonical(m, "content")
				} else {
					s.canonical(m, "")
				}
			}
		case r.Kind == models.KindCompletion && string(f.k) == "prompt":
			s.b('p')
		default:
			s.canonical(f.v, "")
		}
	}
	s.pairs = s.pairs[:base]
	var sum [24]byte
	s.sum(sum[:])
	copy(rk.scope[:], sum[:])
	// The key: the scope and the question.
	s.buf = append(s.buf[:0], sum[:]...)
	s.str(rk.question)
	s.sum(sum[:])
	rk.key = makeKey(r.Tenant, model, sum[:])
	return rk, ""
}

// makeKey lays a key out as the tenant's and the model's hash prefixes (4 bytes each,
// so stores can find a tenant's or a model's entries by prefix) and 24 bytes of the
// request's digest.
func makeKey(tenant, model string, digest []byte) Key {
	var k Key
	binary.BigEndian.PutUint32(k[0:4], tenantPrefix(tenant))
	binary.BigEndian.PutUint32(k[4:8], tenantPrefix(model))
	copy(k[8:], digest)
	return k
}

func tenantPrefix(s string) uint32 { return uint32(xxhash.Sum64String(s)) }

func (k *keyer) scratch() *keyScratch {
	if s, ok := k.pool.Get().(*keyScratch); ok {
		return s
	}
	s := &keyScratch{}
	for i := range s.d {
		s.d[i] = xxhash.NewWithSeed(keySeeds[i])
	}
	return s
}

func (s *keyScratch) str(v string) {
	s.buf = binary.AppendUvarint(s.buf, uint64(len(v)))
	s.buf = append(s.buf, v...)
}

func (s *keyScratch) bytes(v []byte) {
	s.buf = binary.AppendUvarint(s.buf, uint64(len(v)))
	s.buf = append(s.buf, v...)
}

// canonical hashes a JSON value so that equal values hash alike whatever their key
// order, whitespace or string escapes; skip leaves out one member of an object.
func (s *keyScratch) canonical(v *fastjson.Value, skip string) {
	switch v.Type() {
	case fastjson.TypeObject:
		obj, _ := v.Object()
		base := len(s.pairs)
		obj.Visit(func(key []byte, val *fastjson.Value) {
			if skip != "" && string(key) == skip {
				return
			}
			s.pairs = append(s.pairs, kv{key, val})
		})
		members := s.pairs[base:]
		slices.SortFunc(members, func(a, b kv) int { return cmp.Compare(string(a.k), string(b.k)) })
		s.b('{')
		for i := base; i < len(s.pairs); i++ {
			s.bytes(s.pairs[i].k)
			s.canonical(s.pairs[i].v, "")
		}
		s.b('}')
		s.pairs = s.pairs[:base]
	case fastjson.TypeArray:
		arr, _ := v.Array()
		s.b('[')
		for _, e := range arr {
			s.canonical(e, "")
		}
		s.b(']')
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		s.b('"')
		s.bytes(b)
	case fastjson.TypeNumber:
		// The number's text ("0.2" and "0.20" key apart: a miss, never a wrong hit).
		s.b('#')
		s.bytes(v.MarshalTo(s.num[:0]))
	case fastjson.TypeTrue:
		s.b('t')
	case fastjson.TypeFalse:
		s.b('f')
	default:
		s.b('n')
	}
}

func hashStrings(ss ...string) uint64 {
	d := xxhash.New()
	for _, s := range ss {
		var n [binary.MaxVarintLen64]byte
		d.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		d.WriteString(s)
	}
	return d.Sum64()
}

// TestKey is a key for tenant, model and question as a test would make it (the real
// key hashes the whole canonical request).
func TestKey(tenant, model, question string) Key {
	var d [24]byte
	h := xxhash.Sum64String(tenant + "\x00" + model + "\x00" + question)
	binary.BigEndian.PutUint64(d[:], h)
	binary.BigEndian.PutUint64(d[8:], xxhash.Sum64String(question))
	binary.BigEndian.PutUint64(d[16:], xxhash.Sum64String(tenant))
	return makeKey(tenant, model, d[:])
}
