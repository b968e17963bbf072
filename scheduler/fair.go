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
//
// Memory is bounded. A tenant with nothing waiting is remembered only while it still owes
// (its last finish tag is ahead of V), in a min-heap by last finish: those V passes are
// forgotten as it advances, and past maxIdleTenants the one that owes least is forgotten
// early, raising a floor that every tenant the queue does not know starts from, so a
// forgotten tenant never starts earlier than exact SFQ would start it (a new tenant may
// start a little later: by at most what the forgotten tenants owed). When the queue
// empties, nobody contends: V moves past every finish tag and all tenants are forgotten.
type fairQueue struct {
	tenants map[string]*tenantQueue
	sorted  []*tenantQueue // tenants with jobs, by head start tag
	idle    []*tenantQueue // tenants without jobs that still owe: a min-heap by lastFinish
	vtime   float64
	floor   float64 // the largest last finish of a tenant forgotten while it owed
	maxTag  float64 // the largest finish tag given out
	n       int
	maxIdle int // idle tenants remembered at most (maxIdleTenants; tests lower it)
}

// maxIdleTenants bounds the tenants remembered with nothing waiting.
const maxIdleTenants = 1024

type tenantQueue struct {
	name       string
	jobs       []*Job
	lastFinish float64
	weight     float64
	idleAt     int // index in idle, -1 when not there
}

func newFairQueue() *fairQueue {
	return &fairQueue{tenants: map[string]*tenantQueue{}, maxIdle: maxIdleTenants}
}

func (q *fairQueue) len() int { return q.n }

func (q *fairQueue) push(j *Job, weight float64) {
	tq := q.tenants[j.Tenant]
	if tq == nil {
		tq = &tenantQueue{name: j.Tenant, weight: weight, lastFinish: q.floor, idleAt: -1}
		q.tenants[j.Tenant] = tq
	} else if tq.idleAt >= 0 {
		q.idleRemove(tq.idleAt)
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
	q.maxTag = max(q.maxTag, j.finish)
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
		last := i == len(tq.jobs)-1
		tq.jobs = append(tq.jobs[:i], tq.jobs[i+1:]...)
		q.n--
		if dispatched && j.start > q.vtime {
			q.vtime = j.start
		}
		if !dispatched && last && tq.lastFinish == j.finish {
			tq.lastFinish = j.start // a job that never ran leaves no debt behind it
		}
		switch {
		case len(tq.jobs) > 0 && i == 0:
			q.insert(tq)
		case len(tq.jobs) == 0:
			q.idleAdd(tq)
		}
		q.forget()
		return true
	}
	return false
}

// idleAdd files a tenant whose last job left: forgotten at once when it owes nothing.
func (q *fairQueue) idleAdd(tq *tenantQueue) {
	if tq.lastFinish <= q.vtime {
		delete(q.tenants, tq.name)
		return
	}
	tq.idleAt = len(q.idle)
	q.idle = append(q.idle, tq)
	q.up(tq.idleAt)
}

// forget drops the idle tenants V has passed, then the ones that owe least past the
// bound; with nothing waiting it forgets everyone.
func (q *fairQueue) forget() {
	if q.n == 0 {
		q.vtime = max(q.vtime, q.maxTag)
		for _, tq := range q.idle {
			delete(q.tenants, tq.name)
		}
		clear(q.idle)
		q.idle = q.idle[:0]
		return
	}
	for len(q.idle) > 0 && q.idle[0].lastFinish <= q.vtime {
		delete(q.tenants, q.idle[0].name)
		q.idleRemove(0)
	}
	for len(q.idle) > q.maxIdle {
		tq := q.idle[0]
		q.floor = max(q.floor, tq.lastFinish)
		delete(q.tenants, tq.name)
		q.idleRemove(0)
	}
}

// The idle heap (container/heap's algorithm, on the tenants' own index field).

func (q *fairQueue) idleRemove(i int) {
	last := len(q.idle) - 1
	tq := q.idle[i]
	if i != last {
		q.swap(i, last)
	}
	q.idle[last] = nil
	q.idle = q.idle[:last]
	tq.idleAt = -1
	if i != last {
		if !q.down(i) {
			q.up(i)
		}
	}
}

func (q *fairQueue) less(a, b int) bool { return q.idle[a].lastFinish < q.idle[b].lastFinish }

func (q *fairQueue) swap(a, b int) {
	q.idle[a], q.idle[b] = q.idle[b], q.idle[a]
	q.idle[a].idleAt, q.idle[b].idleAt = a, b
}

func (q *fairQueue) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !q.less(i, p) {
			return
		}
		q.swap(i, p)
		i = p
	}
}

func (q *fairQueue) down(i0 int) bool {
	i, n := i0, len(q.idle)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && q.less(r, l) {
			c = r
		}
		if !q.less(c, i) {
			break
		}
		q.swap(i, c)
		i = c
	}
	return i > i0
}

// each calls f for every waiting job (any order).
func (q *fairQueue) each(f func(*Job)) {
	for _, tq := range q.sorted {
		for _, j := range tq.jobs {
			f(j)
		}
	}
}
