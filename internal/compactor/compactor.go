// Package compactor is etcd's auto-compaction (--auto-compaction-mode,
// --auto-compaction-retention): while this member leads the raft group,
// it proposes compactions of the MVCC history through the store, as a
// client's Compact does, keeping a span of time (periodic mode) or a
// number of revisions (revision mode).
//
// It runs as one goroutine. etcd pauses its compactor when the member
// loses leadership and resumes it when it leads again, and reads that
// state once a tick; this compactor asks the store whether the member
// leads at the same point, and skips the tick when it does not.
package compactor

import (
	"context"
	"errors"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/mvcc"
)

// The modes of --auto-compaction-mode.
const (
	ModePeriodic = "periodic"
	ModeRevision = "revision"
)

// revisionInterval is how often revision mode compacts, fixed in etcd.
const revisionInterval = 5 * time.Minute

// Store is what the compactor needs of the store. Its methods are called
// from the compactor's goroutine only, one at a time.
type Store interface {
	// IsLeader reports whether this member leads the raft group.
	IsLeader() bool
	// Header returns a header whose Revision is the current revision.
	Header() *pb.ResponseHeader
	// Compact proposes a compaction to req.Revision through raft and waits
	// for it to be applied; it fails with mvcc.ErrCompacted when the
	// revision is compacted already. The compactor cancels ctx on Stop.
	Compact(ctx context.Context, req *pb.CompactionRequest) (*pb.CompactionResponse, error)
}

// Clock is the compactor's source of time; tests give a fake one.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Config configures a compactor.
type Config struct {
	// Mode is ModePeriodic or ModeRevision.
	Mode string
	// Retention is the history kept: a span of time in periodic mode, and
	// in revision mode a number of revisions held as the Duration's count,
	// as etcd holds it. It must be positive.
	Retention time.Duration
	Store     Store
	// Clock defaults to the real clock.
	Clock  Clock
	Logger *zap.Logger
}

// Compactor is a running auto-compaction.
type Compactor struct {
	cfg    Config
	cancel context.CancelFunc
	done   chan struct{}
}

// Start starts compacting in the background. It fails for an unknown
// mode or a retention that is not positive.
func Start(cfg Config) (*Compactor, error) {
	if cfg.Mode != ModePeriodic && cfg.Mode != ModeRevision {
		return nil, fmt.Errorf("unsupported compaction mode %s", cfg.Mode)
	}
	if cfg.Retention <= 0 {
		return nil, fmt.Errorf("auto-compaction retention %d is not positive", cfg.Retention)
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	// Compactions are the member's own, made as root as etcd's are, so
	// that auth never stops them.
	ctx, cancel := context.WithCancel(auth.WithUser(context.Background(), auth.RootUser))
	c := &Compactor{cfg: cfg, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		if cfg.Mode == ModePeriodic {
			c.runPeriodic(ctx)
		} else {
			c.runRevision(ctx)
		}
	}()
	return c, nil
}

// Stop ends the compactor, cancelling a compaction in flight, and returns
// once its goroutine has ended. Call it before stopping the store.
func (c *Compactor) Stop() {
	c.cancel()
	<-c.done
}

// periodicTick is periodic mode's sampling interval: a tenth of the
// retention, or of an hour when the retention is longer.
func periodicTick(retention time.Duration) time.Duration {
	return min(retention, time.Hour) / 10
}

// runPeriodic samples the revision every tick and, once the retention has
// passed since the last compaction (since the start, at first; after the
// first compaction, the retention or an hour, whichever is shorter),
// compacts to the oldest sample, taken one retention ago. A failed
// compaction is retried at the next tick.
func (c *Compactor) runPeriodic(ctx context.Context) {
	retention, clock, lg := c.cfg.Retention, c.cfg.Clock, c.cfg.Logger
	tick := periodicTick(retention)
	// revs[0] is the revision sampled one retention ago.
	keep := int(retention/tick) + 1
	revs := make([]int64, 0, keep+1)
	wait := retention
	lastRev, lastSuccess := int64(0), clock.Now()
	for {
		revs = append(revs, c.cfg.Store.Header().Revision)
		if len(revs) > keep {
			revs = revs[1:]
		}
		select {
		case <-ctx.Done():
			return
		case <-clock.After(tick):
		}
		if !c.cfg.Store.IsLeader() {
			continue
		}
		rev := revs[0]
		if clock.Now().Sub(lastSuccess) < wait || rev == lastRev {
			continue
		}
		wait = min(retention, time.Hour)
		lg.Info("starting auto periodic compaction", zap.Int64("revision", rev), zap.Duration("compact-period", retention))
		start := clock.Now()
		if err := c.compact(ctx, rev); err != nil {
			lg.Warn("failed auto periodic compaction", zap.Int64("revision", rev), zap.Duration("compact-period", retention),
				zap.Duration("retry-interval", tick), zap.Error(err))
			continue
		}
		lg.Info("completed auto periodic compaction", zap.Int64("revision", rev), zap.Duration("compact-period", retention),
			zap.Duration("took", clock.Now().Sub(start)))
		lastRev, lastSuccess = rev, clock.Now()
	}
}

// runRevision compacts, every revisionInterval, to the current revision
// less the retention, when that is positive and has moved since the last
// compaction.
func (c *Compactor) runRevision(ctx context.Context) {
	retention, clock, lg := int64(c.cfg.Retention), c.cfg.Clock, c.cfg.Logger
	prev := int64(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-clock.After(revisionInterval):
		}
		if !c.cfg.Store.IsLeader() {
			continue
		}
		rev := c.cfg.Store.Header().Revision - retention
		if rev <= 0 || rev == prev {
			continue
		}
		lg.Info("starting auto revision compaction", zap.Int64("revision", rev), zap.Int64("revision-compaction-retention", retention))
		start := clock.Now()
		if err := c.compact(ctx, rev); err != nil {
			lg.Warn("failed auto revision compaction", zap.Int64("revision", rev), zap.Int64("revision-compaction-retention", retention),
				zap.Duration("retry-interval", revisionInterval), zap.Error(err))
			continue
		}
		lg.Info("completed auto revision compaction", zap.Int64("revision", rev), zap.Int64("revision-compaction-retention", retention),
			zap.Duration("took", clock.Now().Sub(start)))
		prev = rev
	}
}

// compact proposes a compaction to rev; one already compacted counts as
// done, as in etcd.
func (c *Compactor) compact(ctx context.Context, rev int64) error {
	_, err := c.cfg.Store.Compact(ctx, &pb.CompactionRequest{Revision: rev})
	if errors.Is(err, mvcc.ErrCompacted) {
		return nil
	}
	return err
}
