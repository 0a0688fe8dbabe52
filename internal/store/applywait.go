package store

import (
	"context"
	"sync"
)

// appliedWait lets readers block until the state machine has applied a
// given raft index: the second half of a linearizable read, after ReadIndex.
// The store actor calls advance; any goroutine may call wait.
type appliedWait struct {
	mu      sync.Mutex
	applied uint64
	waiters []indexWaiter
}

type indexWaiter struct {
	index uint64
	ch    chan struct{}
}

// advance records that index has been applied and wakes every waiter at or
// below it.
func (w *appliedWait) advance(index uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if index <= w.applied {
		return
	}
	w.applied = index
	kept := w.waiters[:0]
	for _, wt := range w.waiters {
		if wt.index <= index {
			close(wt.ch)
		} else {
			kept = append(kept, wt)
		}
	}
	clear(w.waiters[len(kept):])
	w.waiters = kept
}

// wait returns once index has been applied, or with ctx's error.
func (w *appliedWait) wait(ctx context.Context, index uint64) error {
	w.mu.Lock()
	if index <= w.applied {
		w.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	w.waiters = append(w.waiters, indexWaiter{index: index, ch: ch})
	w.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
