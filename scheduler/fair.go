package scheduler

import "sort"

// fairQueue holds one priority class's waiting jobs: a FIFO per tenant, served in
// start-time fair queuing order (SFQ): each job gets a start tag max(V, tenant's last
// finish) and a finish tag start + cost/weight; the waiting head with the smallest start
// tag goes next, and V advances to it. A tenant that sends much work waits behind
// tenants that sent little; an idle tenant does not bank credit.
//
// The tenants with waiting jobs are kept sorted by their head's start tag: a head changes
// only when it leaves the queue, so Dispatch reads the order without sorting, and a
// thousand waiting tenants cost a binary search and a memmove per change.
type fairQueue struct {
	tenants map[string]*tenantQueue
	sorted  []*tenantQueue // tenants with jobs, by head start tag
	vtime   float64
	n       int
}

type tenantQueue struct {
	name       string
	jobs       []*Job
	lastFinish float64
	weight     float64
}

func newFairQueue() *fairQueue { return &fairQueue{tenants: map[string]*tenantQueue{}} }

func (q *fairQueue) len() int { return q.n }

func (q *fairQueue) push(j *Job, weight float64) {
	tq := q.tenants[j.Tenant]
	if tq == nil {
		tq = &tenantQueue{name: j.Tenant, weight: weight}
		q.tenants[j.Tenant] = tq
	}
	if weight > 0 {
		tq.weight = weight
	}
	w := tq.weight
	if w <= 0 {
		w = 1
	}
	j.start = max(q.vtime, tq.lastFinish)
	j.finish = j.start + max(j.Cost, 1)/w
	tq.lastFinish = j.finish
	tq.jobs = append(tq.jobs, j)
	q.n++
	if len(tq.jobs) == 1 {
		q.insert(tq)
	}
}

// position finds where a tenant whose head is h belongs in sorted.
func (q *fairQueue) position(h *Job) int {
	return sort.Search(len(q.sorted), func(i int) bool { return before(h, q.sorted[i].jobs[0]) })
}

func (q *fairQueue) insert(tq *tenantQueue) {
	i := q.position(tq.jobs[0])
	q.sorted = append(q.sorted, nil)
	copy(q.sorted[i+1:], q.sorted[i:])
	q.sorted[i] = tq
}

func (q *fairQueue) unlink(tq *tenantQueue) {
	for i, x := range q.sorted {
		if x == tq {
			q.sorted = append(q.sorted[:i], q.sorted[i+1:]...)
			return
		}
	}
}

// order returns the tenants with waiting jobs in the order the queue wants them served.
// The slice is the queue's own: do not keep it across changes.
func (q *fairQueue) order() []*tenantQueue { return q.sorted }

func before(a, b *Job) bool {
	if a.start != b.start {
		return a.start < b.start
	}
	return a.seq < b.seq
}

// remove takes j out of the queue (it was dispatched, cancelled or expired).
func (q *fairQueue) remove(j *Job, dispatched bool) bool {
	tq := q.tenants[j.Tenant]
	if tq == nil {
		return false
	}
	for i, x := range tq.jobs {
		if x != j {
			continue
		}
		if i == 0 {
			q.unlink(tq) // its head changes
		}
		tq.jobs = append(tq.jobs[:i], tq.jobs[i+1:]...)
		q.n--
		if dispatched && j.start > q.vtime {
			q.vtime = j.start
		}
		switch {
		case len(tq.jobs) > 0 && i == 0:
			q.insert(tq)
		case len(tq.jobs) == 0 && tq.lastFinish <= q.vtime:
			delete(q.tenants, j.Tenant) // nothing owed: forget the tenant
		}
		return true
	}
	return false
}

// each calls f for every waiting job (any order).
func (q *fairQueue) each(f func(*Job)) {
	for _, tq := range q.sorted {
		for _, j := range tq.jobs {
			f(j)
		}
	}
}
