package ledger

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"time"
)

// Record is one request in the ledger.
type Record struct {
	// UID is unique across processes and restarts (the ledger's process prefix and the
	// request id); the store ignores a record whose UID it already has.
	UID       string
	RequestID string
	Time      time.Time // arrival

	KeyID, Tenant, User, Feature string

	Kind   string // chat, completion, embedding
	Model  string // as the client asked for it (a model, an alias, "auto")
	Served string // the catalog model that answered
	Target string // the backend that answered
	Region string
	// Pool is the hardware billed by the hour that served the request (a box, or a
	// remote engine with a price per hour); "" for per-token (cloud) or unpriced targets
	// and for cache hits.
	Pool  string
	Cache string // "", miss, hit-exact, hit-semantic, bypass

	PromptTokens       int // as sent to the engine (after compression)
	PromptTokensBefore int // before compression (= PromptTokens when nothing was compressed)
	CompletionTokens   int
	CachedTokens       int
	Estimated          bool // token counts are sluice's own (the engine reported none)

	Latency time.Duration // arrival to the end of the answer
	TTFT    time.Duration // arrival to the first token (0: none)

	// CostUSD is the marginal cost: the hardware time the request held (a pool's price
	// split among requests in flight) or, on a per-token target, its list price.
	CostUSD float64
	// BilledUSD is what counts against budgets: money paid per token (cloud targets).
	BilledUSD float64
	// Unpriced: the target has no price (a remote engine without one): cost unknown.
	Unpriced bool

	// ReferenceUSD is the baseline: what the request's tokens (before compression) would
	// cost on the reference cloud model for what the client asked for.
	ReferenceModel string
	ReferenceUSD   float64
	// RefCompressedUSD is the same model's price for the tokens actually sent.
	RefCompressedUSD float64
	// ServedRefUSD prices the tokens sent on the reference of the class that served the
	// request (for a cloud target, its own list price).
	ServedRefModel string
	ServedRefUSD   float64

	Status int // HTTP status the client got (499: it went away)
}

const (
	recordVersion = 1
	maxRecord     = 1 << 20
	frameHeader   = 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt: a frame or record that does not decode (a torn tail after a crash).
var errCorrupt = errors.New("ledger: corrupt journal record")

// appendFrame appends r as one journal frame: length, CRC-32C, then the record.
func appendFrame(b []byte, r *Record) []byte {
	start := len(b)
	b = append(b, make([]byte, frameHeader)...)
	b = appendRecord(b, r)
	payload := b[start+frameHeader:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(payload, castagnoli))
	return b
}

// nextFrame decodes the first frame of b and returns the rest. It returns errCorrupt for
// a short or damaged frame.
func nextFrame(b []byte) (Record, []byte, error) {
	if len(b) < frameHeader {
		return Record{}, nil, errCorrupt
	}
	n := binary.LittleEndian.Uint32(b)
	sum := binary.LittleEndian.Uint32(b[4:])
	if n > maxRecord || uint64(len(b)-frameHeader) < uint64(n) {
		return Record{}, nil, errCorrupt
	}
	payload := b[frameHeader : frameHeader+int(n)]
	if crc32.Checksum(payload, castagnoli) != sum {
		return Record{}, nil, errCorrupt
	}
	r, err := decodeRecord(payload)
	return r, b[frameHeader+int(n):], err
}

const (
	flagEstimated = 1 << iota
	flagUnpriced
)

func appendRecord(b []byte, r *Record) []byte {
	b = append(b, recordVersion)
	for _, s := range [...]string{r.UID, r.RequestID, r.KeyID, r.Tenant, r.User, r.Feature, r.Kind, r.Model,
		r.Served, r.Target, r.Region, r.Pool, r.Cache, r.ReferenceModel, r.ServedRefModel} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendVarint(b, r.Time.UnixNano())
	for _, n := range [...]int64{int64(r.PromptTokens), int64(r.PromptTokensBefore), int64(r.CompletionTokens),
		int64(r.CachedTokens), int64(r.Latency), int64(r.TTFT), int64(r.Status)} {
		b = binary.AppendVarint(b, n)
	}
	for _, f := range [...]float64{r.CostUSD, r.BilledUSD, r.ReferenceUSD, r.RefCompressedUSD, r.ServedRefUSD} {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
	}
	var flags byte
	if r.Estimated {
		flags |= flagEstimated
	}
	if r.Unpriced {
		flags |= flagUnpriced
	}
	return append(b, flags)
}

// decoder reads a record's fields in order, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) str() string {
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n > uint64(len(d.b)-k) {
		d.err = errCorrupt
		return ""
	}
	s := string(d.b[k : k+int(n)])
	d.b = d.b[k+int(n):]
	return s
}

func (d *decoder) varint() int64 {
	v, k := binary.Varint(d.b)
	if k <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[k:]
	return v
}

func (d *decoder) float() float64 {
	if len(d.b) < 8 {
		d.err = errCorrupt
		return 0
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return f
}

func decodeRecord(b []byte) (Record, error) {
	if len(b) == 0 || b[0] != recordVersion {
		return Record{}, errCorrupt
	}
	d := decoder{b: b[1:]}
	var r Record
	for _, p := range [...]*string{&r.UID, &r.RequestID, &r.KeyID, &r.Tenant, &r.User, &r.Feature, &r.Kind, &r.Model,
		&r.Served, &r.Target, &r.Region, &r.Pool, &r.Cache, &r.ReferenceModel, &r.ServedRefModel} {
		*p = d.str()
	}
	r.Time = time.Unix(0, d.varint()).UTC()
	var n [7]int64
	for i := range n {
		n[i] = d.varint()
	}
	r.PromptTokens, r.PromptTokensBefore, r.CompletionTokens, r.CachedTokens = int(n[0]), int(n[1]), int(n[2]), int(n[3])
	r.Latency, r.TTFT, r.Status = time.Duration(n[4]), time.Duration(n[5]), int(n[6])
	for _, p := range [...]*float64{&r.CostUSD, &r.BilledUSD, &r.ReferenceUSD, &r.RefCompressedUSD, &r.ServedRefUSD} {
		*p = d.float()
	}
	if len(d.b) != 1 {
		d.err = errCorrupt
	} else {
		r.Estimated = d.b[0]&flagEstimated != 0
		r.Unpriced = d.b[0]&flagUnpriced != 0
	}
	if d.err != nil || r.UID == "" {
		return Record{}, errCorrupt
	}
	return r, nil
}
