package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/storage"
)

// Alarms are replicated state, as in etcd: raised (ACTIVATE) and cleared
// (DEACTIVATE) through raft, applied in log order on every member, kept
// in the Meta bucket and so carried by snapshots. While a NOSPACE alarm is
// active, whichever member raised it, every member refuses the requests
// that grow the database when it applies them; while a CORRUPT alarm is
// active, every write, compaction and lease change. Reads are served as
// usual. Nothing lifts an alarm but a DEACTIVATE: writes do not resume by
// themselves once the database shrinks.

// alarmsPrefix keys each active alarm in the Meta bucket, by member ID in
// 16 hex digits and alarm type in decimal.
const alarmsPrefix = "alarms/"

func alarmKey(member uint64, typ pb.AlarmType) []byte {
	return fmt.Appendf(nil, "%s%016x/%d", alarmsPrefix, member, typ)
}

// AlarmsOf reads the active alarms recorded in r, sorted by member ID and
// then type.
func AlarmsOf(r storage.Reader) []*pb.AlarmMember {
	var out []*pb.AlarmMember
	start, end := []byte(alarmsPrefix), []byte(alarmsPrefix+"\xff")
	_ = r.Iterate(storage.Meta, start, end, false, func(_, v []byte) bool {
		m := &pb.AlarmMember{}
		if proto.Unmarshal(v, m) == nil {
			out = append(out, m)
		}
		return true
	})
	slices.SortFunc(out, compareAlarms)
	return out
}

func compareAlarms(a, b *pb.AlarmMember) int {
	return cmp.Or(cmp.Compare(a.MemberID, b.MemberID), cmp.Compare(a.Alarm, b.Alarm))
}

// Alarm serves etcd's Maintenance.Alarm through raft, GET included, so
// that every action sees the alarms as of its place in the log. GET lists
// the active alarms of type r.Alarm (all with NONE; r.MemberID is not
// looked at, as in etcd). ACTIVATE raises alarm r.Alarm for member
// r.MemberID, whatever the member, and answers with it (NONE raises
// nothing and answers none). DEACTIVATE clears it and answers with it, or
// with none if it was not active. The caller's permission is the front
// end's to check.
func (c *Client) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	res, err := c.propose(ctx, &pb.InternalRaftRequest{Alarm: r})
	if err != nil {
		return nil, err
	}
	resp := res.(*pb.AlarmResponse)
	// etcd's header carries the revision when answered, as Maintenance's do.
	resp.Header = c.header(c.kv.Rev())
	return resp, nil
}

// Alarms returns the active alarms as this member last applied them,
// sorted by member ID and then type, without a raft round trip: for
// Status and the health endpoints.
func (c *Client) Alarms() []*pb.AlarmMember {
	p := c.alarms.Load()
	if p == nil {
		return nil
	}
	out := make([]*pb.AlarmMember, len(*p))
	for i, m := range *p {
		out[i] = &pb.AlarmMember{MemberID: m.MemberID, Alarm: m.Alarm}
	}
	return out
}

// alarmErrors are the active alarms as Status lists them, in etcd's text.
func (c *Client) alarmErrors() []string {
	var out []string
	for _, m := range c.Alarms() {
		out = append(out, m.String())
	}
	return out
}

// quotaCost is etcd's estimate of how much a request grows the database:
// a put costs its key and value and a fixed overhead, a txn its costlier
// branch (nested txns included), a lease grant a fixed overhead; other
// requests cost nothing and are never refused for space.
func quotaCost(r *pb.InternalRaftRequest) int64 {
	switch {
	case r.Put != nil:
		return putCost(r.Put)
	case r.Txn != nil:
		return txnCost(r.Txn)
	case r.LeaseGrant != nil:
		return leaseQuotaOverhead
	}
	return 0
}

// The overheads etcd charges a key's metadata and a lease.
const (
	kvQuotaOverhead    = 256
	leaseQuotaOverhead = 64
)

func putCost(p *pb.PutRequest) int64 { return int64(kvQuotaOverhead + len(p.Key) + len(p.Value)) }

func txnCost(t *pb.TxnRequest) int64 {
	branch := func(ops []*pb.RequestOp) int64 {
		var n int64
		for _, op := range ops {
			switch {
			case op.GetRequestPut() != nil:
				n += putCost(op.GetRequestPut())
			case op.GetRequestTxn() != nil:
				n += txnCost(op.GetRequestTxn())
			}
		}
		return n
	}
	return max(branch(t.Success), branch(t.Failure))
}

// overQuota reports whether a request of the given cost would take the
// database to the quota or past it, as etcd's check does, judged on the
// last sampled size and the cost of what was applied since.
func (c *Client) overQuota(cost int64) bool {
	q := c.cfg.QuotaBackendBytes
	return cost > 0 && q > 0 && c.dbSize.Load()+c.grown.Load()+cost >= q
}

// refreshSize samples the engine's size; besides the periodic sample, it
// is taken once a defragmentation or a compaction may have shrunk the
// engine, because a sample up to a second old would refuse writes (and
// raise the alarm again) once an operator has freed space and disarmed.
// Samples are serialized, so one taken during a defragmentation cannot
// overwrite the one taken after it.
// It returns the size sampled.
func (c *Client) refreshSize() int64 {
	c.sizeMu.Lock()
	defer c.sizeMu.Unlock()
	// Reset first: what is applied from here on counts in grown, and
	// perhaps also in the sample, which errs towards refusing.
	c.grown.Store(0)
	size := c.cfg.Engine.Stats().SizeBytes
	c.dbSize.Store(size)
	return size
}

// refreshSizeAfter refreshes the size sample once done (a compaction's
// removal of old revisions) is closed; nil does nothing.
func (c *Client) refreshSizeAfter(done <-chan struct{}) {
	if done == nil {
		return
	}
	go func() {
		select {
		case <-done:
			c.refreshSize()
		case <-c.stop:
		}
	}()
}

// raiseNoSpace proposes this member's NOSPACE alarm, as etcd does when a
// request would exceed the quota, unless it is active already; while one
// proposal is in flight no other is made. It returns a channel closed once
// the proposal is done (nil if none is needed), for a refused request to
// wait on so that the alarm is listed once the refusal is answered, as in
// etcd.
func (c *Client) raiseNoSpace() <-chan struct{} {
	if c.alarmActive(c.cfg.MemberID, pb.AlarmType_NOSPACE) {
		return nil
	}
	c.raiseMu.Lock()
	defer c.raiseMu.Unlock()
	if c.raising != nil {
		return c.raising
	}
	done := make(chan struct{})
	c.raising = done
	c.cfg.Logger.Warn("database space exceeded; raising the NOSPACE alarm",
		zap.Int64("quota-size-bytes", c.cfg.QuotaBackendBytes), zap.Int64("size-bytes", c.dbSize.Load()))
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.RequestTimeout)
		defer cancel()
		_, err := c.Alarm(ctx, &pb.AlarmRequest{
			Action: pb.AlarmRequest_ACTIVATE, MemberID: c.cfg.MemberID, Alarm: pb.AlarmType_NOSPACE,
		})
		if err != nil {
			// The next refused request tries again.
			c.cfg.Logger.Warn("failed to raise the NOSPACE alarm", zap.Error(err))
		}
		c.raiseMu.Lock()
		c.raising = nil
		c.raiseMu.Unlock()
		close(done)
	}()
	return done
}

// refuseNoSpace raises this member's NOSPACE alarm and returns ErrNoSpace
// once the alarm is applied here or ctx ends, for a request refused
// before it was proposed.
func (c *Client) refuseNoSpace(ctx context.Context) error {
	if done := c.raiseNoSpace(); done != nil {
		select {
		case <-done:
		case <-ctx.Done():
		}
	}
	return ErrNoSpace
}

// alarmActive reports whether member's alarm of type typ is active, as
// last applied (member 0: any member's).
func (c *Client) alarmActive(member uint64, typ pb.AlarmType) bool {
	p := c.alarms.Load()
	if p == nil {
		return false
	}
	return slices.ContainsFunc(*p, func(m *pb.AlarmMember) bool {
		return m.Alarm == typ && (member == 0 || m.MemberID == member)
	})
}

// The actor's side: a.alarms is the alarm list as staged, which decides
// the requests staged after it in the same batch; it is published to the
// client (c.alarms) once the batch commits. The list is never modified in
// place, so a published one can be read on any goroutine.

// loadAlarms reads the alarms from the engine into the actor and
// publishes them: at start and after a snapshot was restored.
func (a *storeActor) loadAlarms() {
	a.alarms = AlarmsOf(a.c.cfg.Engine)
	a.alarmsStaged = true
	a.publishAlarms()
}

// publishAlarms makes the staged alarm list the client's, after a commit.
func (a *storeActor) publishAlarms() {
	if !a.alarmsStaged {
		return
	}
	a.alarmsStaged = false
	list := a.alarms
	a.c.alarms.Store(&list)
}

func (a *storeActor) stagedAlarm(typ pb.AlarmType) bool {
	return slices.ContainsFunc(a.alarms, func(m *pb.AlarmMember) bool { return m.Alarm == typ })
}

// alarmRefusal is what the active alarms make of request r when it is
// applied, as etcd's appliers do: under CORRUPT, writes, compactions and
// lease grants and revokes fail with ErrCorrupt; under NOSPACE, puts,
// txns with a put in either branch and lease grants fail with ErrNoSpace.
// Every member applies the same entries with the same alarms, so all
// agree.
func (a *storeActor) alarmRefusal(r *pb.InternalRaftRequest) error {
	if len(a.alarms) == 0 {
		return nil
	}
	if a.stagedAlarm(pb.AlarmType_CORRUPT) && (r.Put != nil || r.DeleteRange != nil || r.Txn != nil ||
		r.Compaction != nil || r.LeaseGrant != nil || r.LeaseRevoke != nil) {
		return ErrCorrupt
	}
	if a.stagedAlarm(pb.AlarmType_NOSPACE) && quotaCost(r) > 0 {
		return ErrNoSpace
	}
	return nil
}

// overQuotaAtApply is etcd's second quota check, made as an entry that
// grows the database is applied (and before): the entry applies, but its
// proposer is answered ErrNoSpace and this member raises its alarm.
func (a *storeActor) overQuotaAtApply(r *pb.InternalRaftRequest) bool {
	return !a.stagedAlarm(pb.AlarmType_NOSPACE) && a.c.overQuota(quotaCost(r))
}

// stageAlarm applies an Alarm entry.
func (a *storeActor) stageAlarm(ap *mvcc.Applier, index uint64, r *pb.AlarmRequest) result {
	resp := &pb.AlarmResponse{}
	i, found := slices.BinarySearchFunc(a.alarms, &pb.AlarmMember{MemberID: r.MemberID, Alarm: r.Alarm}, compareAlarms)
	switch r.Action {
	case pb.AlarmRequest_GET:
		for _, m := range a.alarms {
			if r.Alarm == pb.AlarmType_NONE || m.Alarm == r.Alarm {
				resp.Alarms = append(resp.Alarms, &pb.AlarmMember{MemberID: m.MemberID, Alarm: m.Alarm})
			}
		}
	case pb.AlarmRequest_ACTIVATE:
		if r.Alarm == pb.AlarmType_NONE {
			break
		}
		m := &pb.AlarmMember{MemberID: r.MemberID, Alarm: r.Alarm}
		resp.Alarms = []*pb.AlarmMember{{MemberID: m.MemberID, Alarm: m.Alarm}}
		if found {
			break
		}
		b, err := proto.Marshal(m)
		if err != nil {
			ap.SetApplied(index)
			return result{err: err}
		}
		ap.SetMeta(index, alarmKey(m.MemberID, m.Alarm), b)
		a.alarms = slices.Insert(slices.Clone(a.alarms), i, m)
		a.alarmsStaged = true
		a.lg.Warn("alarm raised", zap.String("member-id", fmt.Sprintf("%x", m.MemberID)), zap.Stringer("alarm", m.Alarm))
		return result{resp: resp}
	case pb.AlarmRequest_DEACTIVATE:
		if !found {
			break
		}
		ap.DeleteMeta(index, alarmKey(r.MemberID, r.Alarm))
		a.alarms = slices.Delete(slices.Clone(a.alarms), i, i+1)
		a.alarmsStaged = true
		resp.Alarms = []*pb.AlarmMember{{MemberID: r.MemberID, Alarm: r.Alarm}}
		a.lg.Info("alarm cleared", zap.String("member-id", fmt.Sprintf("%x", r.MemberID)), zap.Stringer("alarm", r.Alarm))
		return result{resp: resp}
	}
	ap.SetApplied(index)
	return result{resp: resp}
}
