package cost

import (
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-llm/sluice/models"
)

// Model classes: a local model is compared with a cloud model of its class, not always
// with a frontier model.
const (
	ClassSmall = "small" // under 15B parameters
	ClassLarge = "large"
)

// SmallParams is where the small class ends.
const SmallParams = 15e9

// ClassOf returns the class of a model with params parameters.
func ClassOf(params float64) string {
	if params < SmallParams {
		return ClassSmall
	}
	return ClassLarge
}

var sizeInName = regexp.MustCompile(`(?i)(?:^|[^a-z0-9.])(\d+(?:\.\d+)?)\s*([bm])(?:$|[^a-z0-9])`)

// ClassFromName guesses a model's class from a size in its name ("llama3.1:8b",
// "Qwen2.5-72B-Instruct", "phi-3-mini-128k" has none); ok is false without one.
func ClassFromName(name string) (string, bool) {
	m := sizeInName.FindStringSubmatch(name)
	if m == nil {
		return "", false
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return "", false
	}
	if strings.EqualFold(m[2], "m") {
		n /= 1000
	}
	return ClassOf(n * 1e9), true
}

// SetClasses sets each catalog model's class (ClassSmall, ClassLarge or a routing tier)
// and each class's reference cloud model. A model without an explicit reference (the
// perModel map, or a global one given to NewAccountant) is compared with its class's
// reference; a model of no known class with defaultClass's.
func (a *Accountant) SetClasses(modelClass, classRef map[string]string, defaultClass string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.modelClass, a.classRef, a.defaultClass = modelClass, classRef, defaultClass
}

// SetBox declares the box's hourly price (every GPU, with engines or not, or the CPU
// box) from start, for effective cost: pool names it in the ledger.
func (a *Accountant) SetBox(pool string, perHour float64, start time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.boxPool, a.boxPerHour, a.boxStart = pool, perHour, start
}

// Pools returns the hardware billed by the hour, by pool: the box, and each remote
// engine with a price per hour (its own pool).
func (a *Accountant) Pools() map[string]float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := map[string]float64{}
	if a.boxPool != "" {
		p[a.boxPool] = a.boxPerHour
	}
	for _, e := range a.engines {
		if e.Remote && e.Meter != nil {
			p[PoolOf(e)] = e.Meter.PerHour()
		}
	}
	return p
}

// PoolOf names an engine's pool: the box for engines on it, the engine for a remote
// one billed by the hour.
func PoolOf(e Engine) string {
	if e.Remote {
		return "engine:" + e.Name
	}
	return e.Pool
}

// Priced is what a request cost and what it would have cost on the reference models.
type Priced struct {
	Pool     string  // hardware pool billed by the hour ("" for per-token, unpriced, cache)
	Billed   float64 // per-token spend
	Unpriced bool    // the target has no price: cost unknown
	// The baseline: the reference for what the client asked for, on the tokens before
	// compression and on those sent.
	ReferenceModel           string
	Reference, RefCompressed float64
	// The reference of the class that served the request (a cloud target: its own price).
	ServedRefModel string
	ServedRef      float64
}

// Price prices a finished request: requested is the model the client named, t where it
// ran, u its usage (with the cost Record filled in), promptBefore its prompt tokens
// before compression, hit whether the cache answered it.
func (a *Accountant) Price(requested string, t models.Target, u *models.Usage, promptBefore int, hit bool) Priced {
	var p Priced
	a.mu.Lock()
	e, known := a.engines[t.Backend]
	a.mu.Unlock()
	base, baseP, baseOK := a.ReferenceFor(requested)
	if !baseOK || (requested != t.Model && !a.knownModel(requested)) {
		// "auto", a tier alias, or a name the accountant does not know: compared with
		// what a client would call without sluice choosing (the default reference).
		base, baseP, baseOK = a.defaultReference()
	}
	if baseOK {
		p.ReferenceModel = base
		p.Reference = baseP.Of(promptBefore, u.CompletionTokens)
		p.RefCompressed = baseP.Of(u.PromptTokens, u.CompletionTokens)
	}
	if hit {
		p.ServedRefModel, p.ServedRef = p.ReferenceModel, p.RefCompressed
		return p
	}
	if t.Backend == "" {
		// Refused before any target took it (unknown model, a limit, a full queue): it
		// cost nothing; "unpriced" is for targets whose price is unknown.
		return p
	}
	switch {
	case known && e.PerToken != nil:
		// Record priced it (or the overflow stage did) at the model's list price.
		if u.Cost.Unpriced {
			p.Unpriced = true
			return p
		}
		p.Billed = u.Cost.Total()
		p.ServedRefModel, p.ServedRef = t.Model, p.Billed
	case known && e.Unpriced, !known:
		p.Unpriced = true
	default:
		p.Pool = PoolOf(e)
		if ref, rp, ok := a.ReferenceFor(t.Model); ok {
			p.ServedRefModel, p.ServedRef = ref, rp.Of(u.PromptTokens, u.CompletionTokens)
		}
	}
	return p
}

func (a *Accountant) knownModel(m string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, c := a.modelClass[m]
	_, r := a.perModel[m]
	return c || r
}

func (a *Accountant) defaultReference() (string, CloudPrice, bool) {
	a.mu.Lock()
	ref := a.reference
	if ref == "" {
		ref = a.classRef[ClassLarge]
	}
	a.mu.Unlock()
	p, ok := a.cloud[ref]
	return ref, p, ok
}
