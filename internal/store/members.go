package store

import (
	"context"
	"fmt"
	"strconv"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/membershippb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/storage"
)

// memberAttrsPrefix keys each member's published attributes in the Meta
// bucket, by its ID in 16 hex digits: replicated state, as in etcd, so
// every member lists every other's name and client URLs.
const memberAttrsPrefix = "members/attrs/"

func memberAttrsKey(id uint64) []byte {
	return fmt.Appendf(nil, "%s%016x", memberAttrsPrefix, id)
}

// setMemberAttrs applies a member's published attributes.
func (a *storeActor) setMemberAttrs(ap *mvcc.Applier, index uint64, r *membershippb.ClusterMemberAttrSetRequest) {
	b, err := proto.Marshal(r.GetMemberAttributes())
	if err != nil {
		a.lg.Warn("cannot encode member attributes", zap.Error(err))
		ap.SetApplied(index)
		return
	}
	ap.SetMeta(index, memberAttrsKey(r.GetMember_ID()), b)
}

// PublishMember records this member's name and client URLs through raft,
// as etcd's members publish theirs once started, so that every member
// lists them.
func (c *Client) PublishMember(ctx context.Context, id uint64, name string, clientURLs []string) error {
	_, err := c.propose(ctx, &pb.InternalRaftRequest{ClusterMemberAttrSet: &membershippb.ClusterMemberAttrSetRequest{
		Member_ID:        id,
		MemberAttributes: &membershippb.Attributes{Name: name, ClientUrls: clientURLs},
	}})
	return err
}

// MemberAttrs returns the attributes every member has published, by ID.
func (c *Client) MemberAttrs() map[uint64]*membershippb.Attributes {
	out := make(map[uint64]*membershippb.Attributes)
	start := []byte(memberAttrsPrefix)
	end := []byte(memberAttrsPrefix + "\xff")
	_ = c.cfg.Engine.Iterate(storage.Meta, start, end, false, func(k, v []byte) bool {
		id, err := strconv.ParseUint(string(k[len(start):]), 16, 64)
		attrs := &membershippb.Attributes{}
		if err == nil && proto.Unmarshal(v, attrs) == nil {
			out[id] = attrs
		}
		return true
	})
	return out
}
