package scheduler

// fairQueue holds one priority class's waiting jobs: a FIFO per tenant, served in
// start-time fair queuing order (SFQ): each job gets a start tag max(V, tenant's last
// finish) and a finish tag start + cost/weight; the waiting head with the smallest start
// tag goes next, and V advances to it. A tenant that sends much work waits behind
// tenants that sent little; an idle tenant does not bank credit.
type fairQueue struct {
	tenants map[string]*tenantQueue
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
	j.finish = j.start + j.Cost/w
	tq.lastFinish = j.finish
	tq.jobs = append(tq.jobs, j)
	q.n++
}

// order returns the tenants with waiting jobs, ordered by their first job's start tag
// (ties: enqueue order): the order in which the queue wants them served.
func (q *fairQueue) order(dst []*tenantQueue) []*tenantQueue {
	dst = dst[:0]
	for _, tq := range q.tenants {
		if len(tq.jobs) > 0 {
			dst = append(dst, tq)
		}
	}
	// Insertion sort: few tenants wait at once.
	for i := 1; i < len(dst); i++ {
		for k := i; k > 0 && before(dst[k].jobs[0], dst[k-1].jobs[0]); k-- {
			dst[k], dst[k-1] = dst[k-1], dst[k]
		}
	}
	return dst
}

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
		if x == j {
			tq.jobs = append(tq.jobs[:i], tq.jobs[i+1:]...)
			q.n--
			if dispatched && j.start > q.vtime {
				q.vtime = j.start
			}
			if len(tq.jobs) == 0 && tq.lastFinish <= q.vtime {
				delete(q.tenants, j.Tenant) // nothing owed: forget the tenant
			}
			return true
		}
	}
	return false
}

// each calls f for every waiting job (any order).
func (q *fairQueue) each(f func(*Job)) {
	for _, tq := range q.tenants {
		for _, j := range tq.jobs {
			f(j)
		}
	}
}
