package cost

import (
	"sync"
	"time"

	"github.com/sluice-llm/sluice/models"
)

var _ models.CostMeter = (*Meter)(nil)

// Meter divides one engine's hourly cost among the requests in flight on it. At every
// instant with n requests in flight, each accrues rate/n; with none, the time is idle.
// Costs therefore add up exactly: the sum over requests plus idle equals rate x time.
type Meter struct {
	mu     sync.Mutex
	rate   float64 // dollars per second
	now    func() time.Time
	last   time.Time
	active int
	share  float64 // dollars accrued by each request in flight since the start (virtual clock)
	idle   float64
	busy   float64
}

// NewMeter returns a meter for an engine that costs perHour dollars an hour. now may be
// nil (time.Now).
func NewMeter(perHour float64, now func() time.Time) *Meter {
	if now == nil {
		now = time.Now
	}
	return &Meter{rate: perHour / 3600, now: now, last: now()}
}

// PerHour is the engine's price.
func (m *Meter) PerHour() float64 { return m.rate * 3600 }

// advance brings the clock to now; mu must be held.
func (m *Meter) advance() {
	t := m.now()
	dt := t.Sub(m.last).Seconds()
	if dt <= 0 {
		return
	}
	m.last = t
	c := m.rate * dt
	if m.active == 0 {
		m.idle += c
		return
	}
	m.busy += c
	m.share += c / float64(m.active)
}

// Job is one request's account on a meter.
type Job struct {
	m      *Meter
	start  float64
	first  float64
	marked bool
	done   bool
	Cost   Split
}

// Split is a request's cost, prompt and completion apart.
type Split struct {
	Prompt, Completion float64
}

// Total is prompt plus completion.
func (s Split) Total() float64 { return s.Prompt + s.Completion }

// Begin starts accounting a request (models.CostMeter).
func (m *Meter) Begin() models.CostJob { return m.Start() }

// Start starts accounting a request.
func (m *Meter) Start() *Job {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advance()
	m.active++
	return &Job{m: m, start: m.share}
}

// FirstToken marks the end of the prompt phase (idempotent).
func (j *Job) FirstToken() {
	if j.marked || j.done {
		return
	}
	j.m.mu.Lock()
	defer j.m.mu.Unlock()
	j.m.advance()
	j.first, j.marked = j.m.share, true
}

// End stops accounting and returns the request's cost (models.CostJob).
func (j *Job) End() (prompt, completion float64) {
	s := j.Finish()
	return s.Prompt, s.Completion
}

// Finish stops accounting and returns the request's cost (idempotent).
func (j *Job) Finish() Split {
	if j.done {
		return j.Cost
	}
	j.m.mu.Lock()
	defer j.m.mu.Unlock()
	j.m.advance()
	j.m.active--
	j.done = true
	end := j.m.share
	if !j.marked {
		j.first = end // no token: all of it was prompt processing
	}
	j.Cost = Split{Prompt: j.first - j.start, Completion: end - j.first}
	return j.Cost
}

// Totals returns the idle and busy cost so far.
func (m *Meter) Totals() (idle, busy float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advance()
	return m.idle, m.busy
}
