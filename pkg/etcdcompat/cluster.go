package etcdcompat

import (
	"context"
	"errors"
	"net/url"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// errBadURLs: a member's peer URLs are missing or malformed.
var errBadURLs = errors.New("given member URLs are invalid")

// clusterServer implements etcd's Cluster service. With auth enabled,
// membership changes need root and MemberList a user, as in etcd.
type clusterServer struct {
	pb.UnimplementedClusterServer
	st Store
	cl Cluster
	// peer: served on the peer server, where MemberList needs no user.
	peer bool
}

// MemberList lists the members; with linearizable set it first waits, as
// etcd does, until this member has applied everything committed before the
// call.
func (s *clusterServer) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	if r.GetLinearizable() {
		if err := s.st.Linearize(ctx); err != nil {
			return nil, toGRPCError(err)
		}
	}
	if !s.peer {
		if err := s.st.RequireIdentity(ctx); err != nil {
			return nil, toGRPCError(err)
		}
	}
	return &pb.MemberListResponse{Header: s.st.ClusterHeader(), Members: s.cl.Members()}, nil
}

// MemberAdd adds a voter or a learner.
func (s *clusterServer) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	if err := checkPeerURLs(r.GetPeerURLs()); err != nil {
		return nil, toGRPCError(err)
	}
	if err := s.st.CheckAdmin(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	m, err := s.cl.AddMember(ctx, r.GetPeerURLs(), r.GetIsLearner())
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.MemberAddResponse{Header: s.st.ClusterHeader(), Member: m, Members: s.cl.Members()}, nil
}

// MemberRemove removes a member.
func (s *clusterServer) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	if err := s.st.CheckAdmin(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	if err := s.cl.RemoveMember(ctx, r.GetID()); err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.MemberRemoveResponse{Header: s.st.ClusterHeader(), Members: s.cl.Members()}, nil
}

// MemberUpdate replaces a member's peer URLs.
func (s *clusterServer) MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	if err := s.st.CheckAdmin(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	if err := checkPeerURLs(r.GetPeerURLs()); err != nil {
		return nil, toGRPCError(err)
	}
	if err := s.cl.UpdateMember(ctx, r.GetID(), r.GetPeerURLs()); err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.MemberUpdateResponse{Header: s.st.ClusterHeader(), Members: s.cl.Members()}, nil
}

// MemberPromote makes a learner a voter.
func (s *clusterServer) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	if err := s.st.CheckAdmin(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	if err := s.cl.PromoteMember(ctx, r.GetID()); err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.MemberPromoteResponse{Header: s.st.ClusterHeader(), Members: s.cl.Members()}, nil
}

// checkPeerURLs accepts what etcd's URL list parser accepts: at least one
// URL, each with an http, https, unix or unixs scheme, a host:port and no
// path.
func checkPeerURLs(urls []string) error {
	if len(urls) == 0 {
		return errBadURLs
	}
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil || u.Path != "" {
			return errBadURLs
		}
		switch u.Scheme {
		case "http", "https":
			if u.Port() == "" || strings.Count(u.Host, ":") == 0 {
				return errBadURLs
			}
		case "unix", "unixs":
		default:
			return errBadURLs
		}
	}
	return nil
}
