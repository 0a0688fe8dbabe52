package corruptcheck

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Config configures the leader's background checks.
type Config struct {
	// Checker runs the checks; required.
	Checker *Checker
	// IsLeader reports whether the local member leads the raft group; the
	// checks run only on the leader, and it is asked once per tick.
	IsLeader func() bool
	// CorruptCheckTime is the period of the periodic check
	// (--corrupt-check-time); 0 turns it off.
	CorruptCheckTime time.Duration
	// CompactHashCheckTime is the period of the compaction hash check
	// (--compact-hash-check-time); 0 turns it off.
	CompactHashCheckTime time.Duration
	// Logger may be nil.
	Logger *zap.Logger
}

// Monitor runs the periodic and compaction hash checks in the background,
// each on its own goroutine, as etcd's monitorKVHash and
// monitorCompactHash do.
type Monitor struct {
	cancel context.CancelFunc
	loops  sync.WaitGroup
}

// Start starts the checks cfg turns on. The checks run as the member
// itself: its own HashKV and peers' over the peer transport need no user.
func Start(cfg Config) *Monitor {
	lg := cfg.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Monitor{cancel: cancel}
	if t := cfg.CorruptCheckTime; t > 0 {
		lg.Info("enabled corruption checking", zap.String("local-member-id", hexID(cfg.Checker.m.ID())), zap.Duration("interval", t))
		m.loops.Go(func() {
			every(ctx, t, cfg.IsLeader, func() {
				if err := cfg.Checker.PeriodicCheck(ctx); err != nil && ctx.Err() == nil {
					lg.Warn("failed to check hash KV", zap.Error(err))
				}
			})
			lg.Info("server has stopped; stopping kv hash's monitor")
		})
	}
	if t := cfg.CompactHashCheckTime; t > 0 {
		m.loops.Go(func() {
			every(ctx, t, cfg.IsLeader, func() { cfg.Checker.CompactHashCheck(ctx) })
			lg.Info("server has stopped; stopping compact hash's monitor")
		})
	}
	return m
}

// every calls check every period while the member leads, until ctx ends.
func every(ctx context.Context, period time.Duration, isLeader func() bool, check func()) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if isLeader() {
			check()
		}
	}
}

// Stop ends the checks, cancelling one in progress, and returns once
// their goroutines have ended. Call it before stopping the store and the
// transport the Member uses.
func (m *Monitor) Stop() {
	m.cancel()
	m.loops.Wait()
}
