package sim

// Event kinds, in the order simultaneous events run: steps that end (and the
// completions, releases and dispatches they cause) first, then requests that finished
// their overhead, new arrivals and probes, and the next steps start last, so that every
// sequence that became ready at an instant joins the step that starts then.
const (
	evStepEnd uint8 = iota
	evReady
	evArrival
	evRefresh
	evWake // a job waiting for its own slot stops waiting (Core.Wake)
	evStepStart
)

type event struct {
	at   int64 // virtual ns
	kind uint8
	seq  uint64 // insertion order: the last tie-break
	eng  int32  // engine index (step and ready events)
	req  int32  // request index (arrival and ready events)
}

func (a *event) less(b *event) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	if a.kind != b.kind {
		return a.kind < b.kind
	}
	return a.seq < b.seq
}

// eventQueue is a binary min-heap of events.
type eventQueue struct {
	h   []event
	seq uint64
}

func (q *eventQueue) len() int { return len(q.h) }

func (q *eventQueue) push(e event) {
	q.seq++
	e.seq = q.seq
	q.h = append(q.h, e)
	i := len(q.h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !q.h[i].less(&q.h[p]) {
			break
		}
		q.h[i], q.h[p] = q.h[p], q.h[i]
		i = p
	}
}

func (q *eventQueue) pop() event {
	top := q.h[0]
	n := len(q.h) - 1
	q.h[0] = q.h[n]
	q.h = q.h[:n]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && q.h[l].less(&q.h[m]) {
			m = l
		}
		if r < n && q.h[r].less(&q.h[m]) {
			m = r
		}
		if m == i {
			break
		}
		q.h[i], q.h[m] = q.h[m], q.h[i]
		i = m
	}
	return top
}
