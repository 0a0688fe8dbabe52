package server

import (
	"crypto/sha1"
	"encoding/binary"
	"net/url"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
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

// staticCluster is the membership given by --initial-cluster. Membership
// changes are not supported yet, so it never changes while the member runs.
type staticCluster struct {
	members []*pb.Member
}

// Members implements etcdcompat.Cluster; it returns copies.
func (c *staticCluster) Members() []*pb.Member {
	out := make([]*pb.Member, 0, len(c.members))
	for _, m := range c.members {
		out = append(out, &pb.Member{
			ID:         m.ID,
			Name:       m.Name,
			PeerURLs:   append([]string(nil), m.PeerURLs...),
			ClientURLs: append([]string(nil), m.ClientURLs...),
			IsLearner:  m.IsLearner,
		})
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
