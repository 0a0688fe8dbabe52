package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/storage"
)

// Compact applies the raft entry at index, a compaction at rev. The
// compaction is logical at once: reads below rev fail with ErrCompacted from
// now on. Removing the history from the index and the engine happens in the
// background, in bounded batches, so applies are not held up; done closes
// when it has finished (or Close interrupted it; Open then resumes it).
//
// As in etcd, compacting at or below the last compaction revision fails with
// ErrCompacted, and done then closes once earlier compactions have finished;
// compacting above the current revision fails with ErrFutureRev and a nil
// done. Compacting at the current revision is allowed. Either way the
// applied index advances. Other errors are engine failures, as for Put.
//
// A compaction is never part of an Applier's batch: it checks rev against
// the committed revision and publishes the compaction at once, so the
// writer commits its open Applier before a compaction entry and opens a
// new one after it. Compactions are rare, so the extra engine commit costs
// nothing that matters. It panics if an Applier is open.
func (kv *KV) Compact(index uint64, rev int64) (done <-chan struct{}, err error) {
	if kv.applying {
		panic("mvcc: Compact while an Applier is open")
	}
	kv.mu.RLock()
	compacted, current := kv.compactRev, kv.rev
	kv.mu.RUnlock()
	switch {
	case rev <= compacted:
		done, err = kv.compactor.barrier(), ErrCompacted
	case rev > current:
		err = ErrFutureRev
	}
	if err != nil {
		if serr := kv.SetApplied(index); serr != nil {
			return nil, serr
		}
		return done, err
	}

	kv.expectCompaction(rev, compacted)
	// The scheduled revision commits with the entry, so that a crash before
	// the compaction finishes resumes it at Open.
	b := kv.e.NewBatch()
	defer b.Close()
	b.Put(storage.Meta, scheduledCompactKey, metaValue(rev))
	kv.putApplied(b, index)
	if err := b.Commit(false); err != nil {
		return nil, fmt.Errorf("mvcc: commit compaction at %d: %w", rev, err)
	}
	kv.mu.Lock()
	kv.compactRev = rev
	kv.mu.Unlock()
	kv.applied.Store(index)
	return kv.compactor.schedule(rev), nil
}

// compactor runs compactions one after the other in a background
// goroutine. A compaction requested while another runs waits; several
// waiting ones merge into the latest, which removes everything they would.
type compactor struct {
	kv *KV

	mu          sync.Mutex
	pending     bool
	pendingRev  int64
	pendingDone []chan struct{} // closed when the pending compaction ends
	running     bool
	runningDone []chan struct{} // closed when the running compaction ends

	wake     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	stopped  chan struct{}
}

func newCompactor(kv *KV) *compactor {
	c := &compactor{
		kv:      kv,
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go c.loop()
	return c
}

// schedule queues a compaction at rev and returns a channel closed when it
// ends.
func (c *compactor) schedule(rev int64) <-chan struct{} {
	done := make(chan struct{})
	c.mu.Lock()
	c.pending, c.pendingRev = true, rev
	c.pendingDone = append(c.pendingDone, done)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return done
}

// barrier returns a channel closed once every compaction queued or running
// now has ended.
func (c *compactor) barrier() <-chan struct{} {
	done := make(chan struct{})
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.pending:
		c.pendingDone = append(c.pendingDone, done)
	case c.running:
		c.runningDone = append(c.runningDone, done)
	default:
		close(done)
	}
	return done
}

// close stops the goroutine, interrupting a compaction in progress, and
// waits for it to exit. Calling it again is harmless.
func (c *compactor) close() {
	c.stopOnce.Do(func() { close(c.stop) })
	<-c.stopped
}

func (c *compactor) loop() {
	defer close(c.stopped)
	for {
		select {
		case <-c.stop:
			c.releaseAll()
			return
		case <-c.wake:
		}
		for {
			c.mu.Lock()
			if !c.pending {
				c.mu.Unlock()
				break
			}
			rev := c.pendingRev
			c.pending, c.running = false, true
			c.runningDone, c.pendingDone = c.pendingDone, nil
			c.mu.Unlock()

			err := c.kv.compact(rev, c.stop)

			c.mu.Lock()
			done := c.runningDone
			c.running, c.runningDone = false, nil
			c.mu.Unlock()
			closeAll(done)
			if errors.Is(err, errCompactionStopped) {
				c.releaseAll()
				return
			}
			if err != nil {
				c.kv.lg.Error("compaction failed", zap.Int64("revision", rev), zap.Error(err))
			}
		}
	}
}

// releaseAll closes the channels of compactions that will not run in this
// process, as etcd does on shutdown, so that no caller waits forever.
func (c *compactor) releaseAll() {
	c.mu.Lock()
	done := c.pendingDone
	c.pending, c.pendingDone = false, nil
	c.mu.Unlock()
	closeAll(done)
}

func closeAll(chs []chan struct{}) {
	for _, ch := range chs {
		close(ch)
	}
}

var errCompactionStopped = errors.New("mvcc: compaction interrupted by close")

// compact removes the history below rev, whose compaction is already
// published: first from the index, chunk by chunk, then from the KV bucket,
// batch by batch. The last batch records the compaction as finished.
func (kv *KV) compact(rev int64, stop <-chan struct{}) error {
	start := time.Now()
	// Reads that began before rev was published may still read below it;
	// wait until they are done. Later reads cannot go below rev. The empty
	// critical section is the barrier.
	kv.readers.Lock()
	//lint:ignore SA2001 taking the write lock waits out every earlier reader
	kv.readers.Unlock()

	limit := kv.opts.CompactionBatchLimit
	keep := make(map[revision]struct{})
	var indexLocked time.Duration
	for from := []byte(nil); ; {
		locked := time.Now()
		kv.mu.Lock()
		from = kv.idx.compact(from, rev, limit, keep)
		kv.mu.Unlock()
		indexLocked += time.Since(locked)
		if from == nil {
			break
		}
		select {
		case <-stop:
			return errCompactionStopped
		default:
		}
	}
	kv.metrics.indexPause.Observe(float64(indexLocked / time.Millisecond))
	dbStart := time.Now()
	defer func() {
		sinceMs(kv.metrics.dbTotal, dbStart)
		kv.metrics.lastCompaction.Set(float64(time.Now().Unix()))
	}()

	// As etcd does, hash what the compaction sees before deleting it; HashKV
	// at rev answers with that hash.
	h := kv.beginCompactionHash(rev, keep)
	deleted := 0
	end := mainPrefix(rev + 1)
	for from := []byte(nil); ; {
		var (
			keys  [][]byte
			hfail error
		)
		batchStart := time.Now()
		err := kv.e.Iterate(storage.KV, from, end, false, func(k, v []byte) bool {
			keys = append(keys, bytes.Clone(k))
			if h != nil {
				hfail = h.write(k, v)
			}
			return len(keys) < limit && hfail == nil
		})
		if err == nil {
			err = hfail
		}
		if err != nil {
			return fmt.Errorf("mvcc: compaction scan: %w", err)
		}
		b := kv.e.NewBatch()
		batchDeleted := 0
		for _, k := range keys {
			r, _, err := parseRevKey(k)
			if err != nil {
				b.Close()
				return err
			}
			if _, ok := keep[r]; !ok {
				b.Delete(storage.KV, k)
				batchDeleted++
			}
		}
		last := len(keys) < limit
		if last {
			b.Put(storage.Meta, finishedCompactKey, metaValue(rev))
		}
		err = b.Commit(false)
		b.Close()
		if err != nil {
			return fmt.Errorf("mvcc: compaction commit: %w", err)
		}
		deleted += batchDeleted
		kv.metrics.compacted.Add(float64(batchDeleted))
		sinceMs(kv.metrics.dbPause, batchStart)
		if last {
			break
		}
		// The smallest key after the last one seen.
		from = append(keys[len(keys)-1], 0)
		select {
		case <-stop:
			return errCompactionStopped
		case <-time.After(kv.opts.CompactionSleepInterval):
		}
	}
	kv.finishCompactionHash(h)
	kv.lg.Info("compaction finished",
		zap.Int64("revision", rev),
		zap.Int("revisions-deleted", deleted),
		zap.Duration("took", time.Since(start)))
	return nil
}
