package actors

import (
	"fmt"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
)

// BenchmarkPingPong times one message to an idle actor and its reply: the
// dispatch cost a request pays at every actor hop on a lightly loaded
// member.
func BenchmarkPingPong(b *testing.B) {
	for _, mailbox := range []int{0, 1024} {
		b.Run(fmt.Sprintf("mailbox=%d", mailbox), func(b *testing.B) {
			sys := NewSystem()
			ref := sys.Spawn("pong", mailbox, func(ctx actor.Context) {
				if ch, ok := ctx.Message().(chan struct{}); ok {
					ch <- struct{}{}
				}
			})
			defer ref.Stop()
			ch := make(chan struct{}, 1)
			b.ReportAllocs()
			for b.Loop() {
				ref.Send(ch)
				<-ch
			}
		})
	}
}

// BenchmarkStream times one-way messages from several senders to one
// actor, as watch fan-out and proposals reach the stream and raft actors.
func BenchmarkStream(b *testing.B) {
	for _, mailbox := range []int{0, 1024} {
		b.Run(fmt.Sprintf("mailbox=%d", mailbox), func(b *testing.B) {
			sys := NewSystem()
			done := make(chan struct{})
			want := 0
			n := 0
			ref := sys.Spawn("sink", mailbox, func(ctx actor.Context) {
				if _, ok := ctx.Message().(int); ok {
					n++
					if n == want {
						close(done)
					}
				}
			})
			defer ref.Stop()
			want = b.N
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ref.Send(1)
				}
			})
			<-done
		})
	}
}
