package ledger

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// journal is this process's write-ahead log of records: a directory of append-only
// segment files under <store>.journal/, with a lock file that the process holds (flock)
// for as long as it lives. A record is appended before its request is acknowledged, so
// it survives a crash of the process (and, with power set, of the machine: the append
// is fsynced, one fsync for every request waiting on it). Segments are preallocated and
// mapped (MAP_SHARED): an append is a copy into the kernel's page cache, with no system
// call on the request path, and the page cache outlives the process. Records reach the store in
// batches later; segments whose records are all stored are deleted. A journal whose lock
// is free belongs to a dead process and is replayed into the store by the next process
// that looks (at start and every minute).
//
// Callers serialise append and rotate (Ledger.mu); sync may run concurrently.
type journal struct {
	root  string // <store>.journal
	dir   string // root/<this process>
	lock  *os.File
	power bool

	f       *os.File
	m       []byte // the segment, mapped
	seg     uint64
	size    int64 // bytes used in m
	maxSize int64

	smu     sync.Mutex
	cond    *sync.Cond
	written uint64 // appends so far
	synced  uint64 // appends known to be on disk
	syncing bool
}

const segmentSize = 4 << 20

func segName(n uint64) string { return fmt.Sprintf("%012d.log", n) }

// openJournal creates this process's journal directory under root.
func openJournal(root string, power bool) (*journal, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	dir := filepath.Join(root, hex.EncodeToString(b[:]))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ledger journal: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ledger journal: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("ledger journal: lock %s: %w", dir, err)
	}
	j := &journal{root: root, dir: dir, lock: lock, power: power, maxSize: segmentSize}
	j.cond = sync.NewCond(&j.smu)
	if err := j.openSegment(1); err != nil {
		lock.Close()
		return nil, err
	}
	if power {
		// The new directory entries must survive a power cut too.
		syncDir(dir)
		syncDir(root)
	}
	return j, nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// openSegment creates segment n, reserves its blocks (a full disk fails here, not on
// the request path) and maps it.
func (j *journal) openSegment(n uint64) error {
	f, err := os.OpenFile(filepath.Join(j.dir, segName(n)), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("ledger journal: %w", err)
	}
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, j.maxSize); err != nil {
		f.Close()
		return fmt.Errorf("ledger journal: reserve %d bytes: %w", j.maxSize, err)
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, int(j.maxSize), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		f.Close()
		return fmt.Errorf("ledger journal: map: %w", err)
	}
	j.f, j.m, j.seg, j.size = f, m, n, 0
	return nil
}

// closeSegment unmaps the current segment and trims its unused tail.
func (j *journal) closeSegment() error {
	if j.f == nil {
		return nil
	}
	err := syscall.Munmap(j.m)
	if terr := j.f.Truncate(j.size); err == nil {
		err = terr
	}
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	j.f, j.m = nil, nil
	return err
}

// append copies one or more frames into the journal and returns the segment that holds
// them and the append's sequence number (for sync).
func (j *journal) append(frames []byte) (seg, seq uint64, err error) {
	if j.m == nil {
		return j.seg, 0, errors.New("ledger journal: no segment")
	}
	if int64(len(frames)) > j.maxSize {
		return j.seg, 0, fmt.Errorf("ledger journal: a record of %d bytes is larger than a segment", len(frames))
	}
	if j.size+int64(len(frames)) > int64(len(j.m)) {
		if err := j.rotate(); err != nil {
			return j.seg, 0, err
		}
	}
	copy(j.m[j.size:], frames)
	j.size += int64(len(frames))
	j.smu.Lock()
	j.written++
	seq = j.written
	j.smu.Unlock()
	return j.seg, seq, nil
}

// rotate closes the current segment (synced first in power mode) and starts the next.
func (j *journal) rotate() error {
	j.smu.Lock()
	defer j.smu.Unlock()
	for j.syncing {
		j.cond.Wait()
	}
	if j.power {
		_ = syscall.Fdatasync(int(j.f.Fd()))
		j.synced = j.written
	}
	if err := j.closeSegment(); err != nil {
		return err
	}
	if err := j.openSegment(j.seg + 1); err != nil {
		return err
	}
	if j.power {
		syncDir(j.dir)
	}
	return nil
}

// sync returns once append seq is on disk: the first caller to find no sync running
// fsyncs for every append made so far; the others wait for it (group commit). fdatasync
// writes back the pages dirtied through the mapping too.
func (j *journal) sync(seq uint64) error {
	j.smu.Lock()
	defer j.smu.Unlock()
	for j.synced < seq {
		if j.syncing {
			j.cond.Wait()
			continue
		}
		j.syncing = true
		target, f := j.written, j.f
		j.smu.Unlock()
		err := syscall.Fdatasync(int(f.Fd()))
		j.smu.Lock()
		j.syncing = false
		j.cond.Broadcast()
		if err != nil {
			return fmt.Errorf("ledger journal: fsync: %w", err)
		}
		j.synced = max(j.synced, target)
	}
	return nil
}

// release deletes the segments before seg (their records are all in the store). It
// runs beside appends: seg is at most the current segment, read by the caller under
// the appends' lock; j.seg must not be read here.
func (j *journal) release(seg uint64) {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		n, ok := segNumber(e.Name())
		if ok && n < seg {
			_ = os.Remove(filepath.Join(j.dir, e.Name()))
		}
	}
}

func segNumber(name string) (uint64, bool) {
	s, ok := strings.CutSuffix(name, ".log")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// close removes the journal when everything in it is stored (empty: true), else leaves
// it for the next process to replay, and lets go of the lock.
func (j *journal) close(empty bool) {
	_ = j.closeSegment()
	if empty {
		_ = os.RemoveAll(j.dir)
	}
	_ = j.lock.Close()
}

// orphans replays every journal under root whose owner is gone: apply gets its records
// in order, in batches; the journal is deleted once all are applied. It returns how many
// records it read.
func replayOrphans(root, self string, batch int, apply func([]Record) error) (int, error) {
	ents, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	total := 0
	var errs []error
	for _, e := range ents {
		dir := filepath.Join(root, e.Name())
		if !e.IsDir() || dir == self {
			continue
		}
		n, err := replayDir(dir, batch, apply)
		total += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return total, errors.Join(errs...)
}

func replayDir(dir string, batch int, apply func([]Record) error) (int, error) {
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		// Only possible for a directory whose owner died while creating it, or one that
		// another process just finished replaying.
		ents, _ := os.ReadDir(dir)
		if len(ents) == 0 {
			_ = os.Remove(dir)
		}
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return 0, nil // its process is alive
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var segs []uint64
	for _, e := range ents {
		if n, ok := segNumber(e.Name()); ok {
			segs = append(segs, n)
		}
	}
	sort.Slice(segs, func(a, b int) bool { return segs[a] < segs[b] })
	total := 0
	buf := make([]Record, 0, batch)
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		err := apply(buf)
		total += len(buf)
		buf = buf[:0]
		return err
	}
	for _, n := range segs {
		b, err := os.ReadFile(filepath.Join(dir, segName(n)))
		if err != nil {
			return total, err
		}
		for len(b) > 0 {
			r, rest, err := nextFrame(b)
			if err != nil {
				break // a torn tail: that record was never acknowledged
			}
			b = rest
			buf = append(buf, r)
			if len(buf) == batch {
				if err := flush(); err != nil {
					return total, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return total, err
	}
	return total, os.RemoveAll(dir)
}

// Recover stores the records that stopped processes left in their journals under dir
// (for tools that read the store without running a ledger, such as `sluice usage`).
func Recover(ctx context.Context, store Store, dir string) (int, error) {
	return replayOrphans(dir, "", 512, func(recs []Record) error { return store.Apply(ctx, recs) })
}
