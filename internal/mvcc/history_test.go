package mvcc

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

// withoutPrev returns evs without their PrevKv, as Events replays them.
func withoutPrev(evs []*mvccpb.Event) []*mvccpb.Event {
	out := make([]*mvccpb.Event, len(evs))
	for i, ev := range evs {
		out[i] = &mvccpb.Event{Type: ev.Type, Kv: ev.Kv}
	}
	return out
}

func replay(t *testing.T, kv *KV, from, to int64) []*mvccpb.Event {
	t.Helper()
	var got []*mvccpb.Event
	if err := kv.Events(from, to, func(ev *mvccpb.Event) bool {
		got = append(got, ev)
		return true
	}); err != nil {
		t.Fatalf("Events(%d, %d): %v", from, to, err)
	}
	return got
}

func TestEventsReplayWhatWritesEmitted(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		f := newFixture(t, ec, Options{})
		var live []*mvccpb.Event
		for _, req := range []any{
			put("a", "1"),
			put("b", "2"),
			put("a", "3"),
			del("b"),
			&pb.TxnRequest{Success: []*pb.RequestOp{opPut(put("c", "4")), opPut(put("d", "5")), opDel(del("a"))}},
			del("nothing"), // changes nothing: no revision, no event
			put("b", "6"),
		} {
			_, evs, err := f.applyEntry(req)
			if err != nil {
				t.Fatal(err)
			}
			live = append(live, evs...)
		}
		want := withoutPrev(live)
		check := func(got, want []*mvccpb.Event) {
			t.Helper()
			if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
				t.Errorf("replayed events differ (-want +got):\n%s", d)
			}
		}
		check(replay(t, f.kv, 1, f.kv.Rev()), want)
		// A window: revisions 4 to 6.
		var window []*mvccpb.Event
		for _, ev := range want {
			if r := ev.Kv.ModRevision; r >= 4 && r <= 6 {
				window = append(window, ev)
			}
		}
		check(replay(t, f.kv, 4, 6), window)
		// Stopping early.
		n := 0
		if err := f.kv.Events(1, f.kv.Rev(), func(*mvccpb.Event) bool { n++; return n < 2 }); err != nil || n != 2 {
			t.Errorf("early stop: n=%d err=%v", n, err)
		}
		// Beyond the current revision there is nothing yet.
		check(replay(t, f.kv, f.kv.Rev()+1, f.kv.Rev()+10), nil)
		// History survives a restart.
		f.reopen()
		check(replay(t, f.kv, 1, f.kv.Rev()), want)
	})
}

func TestEventsBelowCompactionAreCompacted(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		f := newFixture(t, ec, Options{})
		for i := range 4 {
			f.mustPut("foo", fmt.Sprint(i)) // revisions 2..5
		}
		f.mustCompact(3)
		if err := f.kv.Events(2, 5, func(*mvccpb.Event) bool { return true }); !errors.Is(err, ErrCompacted) {
			t.Fatalf("Events(2, 5) after compacting at 3: %v, want ErrCompacted", err)
		}
		got := replay(t, f.kv, 3, 5)
		if len(got) != 3 || got[0].Kv.ModRevision != 3 {
			t.Fatalf("Events(3, 5) after compacting at 3: %v", got)
		}
	})
}

func TestPrevKV(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		f := newFixture(t, ec, Options{})
		// foo: v1 at 2, v2 at 3, deleted at 4, v3 at 5.
		f.mustPut("foo", "v1")
		f.mustPut("foo", "v2")
		if _, _, err := f.applyEntry(del("foo")); err != nil {
			t.Fatal(err)
		}
		f.mustPut("foo", "v3")
		for _, c := range []struct {
			rev  int64
			want *mvccpb.KeyValue
		}{
			{2, nil},
			{3, kv("foo", "v1", 2, 2, 1)},
			{4, kv("foo", "v2", 2, 3, 2)},
			{5, nil},
			{6, kv("foo", "v3", 5, 5, 1)},
			{7, nil}, // future
		} {
			if got := f.kv.PrevKV([]byte("foo"), c.rev); !proto.Equal(got, c.want) {
				t.Errorf("PrevKV(foo, %d) = %v, want %v", c.rev, got, c.want)
			}
		}
		f.mustCompact(4)
		if got := f.kv.PrevKV([]byte("foo"), 4); got != nil {
			t.Errorf("PrevKV below the compaction = %v, want nil", got)
		}
	})
}

// TestEventsConcurrentWithWriter replays while the writer writes and
// compacts: every replay is a gapless run of revisions, or ErrCompacted.
// Run it with -race.
func TestEventsConcurrentWithWriter(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		f := newFixture(t, ec, Options{})
		const writes = 300
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					from := max(f.kv.CompactRev(), 1)
					to := f.kv.Rev()
					// Each write is one put, so past the first event
					// (history at from may be gone) revisions are gapless.
					next := int64(0)
					err := f.kv.Events(from, to, func(ev *mvccpb.Event) bool {
						if ev.Kv.ModRevision < from || (next != 0 && ev.Kv.ModRevision != next) {
							t.Errorf("replay from %d: revision %d after %d", from, ev.Kv.ModRevision, next-1)
							return false
						}
						next = ev.Kv.ModRevision + 1
						return true
					})
					if err != nil && !errors.Is(err, ErrCompacted) {
						t.Errorf("Events: %v", err)
						return
					}
				}
			})
		}
		for i := range writes {
			f.mustPut(fmt.Sprintf("k%d", i%7), "v")
			if i%50 == 49 {
				f.index++
				if _, err := f.kv.Compact(f.index, f.kv.Rev()-10); err != nil {
					t.Fatal(err)
				}
			}
		}
		close(stop)
		wg.Wait()
	})
}
