package compactor

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/mvcc"
)

// fakeClock moves only when the test advances it.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeTimer
	changed chan struct{} // signalled when a waiter is added
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1_000_000, 0), changed: make(chan struct{}, 1)}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	f.waiters = append(f.waiters, fakeTimer{at: f.now.Add(d), ch: ch})
	select {
	case f.changed <- struct{}{}:
	default:
	}
	return ch
}

// waitBlocked waits until the compactor waits on the clock.
func (f *fakeClock) waitBlocked(t *testing.T) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		f.mu.Lock()
		n := len(f.waiters)
		f.mu.Unlock()
		if n > 0 {
			return
		}
		select {
		case <-f.changed:
		case <-deadline:
			t.Fatal("the compactor does not wait on the clock")
		}
	}
}

// step waits for the compactor to wait on the clock, moves the clock by d,
// then waits for the compactor to wait again, so that what it did in
// between is done.
func (f *fakeClock) step(t *testing.T, d time.Duration) {
	t.Helper()
	f.waitBlocked(t)
	f.mu.Lock()
	f.now = f.now.Add(d)
	var left []fakeTimer
	for _, w := range f.waiters {
		if w.at.After(f.now) {
			left = append(left, w)
			continue
		}
		w.ch <- f.now
	}
	f.waiters = left
	f.mu.Unlock()
	f.waitBlocked(t)
}

// fakeStore records the compactions asked of it.
type fakeStore struct {
	mu        sync.Mutex
	rev       int64
	leader    bool
	compacted []int64
	err       error // returned by the next Compact
}

func (s *fakeStore) IsLeader() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leader
}

func (s *fakeStore) Header() *pb.ResponseHeader {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &pb.ResponseHeader{Revision: s.rev}
}

func (s *fakeStore) Compact(ctx context.Context, req *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	if auth.UserFrom(ctx) != auth.RootUser {
		return nil, errors.New("not root")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.err; err != nil {
		s.err = nil
		return nil, err
	}
	s.compacted = append(s.compacted, req.Revision)
	return &pb.CompactionResponse{}, nil
}

func (s *fakeStore) set(rev int64, leader bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev, s.leader = rev, leader
}

func (s *fakeStore) failNext(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *fakeStore) compactions() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.compacted)
}

func start(t *testing.T, mode string, retention time.Duration, st *fakeStore) *fakeClock {
	t.Helper()
	clock := newFakeClock()
	c, err := Start(Config{Mode: mode, Retention: retention, Store: st, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	clock.waitBlocked(t) // the first sample is taken
	return clock
}

// TestPeriodic: with a retention of 10 minutes, the revision is sampled
// every minute. As in etcd, the first compaction comes 10 minutes after
// the start, to the revision sampled at the start; the next ones come
// every 10 minutes, each to the revision sampled 11 minutes before (the
// window holds 11 samples, the newest a tick old). A failed one is retried
// at the next tick; a member not leading skips its ticks, and compacts at
// its first tick as leader when a compaction is due.
func TestPeriodic(t *testing.T) {
	st := &fakeStore{rev: 100, leader: true}
	clock := start(t, ModePeriodic, 10*time.Minute, st)
	// The sample at minute m reads revision 100+m.
	minute := 0
	var want []int64
	tick := func(compacted ...int64) {
		t.Helper()
		minute++
		st.set(int64(100+minute), st.IsLeader())
		clock.step(t, time.Minute)
		want = append(want, compacted...)
		if got := st.compactions(); !slices.Equal(got, want) {
			t.Fatalf("minute %d: compactions %v, want %v", minute, got, want)
		}
	}
	for range 9 {
		tick()
	}
	tick(100) // minute 10: the revision at minute 0
	for range 9 {
		tick()
	}
	tick(109) // minute 20: the revision at minute 9
	for range 9 {
		tick()
	}
	st.failNext(errors.New("timed out"))
	tick()    // minute 30 fails
	tick(120) // minute 31: retried with the window moved on
	st.set(st.Header().Revision, false)
	for range 19 { // minutes 32 to 50, not leading
		tick()
	}
	st.set(st.Header().Revision, true)
	tick(140) // minute 51: the revision at minute 40
}

// TestPeriodicLongRetention: above an hour, the revision is sampled every
// 6 minutes; the first compaction waits the whole retention and the next
// ones come every hour.
func TestPeriodicLongRetention(t *testing.T) {
	if got := periodicTick(24 * time.Hour); got != 6*time.Minute {
		t.Fatalf("tick of 24h = %v, want 6m", got)
	}
	if got := periodicTick(2 * time.Second); got != 200*time.Millisecond {
		t.Fatalf("tick of 2s = %v, want 200ms", got)
	}
	st := &fakeStore{rev: 1000, leader: true}
	clock := start(t, ModePeriodic, 2*time.Hour, st)
	// The sample at tick k reads revision 1000+k.
	var want []int64
	for k := 1; k <= 40; k++ {
		st.set(int64(1000+k), true)
		clock.step(t, 6*time.Minute)
		switch k {
		case 20: // 2h: the revision at the start
			want = append(want, 1000)
		case 30: // an hour later: the revision 21 ticks before
			want = append(want, 1009)
		case 40:
			want = append(want, 1019)
		}
		if got := st.compactions(); !slices.Equal(got, want) {
			t.Fatalf("tick %d: compactions %v, want %v", k, got, want)
		}
	}
}

// TestRevision: every 5 minutes the history is compacted to the current
// revision less the retention, unless that is not positive or has not
// moved; a compacted revision counts as done; one not leading skips.
func TestRevision(t *testing.T) {
	st := &fakeStore{rev: 5, leader: true}
	clock := start(t, ModeRevision, 10, st)
	steps := []struct {
		rev    int64
		leader bool
		err    error
		want   []int64
	}{
		{rev: 5, leader: true},                                               // 5-10 ≤ 0
		{rev: 30, leader: true, want: []int64{20}},                           //
		{rev: 30, leader: true, want: []int64{20}},                           // not moved
		{rev: 50, leader: false, want: []int64{20}},                          // not leading
		{rev: 50, leader: true, want: []int64{20, 40}},                       // leading again
		{rev: 60, leader: true, err: errors.New("x"), want: []int64{20, 40}}, // failed
		{rev: 60, leader: true, want: []int64{20, 40, 50}},                   // retried
		{rev: 70, leader: true, err: mvcc.ErrCompacted, want: []int64{20, 40, 50}},
		{rev: 70, leader: true, want: []int64{20, 40, 50}}, // 60 counted as done
	}
	var before []int64
	for i, s := range steps {
		st.set(s.rev, s.leader)
		if s.err != nil {
			st.failNext(s.err)
		}
		clock.step(t, time.Minute)
		if got := st.compactions(); !slices.Equal(got, before) {
			t.Fatalf("step %d: compactions %v a minute in, want %v", i, got, before)
		}
		before = s.want
		clock.step(t, 4*time.Minute)
		if got := st.compactions(); !slices.Equal(got, s.want) {
			t.Fatalf("step %d: compactions %v, want %v", i, got, s.want)
		}
	}
}

// TestStartRefuses: an unknown mode or a retention that is not positive.
func TestStartRefuses(t *testing.T) {
	for _, cfg := range []Config{
		{Mode: "hourly", Retention: time.Hour},
		{Mode: ModePeriodic, Retention: 0},
		{Mode: ModeRevision, Retention: -1},
	} {
		cfg.Store = &fakeStore{}
		if c, err := Start(cfg); err == nil {
			c.Stop()
			t.Errorf("Start(%s, %v) succeeded, want an error", cfg.Mode, cfg.Retention)
		}
	}
}
