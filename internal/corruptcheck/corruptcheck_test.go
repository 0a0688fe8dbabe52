package corruptcheck

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/internal/mvcc"
)

// fakeMember is a Member whose hashes, peers and alarms are scripted.
type fakeMember struct {
	id uint64
	// own are HashKV's answers, in call order; the last one repeats.
	own       []ownHash
	compacted []mvcc.KeyValueHash
	// peers are the peers' answers by requested revision.
	peers        map[int64][]PeerHash
	linearizeErr error

	mu        sync.Mutex
	requested []int64
	alarms    []uint64
	hashCalls int
}

type ownHash struct {
	h   mvcc.KeyValueHash
	rev int64
	err error
}

func (f *fakeMember) ID() uint64 { return f.id }

func (f *fakeMember) HashKV(int64) (mvcc.KeyValueHash, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.own[min(f.hashCalls, len(f.own)-1)]
	f.hashCalls++
	return o.h, o.rev, o.err
}

func (f *fakeMember) CompactionHashes() []mvcc.KeyValueHash { return slices.Clone(f.compacted) }

func (f *fakeMember) PeerHashes(_ context.Context, rev int64) []PeerHash {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requested = append(f.requested, rev)
	return slices.Clone(f.peers[rev])
}

func (f *fakeMember) Linearize(context.Context) error { return f.linearizeErr }

func (f *fakeMember) RaiseCorrupt(_ context.Context, id uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.alarms = append(f.alarms, id)
}

func (f *fakeMember) raised() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.alarms)
}

// kvh is a hash at rev after the compaction at compact.
func kvh(hash uint32, compact, rev int64) mvcc.KeyValueHash {
	return mvcc.KeyValueHash{Hash: hash, CompactRevision: compact, Revision: rev}
}

// answer is a peer's answer: its hash and its current revision.
func answer(id uint64, h mvcc.KeyValueHash, current int64) PeerHash {
	return PeerHash{ID: id, Hash: h, Revision: current}
}

func failed(id uint64, err error) PeerHash { return PeerHash{ID: id, Err: err} }

var errUnreachable = errors.New("connection refused")

func TestInitialCheck(t *testing.T) {
	own := kvh(1, 5, 10)
	tests := []struct {
		name    string
		own     ownHash
		peers   []PeerHash
		wantErr string
	}{
		{name: "no peers", own: ownHash{h: own, rev: 10}},
		{name: "own hash fails", own: ownHash{err: errors.New("disk on fire")}, wantErr: "a failed to fetch hash (disk on fire)"},
		{name: "same hashes", own: ownHash{h: own, rev: 10}, peers: []PeerHash{answer(2, own, 10), answer(3, own, 12)}},
		{name: "other hash at the same compaction", own: ownHash{h: own, rev: 10},
			peers:   []PeerHash{answer(2, own, 10), answer(3, kvh(2, 5, 10), 10)},
			wantErr: "a found data inconsistency with peers"},
		{name: "other hash at another compaction", own: ownHash{h: own, rev: 10},
			peers: []PeerHash{answer(2, kvh(2, 8, 10), 10)}},
		{name: "peers that cannot answer are skipped", own: ownHash{h: own, rev: 10}, peers: []PeerHash{
			failed(2, mvcc.ErrFutureRev), failed(3, mvcc.ErrCompacted), failed(4, ErrClusterIDMismatch), failed(5, errUnreachable),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeMember{id: 0xa, own: []ownHash{tt.own}, peers: map[int64][]PeerHash{10: tt.peers}}
			err := NewChecker(f, time.Second, nil).InitialCheck(context.Background())
			if got := errText(err); got != tt.wantErr {
				t.Errorf("InitialCheck() = %q, want %q", got, tt.wantErr)
			}
			if tt.own.err == nil && !slices.Equal(f.requested, []int64{10}) {
				t.Errorf("peers asked at %v, want the local revision [10]", f.requested)
			}
			if len(f.raised()) > 0 {
				t.Errorf("alarms %v raised; the initial check raises none", f.raised())
			}
		})
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestPeriodicCheck(t *testing.T) {
	h := kvh(1, 5, 10)
	ok := ownHash{h: h, rev: 10}
	tests := []struct {
		name      string
		own       []ownHash
		peers     []PeerHash
		linearize error
		wantErr   bool
		want      []uint64
	}{
		{name: "no peers", own: []ownHash{ok}},
		{name: "healthy", own: []ownHash{ok}, peers: []PeerHash{answer(2, h, 10), answer(3, h, 9)}},
		{name: "own hash fails", own: []ownHash{{err: errors.New("io")}}, wantErr: true},
		{name: "second own hash fails", own: []ownHash{ok, {err: errors.New("io")}}, wantErr: true},
		{name: "linearizable read fails", own: []ownHash{ok}, linearize: errors.New("timeout"), wantErr: true},
		{name: "leader's hash changed at the same revision", own: []ownHash{ok, {h: kvh(2, 5, 10), rev: 10}}, want: []uint64{1}},
		{name: "leader's hash changed with a new revision", own: []ownHash{ok, {h: kvh(2, 5, 11), rev: 11}},
			peers: []PeerHash{answer(2, h, 11)}},
		{name: "leader's hash changed with a compaction", own: []ownHash{ok, {h: kvh(2, 6, 10), rev: 10}}},
		{name: "follower ahead of the leader", own: []ownHash{ok}, peers: []PeerHash{answer(2, h, 10), answer(3, h, 11)}, want: []uint64{3}},
		{name: "follower compacted further", own: []ownHash{ok}, peers: []PeerHash{answer(2, kvh(9, 6, 10), 10)}, want: []uint64{2}},
		{name: "follower's hash differs", own: []ownHash{ok}, peers: []PeerHash{answer(2, h, 10), answer(3, kvh(2, 5, 10), 10)}, want: []uint64{3}},
		{name: "follower at an older compaction", own: []ownHash{ok}, peers: []PeerHash{answer(2, kvh(2, 4, 10), 10)}},
		{name: "followers that cannot answer are skipped", own: []ownHash{ok},
			peers: []PeerHash{failed(2, mvcc.ErrFutureRev), failed(3, errUnreachable)}},
		{name: "one alarm at most", own: []ownHash{ok, {h: kvh(2, 5, 10), rev: 10}},
			peers: []PeerHash{answer(2, kvh(3, 5, 10), 12), answer(3, kvh(4, 5, 10), 10)}, want: []uint64{1}},
		{name: "first follower at fault", own: []ownHash{ok},
			peers: []PeerHash{answer(2, kvh(3, 5, 10), 10), answer(3, kvh(4, 5, 10), 10)}, want: []uint64{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeMember{id: 1, own: tt.own, peers: map[int64][]PeerHash{10: tt.peers}, linearizeErr: tt.linearize}
			err := NewChecker(f, time.Second, nil).PeriodicCheck(context.Background())
			if (err != nil) != tt.wantErr {
				t.Fatalf("PeriodicCheck() = %v, want error %v", err, tt.wantErr)
			}
			if got := f.raised(); !slices.Equal(got, tt.want) {
				t.Errorf("alarms for %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCompactHashCheck(t *testing.T) {
	tests := []struct {
		name      string
		compacted []mvcc.KeyValueHash
		peers     map[int64][]PeerHash
		want      []uint64
		// asked are the revisions the peers are asked for.
		asked []int64
	}{
		{name: "no compaction"},
		{name: "healthy, newest compaction only", compacted: []mvcc.KeyValueHash{kvh(1, 0, 5), kvh(2, 5, 8)},
			peers: map[int64][]PeerHash{8: {answer(2, kvh(2, 5, 8), 9), answer(3, kvh(2, 5, 8), 9)}},
			asked: []int64{8}},
		{name: "peer not answering: older compaction tried", compacted: []mvcc.KeyValueHash{kvh(1, 0, 5), kvh(2, 5, 8)},
			peers: map[int64][]PeerHash{
				8: {answer(2, kvh(2, 5, 8), 9), failed(3, errUnreachable)},
				5: {answer(2, kvh(1, 0, 5), 9), answer(3, kvh(1, 0, 5), 9)},
			},
			asked: []int64{8, 5}},
		{name: "peer at another compaction: skipped", compacted: []mvcc.KeyValueHash{kvh(2, 5, 8)},
			peers: map[int64][]PeerHash{8: {answer(2, kvh(2, 5, 8), 9), answer(3, kvh(7, 3, 8), 9)}},
			asked: []int64{8}},
		{name: "no peers: older compaction tried", compacted: []mvcc.KeyValueHash{kvh(1, 0, 5), kvh(2, 5, 8)},
			asked: []int64{8, 5}},
		{name: "one follower differs", compacted: []mvcc.KeyValueHash{kvh(2, 5, 8)},
			peers: map[int64][]PeerHash{8: {answer(2, kvh(2, 5, 8), 9), answer(3, kvh(3, 5, 8), 9)}},
			want:  []uint64{3}, asked: []int64{8}},
		{name: "mismatch stops the search", compacted: []mvcc.KeyValueHash{kvh(1, 0, 5), kvh(2, 5, 8)},
			peers: map[int64][]PeerHash{8: {answer(2, kvh(3, 5, 8), 9), answer(3, kvh(2, 5, 8), 9), failed(4, errUnreachable), answer(5, kvh(2, 5, 8), 9)}},
			want:  []uint64{2}, asked: []int64{8}},
		{name: "leader in the minority", compacted: []mvcc.KeyValueHash{kvh(2, 5, 8)},
			peers: map[int64][]PeerHash{8: {answer(2, kvh(3, 5, 8), 9), answer(3, kvh(3, 5, 8), 9)}},
			want:  []uint64{1}, asked: []int64{8}},
		{name: "two minorities of five", compacted: []mvcc.KeyValueHash{kvh(2, 5, 8)},
			peers: map[int64][]PeerHash{8: {answer(2, kvh(2, 5, 8), 9), answer(3, kvh(2, 5, 8), 9), answer(4, kvh(4, 5, 8), 9), answer(5, kvh(5, 5, 8), 9)}},
			want:  []uint64{4, 5}, asked: []int64{8}},
		{name: "no majority", compacted: []mvcc.KeyValueHash{kvh(2, 5, 8)},
			peers: map[int64][]PeerHash{8: {answer(2, kvh(3, 5, 8), 9), answer(3, kvh(4, 5, 8), 9)}},
			want:  []uint64{0}, asked: []int64{8}},
		{name: "two members disagree", compacted: []mvcc.KeyValueHash{kvh(2, 5, 8)},
			peers: map[int64][]PeerHash{8: {answer(2, kvh(3, 5, 8), 9)}},
			want:  []uint64{0}, asked: []int64{8}},
		{name: "majority counts the skipped peers", compacted: []mvcc.KeyValueHash{kvh(2, 5, 8)},
			peers: map[int64][]PeerHash{8: {answer(2, kvh(3, 5, 8), 9), failed(3, errUnreachable), failed(4, errUnreachable)}},
			want:  []uint64{0}, asked: []int64{8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeMember{id: 1, compacted: tt.compacted, peers: tt.peers}
			NewChecker(f, time.Second, nil).CompactHashCheck(context.Background())
			got := f.raised()
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("alarms for %v, want %v", got, tt.want)
			}
			if !slices.Equal(f.requested, tt.asked) {
				t.Errorf("peers asked at %v, want %v", f.requested, tt.asked)
			}
		})
	}
}

// TestCompactHashCheckRemembers: a compaction found consistent on every
// member is not checked again, nor are older ones; a newer one is.
func TestCompactHashCheckRemembers(t *testing.T) {
	good := func(h mvcc.KeyValueHash) []PeerHash { return []PeerHash{answer(2, h, 20), answer(3, h, 20)} }
	f := &fakeMember{id: 1, compacted: []mvcc.KeyValueHash{kvh(1, 0, 5), kvh(2, 5, 8)},
		peers: map[int64][]PeerHash{5: good(kvh(1, 0, 5)), 8: good(kvh(2, 5, 8)), 12: good(kvh(3, 8, 12))}}
	c := NewChecker(f, time.Second, nil)
	c.CompactHashCheck(context.Background())
	c.CompactHashCheck(context.Background())
	f.compacted = append(f.compacted, kvh(3, 8, 12))
	c.CompactHashCheck(context.Background())
	if want := []int64{8, 12}; !slices.Equal(f.requested, want) {
		t.Errorf("peers asked at %v, want %v", f.requested, want)
	}
}

// TestMonitor: the background checks run on the leader only, each at its
// period, and stop with Stop.
func TestMonitor(t *testing.T) {
	h := kvh(1, 5, 10)
	f := &fakeMember{id: 1, own: []ownHash{{h: h, rev: 10}}, compacted: []mvcc.KeyValueHash{kvh(2, 5, 8)},
		peers: map[int64][]PeerHash{10: {answer(2, kvh(9, 5, 10), 10)}, 8: {answer(2, kvh(3, 5, 8), 9), answer(3, kvh(3, 5, 8), 9)}}}
	var leader sync.Mutex
	isLeader := false
	m := Start(Config{
		Checker:              NewChecker(f, time.Second, nil),
		IsLeader:             func() bool { leader.Lock(); defer leader.Unlock(); return isLeader },
		CorruptCheckTime:     10 * time.Millisecond,
		CompactHashCheckTime: 10 * time.Millisecond,
	})
	time.Sleep(50 * time.Millisecond)
	if got := f.raised(); len(got) > 0 {
		t.Fatalf("alarms %v raised on a follower", got)
	}
	leader.Lock()
	isLeader = true
	leader.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := f.raised()
		if slices.Contains(got, 2) && slices.Contains(got, 1) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alarms %v, want the periodic check's for 2 and the compaction check's for 1", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	m.Stop()
	n := len(f.raised())
	time.Sleep(50 * time.Millisecond)
	if len(f.raised()) != n {
		t.Error("checks ran after Stop")
	}
}

// TestInitialCheckMessage: the error names the member as etcd's does.
func TestInitialCheckMessage(t *testing.T) {
	f := &fakeMember{id: 0x8e9e05c52164694d, own: []ownHash{{h: kvh(1, -1, 3), rev: 3}},
		peers: map[int64][]PeerHash{3: {answer(2, kvh(2, -1, 3), 3)}}}
	err := NewChecker(f, time.Second, nil).InitialCheck(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "8e9e05c52164694d found data inconsistency with peers") {
		t.Errorf("InitialCheck() = %v", err)
	}
}
