package server

import (
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/cairn-kv/cairn/internal/config"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/membershippb"
)

// memberID derives a member's ID from its peer URLs and the cluster token,
// so every member computes the same IDs for the same --initial-cluster (the
// scheme etcd uses for its initial members).
func memberID(peerURLs []url.URL, token string) uint64 {
	urls := make([]string, 0, len(peerURLs))
	for _, u := range peerURLs {
		urls = append(urls, u.String())
	}
	sort.Strings(urls)
	h := sha1.New()
	for _, u := range urls {
		h.Write([]byte(u))
	}
	h.Write([]byte(token))
	return binary.BigEndian.Uint64(h.Sum(nil)[:8])
}

// clusterIDOf derives the cluster ID from the sorted member IDs.
func clusterIDOf(ids []uint64) uint64 {
	sorted := append([]uint64(nil), ids...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	h := sha1.New()
	var b [8]byte
	for _, id := range sorted {
		binary.BigEndian.PutUint64(b[:], id)
		h.Write(b[:])
	}
	return binary.BigEndian.Uint64(h.Sum(nil)[:8])
}

// initialMembers returns the members --initial-cluster names, with the IDs
// etcd gives them, sorted by ID. This member must be one of them.
func initialMembers(cfg *config.Config) ([]*pb.Member, error) {
	self, ok := cfg.InitialCluster[cfg.Name]
	if !ok {
		return nil, fmt.Errorf("--initial-cluster has no member named %q (--name)", cfg.Name)
	}
	if !sameURLs(self, cfg.InitialAdvertisePeerURLs) {
		return nil, fmt.Errorf("--initial-cluster has %s=%s but --initial-advertise-peer-urls is %s",
			cfg.Name, strings.Join(urlStrings(self), ","), strings.Join(urlStrings(cfg.InitialAdvertisePeerURLs), ","))
	}
	var members []*pb.Member
	seen := make(map[uint64]string)
	for name, urls := range cfg.InitialCluster {
		id := memberID(urls, cfg.InitialClusterToken)
		if other, dup := seen[id]; dup {
			return nil, fmt.Errorf("--initial-cluster: members %q and %q have the same peer URLs", other, name)
		}
		seen[id] = name
		members = append(members, &pb.Member{ID: id, Name: name, PeerURLs: urlStrings(urls)})
	}
	sort.Slice(members, func(i, j int) bool { return members[i].ID < members[j].ID })
	return members, nil
}

// sameURLs reports whether a and b hold the same URLs, in any order.
func sameURLs(a, b []url.URL) bool {
	as, bs := urlStrings(a), urlStrings(b)
	sort.Strings(as)
	sort.Strings(bs)
	return slices.Equal(as, bs)
}

// staticCluster is the membership given by --initial-cluster, with the
// names and client URLs members have published through raft (see
// store.Client.PublishMember). Membership changes are not supported yet,
// so the set of members never changes while the member runs.
type staticCluster struct {
	members []*pb.Member
	// published returns the attributes published so far; nil before the
	// store starts.
	published func() map[uint64]*membershippb.Attributes
}

// Members implements etcdcompat.Cluster; it returns copies.
func (c *staticCluster) Members() []*pb.Member {
	var attrs map[uint64]*membershippb.Attributes
	if c.published != nil {
		attrs = c.published()
	}
	out := make([]*pb.Member, 0, len(c.members))
	for _, m := range c.members {
		cp := &pb.Member{
			ID:         m.ID,
			Name:       m.Name,
			PeerURLs:   append([]string(nil), m.PeerURLs...),
			ClientURLs: append([]string(nil), m.ClientURLs...),
			IsLearner:  m.IsLearner,
		}
		if a := attrs[m.ID]; a != nil {
			cp.Name, cp.ClientURLs = a.GetName(), append([]string(nil), a.GetClientUrls()...)
		}
		out = append(out, cp)
	}
	return out
}

func urlStrings(us []url.URL) []string {
	out := make([]string, 0, len(us))
	for _, u := range us {
		out = append(out, u.String())
	}
	return out
}
