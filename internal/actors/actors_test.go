package actors

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// waitFor polls cond until it holds or the test's patience runs out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func snapshotOf(t *testing.T, s *System, name string) (Snapshot, bool) {
	t.Helper()
	for _, sn := range s.Snapshot() {
		if sn.Name == name {
			return sn, true
		}
	}
	return Snapshot{}, false
}

// TestSendInOrder checks that an actor handles its messages one at a time,
// in the order one sender sent them, for both mailbox kinds.
func TestSendInOrder(t *testing.T) {
	for _, tt := range []struct {
		name    string
		mailbox int
	}{
		{"unbounded", 0},
		{"bounded", 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sys := NewSystem()
			const n = 1000
			var (
				got     []int
				running atomic.Int32
				overlap atomic.Bool
				done    = make(chan struct{})
			)
			ref := sys.Spawn("ordered", tt.mailbox, func(ctx actor.Context) {
				m, ok := ctx.Message().(int)
				if !ok {
					return
				}
				if running.Add(1) != 1 {
					overlap.Store(true)
				}
				got = append(got, m)
				running.Add(-1)
				if m == n-1 {
					close(done)
				}
			})
			defer ref.Stop()
			for i := range n {
				ref.Send(i)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("messages were not all handled")
			}
			if overlap.Load() {
				t.Error("two messages were handled at the same time")
			}
			if len(got) != n {
				t.Fatalf("handled %d messages, want %d", len(got), n)
			}
			for i, m := range got {
				if m != i {
					t.Fatalf("message %d handled was %d: order not kept", i, m)
				}
			}
		})
	}
}

// TestBoundedMailboxBlocksSender proves the backpressure: with the actor
// busy and its mailbox full, Send does not return until the actor takes a
// message out.
func TestBoundedMailboxBlocksSender(t *testing.T) {
	sys := NewSystem()
	const size = 2 // a power of two, so the ring buffer holds exactly this many
	release := make(chan struct{})
	busy := make(chan struct{}, 1)
	var mu sync.Mutex
	var got []int
	ref := sys.Spawn("bounded", size, func(ctx actor.Context) {
		m, ok := ctx.Message().(int)
		if !ok {
			return
		}
		if m == 0 {
			busy <- struct{}{}
			<-release
		}
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	})
	defer ref.Stop()

	ref.Send(0) // taken out of the mailbox at once; the actor then blocks
	select {
	case <-busy:
	case <-time.After(10 * time.Second):
		t.Fatal("actor never started handling message 0")
	}
	for i := 1; i <= size; i++ {
		ref.Send(i) // fills the mailbox without blocking
	}
	sent := make(chan struct{})
	go func() {
		ref.Send(size + 1)
		close(sent)
	}()
	select {
	case <-sent:
		t.Fatalf("Send returned while the actor was busy and %d messages filled its mailbox", size)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	select {
	case <-sent:
	case <-time.After(10 * time.Second):
		t.Fatal("Send still blocked after the actor was released")
	}
	waitFor(t, "every message to be handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == size+2
	})
	mu.Lock()
	defer mu.Unlock()
	for i, m := range got {
		if m != i {
			t.Fatalf("handled %v, want 0..%d in order", got, size+1)
		}
	}
}

// TestSignalTakesNoSlot: Signal posts to a full bounded mailbox without
// waiting, the receiver sees the message itself, in order with those sent,
// and the signalled message holds no slot: the bound still admits exactly
// size sent messages while the actor is busy.
func TestSignalTakesNoSlot(t *testing.T) {
	sys := NewSystem()
	const size = 2
	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	busy := make(chan struct{}, 1)
	var mu sync.Mutex
	var got []any
	ref := sys.Spawn("signalled", size, func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case int, string:
			if m == 0 {
				busy <- struct{}{}
				<-hold
			}
			mu.Lock()
			got = append(got, m)
			mu.Unlock()
		}
	})
	defer ref.Stop()
	defer release() // before Stop, which waits for the handler

	ref.Send(0)
	<-busy
	ref.Send(1)
	ref.Send(2) // the mailbox is full
	signalled := make(chan struct{})
	go func() {
		ref.Signal("s")
		close(signalled)
	}()
	select {
	case <-signalled:
	case <-time.After(10 * time.Second):
		t.Fatal("Signal waited for room in a full mailbox")
	}
	release()
	waitFor(t, "the first four messages", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 4
	})
	// A second actor, busy with a signalled message, still admits exactly
	// size sent messages.
	hold2 := make(chan struct{})
	release2 := sync.OnceFunc(func() { close(hold2) })
	busy2 := make(chan struct{}, 1)
	ref2 := sys.Spawn("signalled-2", size, func(ctx actor.Context) {
		if ctx.Message() == "hold" {
			busy2 <- struct{}{}
			<-hold2
		}
	})
	defer ref2.Stop()
	defer release2()
	ref2.Signal("hold")
	select {
	case <-busy2:
	case <-time.After(10 * time.Second):
		t.Fatal("a signalled message waited for a slot it never took")
	}
	ref2.Send(1)
	ref2.Send(2)
	sent := make(chan struct{})
	go func() {
		ref2.Send(3)
		close(sent)
	}()
	select {
	case <-sent:
		t.Fatalf("Send returned while %d sent messages filled the mailbox behind a signalled one", size)
	case <-time.After(200 * time.Millisecond):
	}
	release2()
	<-sent
	mu.Lock()
	defer mu.Unlock()
	if want := []any{0, 1, 2, "s"}; !slices.Equal(got, want) {
		t.Errorf("handled %v, want %v", got, want)
	}
}

// TestSnapshot checks the statistics /debug/actors shows.
func TestSnapshot(t *testing.T) {
	sys := NewSystem()
	if got := sys.Snapshot(); len(got) != 0 {
		t.Fatalf("Snapshot of a new system = %+v, want empty", got)
	}
	release := make(chan struct{})
	busy := make(chan struct{}, 1)
	var handled atomic.Int64
	ref := sys.Spawn("slow", 0, func(ctx actor.Context) {
		m, ok := ctx.Message().(string)
		if !ok {
			return
		}
		if m == "block" {
			busy <- struct{}{}
			<-release
		}
		if m == "sleep" {
			time.Sleep(20 * time.Millisecond)
		}
		handled.Add(1)
	})
	defer ref.Stop()
	other := sys.Spawn("another", 0, func(actor.Context) {})
	defer other.Stop()

	if _, ok := snapshotOf(t, sys, "slow"); !ok {
		t.Fatal("spawned actor missing from Snapshot")
	}
	// protoactor's Started notice passes through the mailbox too; once it
	// has, an actor that was sent nothing has processed nothing.
	var sn Snapshot
	waitFor(t, "the Started notice to be handled", func() bool {
		sn, _ = snapshotOf(t, sys, "slow")
		return sn.MailboxDepth == 0
	})
	if sn.Processed != 0 || sn.MaxMicros != 0 || sn.MeanMicros != 0 {
		t.Errorf("before any Send: %+v, want nothing processed (lifecycle notices are not traffic)", sn)
	}

	ref.Send("block")
	<-busy
	const queued = 5
	for range queued {
		ref.Send("fast")
	}
	// The message in hand counts until its handling ends: depth is the
	// backlog the actor has yet to get through.
	sn, _ = snapshotOf(t, sys, "slow")
	if sn.MailboxDepth != queued+1 {
		t.Errorf("MailboxDepth while busy = %d, want %d (%d queued + 1 in hand)", sn.MailboxDepth, queued+1, queued)
	}
	if sn.Processed != 0 {
		t.Errorf("Processed while the first message is in hand = %d, want 0", sn.Processed)
	}
	close(release)
	ref.Send("sleep")
	waitFor(t, "all messages handled", func() bool { return handled.Load() == queued+2 })
	waitFor(t, "Processed to catch up", func() bool {
		sn, _ = snapshotOf(t, sys, "slow")
		return sn.Processed == queued+2
	})
	if sn.MailboxDepth != 0 {
		t.Errorf("MailboxDepth after draining = %d, want 0", sn.MailboxDepth)
	}
	if sn.MaxMicros < 20_000 {
		t.Errorf("MaxMicros = %v, want >= 20000 (one message slept 20ms)", sn.MaxMicros)
	}
	if sn.MeanMicros <= 0 || sn.MeanMicros > sn.MaxMicros {
		t.Errorf("MeanMicros = %v, want in (0, MaxMicros=%v]", sn.MeanMicros, sn.MaxMicros)
	}

	names := []string{}
	for _, s := range sys.Snapshot() {
		names = append(names, s.Name)
	}
	if len(names) != 2 || names[0] != "another" || names[1] != "slow" {
		t.Errorf("Snapshot names = %v, want [another slow] (sorted)", names)
	}
}

// TestStop checks that Stop runs the actor's *actor.Stopped handling, waits
// for it, drops the actor from Snapshot and may be called again.
func TestStop(t *testing.T) {
	sys := NewSystem()
	var (
		stoppedRuns atomic.Int32
		afterStop   atomic.Int32
		stopped     atomic.Bool
	)
	ref := sys.Spawn("victim", 0, func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case *actor.Stopped:
			// Slow cleanup: Stop must wait for it.
			time.Sleep(50 * time.Millisecond)
			stoppedRuns.Add(1)
			stopped.Store(true)
		case string:
			if stopped.Load() {
				afterStop.Add(1)
			}
		}
	})
	keep := sys.Spawn("keeper", 0, func(actor.Context) {})
	defer keep.Stop()

	ref.Send("hello")
	ref.Stop()
	if got := stoppedRuns.Load(); got != 1 {
		t.Fatalf("Stopped handled %d times by the time Stop returned, want 1", got)
	}
	if _, ok := snapshotOf(t, sys, "victim"); ok {
		t.Error("stopped actor still in Snapshot")
	}
	if _, ok := snapshotOf(t, sys, "keeper"); !ok {
		t.Error("Stop removed another actor from Snapshot")
	}

	done := make(chan struct{})
	go func() {
		ref.Stop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("second Stop did not return")
	}
	if got := stoppedRuns.Load(); got != 1 {
		t.Errorf("Stopped handled %d times after a second Stop, want 1", got)
	}

	ref.Send("too late") // must not panic or reach the handler
	time.Sleep(20 * time.Millisecond)
	if got := afterStop.Load(); got != 0 {
		t.Errorf("%d messages handled after Stop, want 0", got)
	}
}

// TestStopWaitsForCurrentMessage checks that Stop lets the message being
// handled finish, and that queued messages are dropped.
func TestStopWaitsForCurrentMessage(t *testing.T) {
	sys := NewSystem()
	busy := make(chan struct{})
	release := make(chan struct{})
	var finished, later atomic.Int32
	ref := sys.Spawn("busy", 0, func(ctx actor.Context) {
		switch ctx.Message() {
		case "first":
			close(busy)
			<-release
			finished.Add(1)
		case "queued":
			later.Add(1)
		}
	})
	ref.Send("first")
	<-busy
	ref.Send("queued")
	stopReturned := make(chan struct{})
	go func() {
		ref.Stop()
		close(stopReturned)
	}()
	select {
	case <-stopReturned:
		t.Fatal("Stop returned while the actor was still handling a message")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	select {
	case <-stopReturned:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return after the message finished")
	}
	if finished.Load() != 1 {
		t.Error("the message in hand did not finish")
	}
	if later.Load() != 0 {
		t.Error("a message queued before Stop was handled after it")
	}
}

// TestRespawnAfterStop checks that a name is free again once its actor has
// stopped, and that stopping the old Ref again leaves the new actor listed.
func TestRespawnAfterStop(t *testing.T) {
	sys := NewSystem()
	first := sys.Spawn("raft", 0, func(actor.Context) {})
	first.Stop()
	var got atomic.Int32
	second := sys.Spawn("raft", 0, func(ctx actor.Context) {
		if _, ok := ctx.Message().(string); ok {
			got.Add(1)
		}
	})
	defer second.Stop()
	first.Stop()
	if _, ok := snapshotOf(t, sys, "raft"); !ok {
		t.Fatal("stopping the old Ref again removed the new actor from Snapshot")
	}
	second.Send("x")
	waitFor(t, "the new actor to handle a message", func() bool { return got.Load() == 1 })
	waitFor(t, "Processed to reach 1", func() bool {
		sn, _ := snapshotOf(t, sys, "raft")
		return sn.Processed == 1
	})
}

// TestRegistryIsSmall: an actor system costs little heap of its own (its
// process registry was 2.5 MiB with concurrent-map's default of 32 shards
// per bucket), and its registry finds every one of many actors, each
// answering the message sent to it.
func TestRegistryIsSmall(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := NewSystem()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 512<<10 {
		t.Errorf("a new actor system holds %d bytes of heap, want under 512 KiB", grew)
	}
	const n = 2000
	var got atomic.Int64
	refs := make([]*Ref, n)
	for i := range refs {
		refs[i] = s.Spawn(fmt.Sprintf("a%d", i), 0, func(ctx actor.Context) {
			if v, ok := ctx.Message().(int); ok {
				got.Add(int64(v))
			}
		})
	}
	for i, r := range refs {
		r.Send(i + 1)
	}
	waitFor(t, "every actor's message", func() bool { return got.Load() == n*(n+1)/2 })
	for _, r := range refs {
		r.Stop()
	}
}
