package batch

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/valyala/fastjson"
)

// job is a batch the runner works on.
type job struct {
	seq             int64
	id, owner       string
	cred            []byte
	endpoint, input string // input: the input file's id
	status          string
	expires         time.Time

	in        *os.File // the input file, open while lines run
	cursor    int64    // the next line index to fetch from the store
	exhausted bool     // no pending line at or after cursor in the store
	queue     []pending
	retry     []pending // lines that found no capacity, waiting for their time
	inflight  int
}

// pending is a line to run.
type pending struct {
	idx, off, len int64
	tries         int
	notBefore     time.Time
}

// outcome is what a worker reports for a line.
type outcome struct {
	j     *job
	p     pending
	state int // lineOK, lineFailed, or linePending to run it again
	out   []byte
	u     usage
}

// pageSize is how many pending lines a job fetches from the store at a time.
const pageSize = 256

// Run works through the batches until ctx ends: it validates new batches, runs their
// lines through exec (at most Options.Concurrency at once, over all batches in turn),
// commits each finished line with its output, and writes the output and error files
// when a batch ends. Batches left unfinished by a crash or a stop resume where they
// were. When ctx ends, Run stops starting lines, waits up to DrainTimeout for those in
// flight, commits them and returns.
func (m *Manager) Run(ctx context.Context, exec Executor) error {
	r := &runner{m: m, exec: exec, jobs: map[int64]*job{}, done: make(chan outcome, m.opts.Concurrency)}
	// Lines in flight get their own context: a stop lets them finish for DrainTimeout.
	wctx, wcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer wcancel()
	r.wctx = wctx
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	if err := r.load(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	for ctx.Err() == nil {
		r.step(ctx)
		if r.changes {
			r.changes = false
			m.signal()
		}
		wait := r.nextWake()
		timer.Reset(wait)
		select {
		case <-ctx.Done():
		case <-m.wake:
			if err := r.load(ctx); err != nil {
				m.log.Error("batch: load batches", "err", err)
			}
		case o := <-r.done:
			r.collect(ctx, o)
		case <-timer.C:
		}
	}
	defer m.signal()
	// Stop: no new lines; those in flight finish (or are abandoned after DrainTimeout
	// and run again after a restart).
	drain := time.NewTimer(m.opts.DrainTimeout)
	defer drain.Stop()
	for r.inflight > 0 {
		select {
		case o := <-r.done:
			r.collect(context.WithoutCancel(ctx), o)
		case <-drain.C:
			m.log.Warn("batch: lines still running at stop; they run again after a restart", "lines", r.inflight)
			wcancel()
			return nil
		}
	}
	return nil
}

type runner struct {
	m        *Manager
	exec     Executor
	wctx     context.Context // lines' context (see Run)
	jobs     map[int64]*job
	order    []int64 // jobs in creation order, for turns
	turn     int
	inflight int
	done     chan outcome
	failing  bool // a step failed (the store, the disk): try again after RetryBackoff
	changes  bool // something changed since the last signal (Manager.Changed)
}

// load picks up batches that are not finished (at start, and when one is created or
// cancelled) and status changes made by the API (cancelling).
func (r *runner) load(ctx context.Context) error {
	rows, err := r.m.st.db.QueryContext(ctx, `SELECT seq, id, owner, cred, endpoint, input_file_id, status, expires_at
		FROM batches WHERE status IN ('validating','in_progress','finalizing','cancelling') ORDER BY seq`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		j := &job{}
		var exp int64
		if err := rows.Scan(&j.seq, &j.id, &j.owner, &j.cred, &j.endpoint, &j.input, &j.status, &exp); err != nil {
			return err
		}
		j.expires = time.Unix(exp, 0)
		if old, ok := r.jobs[j.seq]; ok {
			old.status = j.status
			continue
		}
		r.jobs[j.seq] = j
		r.order = append(r.order, j.seq)
	}
	return rows.Err()
}

// step does what can be done now: validate new batches, start lines, end batches whose
// lines are all done.
func (r *runner) step(ctx context.Context) {
	r.failing = false
	for _, seq := range slices.Clone(r.order) {
		if j := r.jobs[seq]; j.status == StatusValidating {
			if err := r.validate(ctx, j); err != nil {
				r.failing = true
				r.m.log.Error("batch: validate", "batch", j.id, "err", err)
			}
		}
	}
	now := r.m.now()
	r.dispatch(ctx, now)
	for _, seq := range slices.Clone(r.order) {
		j := r.jobs[seq]
		if end := r.ending(j, now); end != "" && j.inflight == 0 {
			if err := r.finalize(ctx, j, end); err != nil {
				r.failing = true
				r.m.log.Error("batch: finalize", "batch", j.id, "status", end, "err", err)
			}
		}
	}
}

// ending says how a job ends once its lines in flight are done ("" while it runs).
func (r *runner) ending(j *job, now time.Time) string {
	switch j.status {
	case StatusCancelling:
		return StatusCancelled
	case StatusFinalizing:
		return StatusCompleted
	case StatusInProgress:
		if !now.Before(j.expires) {
			return StatusExpired
		}
		if j.exhausted && len(j.queue) == 0 && len(j.retry) == 0 {
			return StatusCompleted
		}
	}
	return ""
}

// dispatch starts lines while fewer than Concurrency run, taking batches in turn.
func (r *runner) dispatch(ctx context.Context, now time.Time) {
	idle := 0
	for r.inflight < r.m.opts.Concurrency && len(r.order) > 0 && idle < len(r.order) {
		r.turn %= len(r.order)
		j := r.jobs[r.order[r.turn]]
		r.turn++
		p, ok := r.next(ctx, j, now)
		if !ok {
			idle++
			continue
		}
		idle = 0
		r.start(j, p)
	}
}

// next returns the job's next line to start, if any may start now.
func (r *runner) next(ctx context.Context, j *job, now time.Time) (pending, bool) {
	if j.status != StatusInProgress || !now.Before(j.expires) {
		return pending{}, false
	}
	if j.in == nil {
		f, err := os.Open(r.m.st.path(j.input))
		if err != nil {
			r.failing = true
			r.m.log.Error("batch: open input", "batch", j.id, "err", err)
			return pending{}, false
		}
		j.in = f
	}
	// Retries whose time has come go first.
	for i, p := range j.retry {
		if !now.Before(p.notBefore) {
			j.retry = slices.Delete(j.retry, i, i+1)
			return p, true
		}
	}
	if len(j.queue) == 0 && !j.exhausted {
		if err := r.fetch(ctx, j); err != nil {
			r.failing = true
			r.m.log.Error("batch: fetch lines", "batch", j.id, "err", err)
			return pending{}, false
		}
	}
	if len(j.queue) == 0 {
		return pending{}, false
	}
	p := j.queue[0]
	j.queue = j.queue[1:]
	return p, true
}

// fetch reads the next page of the job's pending lines.
func (r *runner) fetch(ctx context.Context, j *job) error {
	rows, err := r.m.st.db.QueryContext(ctx, `SELECT idx, off, len FROM lines WHERE batch=? AND state=0 AND idx>=? ORDER BY idx LIMIT ?`,
		j.seq, j.cursor, pageSize)
	if err != nil {
		return err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var p pending
		if err := rows.Scan(&p.idx, &p.off, &p.len); err != nil {
			return err
		}
		j.queue = append(j.queue, p)
		j.cursor = p.idx + 1
		n++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	j.exhausted = n < pageSize
	return nil
}

// start runs one line in its own goroutine.
func (r *runner) start(j *job, p pending) {
	j.inflight++
	r.inflight++
	r.m.m.inflight.Inc()
	go func() { r.done <- r.run(j, p) }()
}

// run executes one line and says what became of it.
func (r *runner) run(j *job, p pending) outcome {
	o := outcome{j: j, p: p}
	line := make([]byte, p.len)
	rid := requestID(j.id, p.idx)
	if _, err := j.in.ReadAt(line, p.off); err != nil {
		o.state, o.out = lineFailed, appendLineError(nil, rid, "", &lineError{"read_error", "sluice could not read the line from the input file"})
		r.m.log.Error("batch: read line", "batch", j.id, "line", p.idx, "err", err)
		return o
	}
	var parser fastjson.Parser
	req, lerr := parseRequest(&parser, line, j.endpoint)
	if lerr != nil { // validated before, so only if the file changed under sluice
		o.state, o.out = lineFailed, appendLineError(nil, rid, req.CustomID, lerr)
		return o
	}
	status, reqID, body := r.exec.Execute(r.wctx, j.cred, j.endpoint, req.Body, "batch:"+j.id)
	if retriable(status, body) {
		o.state = linePending
		return o
	}
	o.out, o.u = appendResponse(nil, rid, req.CustomID, reqID, status, body)
	o.state = lineFailed
	if status >= 200 && status < 300 {
		o.state = lineOK
	}
	return o
}

// retriable: the request found no capacity (queue full, saturated, engine down or
// overloaded, queue timeout, cut short by a stop) rather than failed; it runs again
// later. A spent budget is final (it may not come back within the window).
func retriable(status int, body []byte) bool {
	switch status {
	case 0, 499, 503, 504:
		return true
	case 429:
		var p fastjson.Parser
		v, err := p.ParseBytes(body)
		if err != nil {
			return true
		}
		code := string(v.GetStringBytes("error", "code"))
		typ := string(v.GetStringBytes("error", "type"))
		return code != "budget_exceeded" && typ != "insufficient_quota"
	}
	return false
}

// collect takes finished lines (this one and any others already done) and commits them
// in one transaction: a line's output and its done state are written together.
func (r *runner) collect(ctx context.Context, first outcome) {
	batch := []outcome{first}
	for more := true; more; {
		select {
		case o := <-r.done:
			batch = append(batch, o)
		default:
			more = false
		}
	}
	now := r.m.now()
	var done []outcome
	for _, o := range batch {
		o.j.inflight--
		r.inflight--
		r.m.m.inflight.Dec()
		if o.state == linePending {
			o.p.tries++
			o.p.notBefore = now.Add(r.backoff(o.p.tries))
			o.j.retry = append(o.j.retry, o.p)
			r.m.m.lines.WithLabelValues("retried").Inc()
			continue
		}
		done = append(done, o)
	}
	if len(done) == 0 {
		return
	}
	if err := r.commit(ctx, done); err != nil {
		// Not recorded: the lines stay pending and run again.
		r.m.log.Error("batch: commit lines", "lines", len(done), "err", err)
		for _, o := range done {
			o.p.notBefore = now.Add(r.backoff(1))
			o.j.retry = append(o.j.retry, o.p)
		}
		return
	}
	r.changes = true
	for _, o := range done {
		if o.state == lineOK {
			r.m.m.lines.WithLabelValues("completed").Inc()
		} else {
			r.m.m.lines.WithLabelValues("failed").Inc()
		}
	}
}

func (r *runner) backoff(tries int) time.Duration {
	d := r.m.opts.RetryBackoff
	for i := 1; i < tries && d < r.m.opts.MaxRetryBackoff; i++ {
		d *= 2
	}
	return min(d, r.m.opts.MaxRetryBackoff)
}

// commit writes finished lines and adds them to their batches' counts.
func (r *runner) commit(ctx context.Context, done []outcome) error {
	return r.m.st.tx(ctx, func(tx *sql.Tx) error {
		type sums struct {
			ok, failed int64
			u          usage
		}
		per := map[int64]*sums{}
		for _, o := range done {
			res, err := tx.Exec(`UPDATE lines SET state=?, result=? WHERE batch=? AND idx=? AND state=0`, o.state, o.out, o.j.seq, o.p.idx)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n != 1 {
				return fmt.Errorf("line %d of batch %s: %d rows pending (%v)", o.p.idx, o.j.id, n, err)
			}
			s := per[o.j.seq]
			if s == nil {
				s = &sums{}
				per[o.j.seq] = s
			}
			if o.state == lineOK {
				s.ok++
			} else {
				s.failed++
			}
			s.u.Prompt += o.u.Prompt
			s.u.Completion += o.u.Completion
			s.u.Cached += o.u.Cached
			s.u.CostUSD += o.u.CostUSD
		}
		for seq, s := range per {
			if _, err := tx.Exec(`UPDATE batches SET completed=completed+?, failed=failed+?, prompt_tokens=prompt_tokens+?,
				completion_tokens=completion_tokens+?, cached_tokens=cached_tokens+?, cost_usd=cost_usd+? WHERE seq=?`,
				s.ok, s.failed, s.u.Prompt, s.u.Completion, s.u.Cached, s.u.CostUSD, seq); err != nil {
				return err
			}
		}
		return nil
	})
}

// nextWake is how long the loop may sleep: until the next retry or expiry that a step
// could act on. A job that expired with lines still running, or a retry due while every
// slot is taken, waits for a line's outcome (which wakes the loop) rather than spinning;
// after a failed step the loop tries again after RetryBackoff.
func (r *runner) nextWake() time.Duration {
	now := r.m.now()
	wait := time.Hour
	canStart := r.inflight < r.m.opts.Concurrency
	for _, j := range r.jobs {
		if j.status != StatusInProgress {
			continue
		}
		if j.inflight == 0 {
			wait = min(wait, j.expires.Sub(now))
		}
		if canStart {
			for _, p := range j.retry {
				wait = min(wait, p.notBefore.Sub(now))
			}
		}
	}
	if r.failing {
		wait = r.m.opts.RetryBackoff // retry the failed step then, not sooner
	}
	return max(wait, time.Millisecond)
}

// forget drops a job that ended.
func (r *runner) forget(j *job) {
	if j.in != nil {
		j.in.Close()
		j.in = nil
	}
	delete(r.jobs, j.seq)
	if i := slices.Index(r.order, j.seq); i >= 0 {
		r.order = slices.Delete(r.order, i, i+1)
	}
}
