package etcdcompat

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// Auth is etcd's auth service as the API needs it; *store.Client
// implements it. Errors are package auth's and the store's sentinels.
type Auth interface {
	// Authenticate checks a password and returns a new simple token.
	Authenticate(ctx context.Context, r *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error)
	// UserAdd and UserChangePassword hash the password before proposing.
	UserAdd(ctx context.Context, r *pb.AuthUserAddRequest) (*pb.AuthUserAddResponse, error)
	UserChangePassword(ctx context.Context, r *pb.AuthUserChangePasswordRequest) (*pb.AuthUserChangePasswordResponse, error)
	// AuthRequest applies any other auth request and returns its
	// response, whose type is the request's.
	AuthRequest(ctx context.Context, r *pb.InternalRaftRequest) (proto.Message, error)
}

// authServer implements etcd's Auth service.
type authServer struct {
	pb.UnimplementedAuthServer
	a Auth
}

// authDo applies r and returns its response as an R.
func authDo[R proto.Message](ctx context.Context, a Auth, r *pb.InternalRaftRequest) (R, error) {
	resp, err := a.AuthRequest(ctx, r)
	if err != nil {
		var zero R
		return zero, toGRPCError(err)
	}
	return resp.(R), nil
}

func (s *authServer) AuthEnable(ctx context.Context, r *pb.AuthEnableRequest) (*pb.AuthEnableResponse, error) {
	return authDo[*pb.AuthEnableResponse](ctx, s.a, &pb.InternalRaftRequest{AuthEnable: r})
}

func (s *authServer) AuthDisable(ctx context.Context, r *pb.AuthDisableRequest) (*pb.AuthDisableResponse, error) {
	return authDo[*pb.AuthDisableResponse](ctx, s.a, &pb.InternalRaftRequest{AuthDisable: r})
}

func (s *authServer) AuthStatus(ctx context.Context, r *pb.AuthStatusRequest) (*pb.AuthStatusResponse, error) {
	return authDo[*pb.AuthStatusResponse](ctx, s.a, &pb.InternalRaftRequest{AuthStatus: r})
}

func (s *authServer) Authenticate(ctx context.Context, r *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	resp, err := s.a.Authenticate(ctx, r)
	return resp, toGRPCError(err)
}

func (s *authServer) UserAdd(ctx context.Context, r *pb.AuthUserAddRequest) (*pb.AuthUserAddResponse, error) {
	resp, err := s.a.UserAdd(ctx, r)
	return resp, toGRPCError(err)
}

func (s *authServer) UserGet(ctx context.Context, r *pb.AuthUserGetRequest) (*pb.AuthUserGetResponse, error) {
	return authDo[*pb.AuthUserGetResponse](ctx, s.a, &pb.InternalRaftRequest{AuthUserGet: r})
}

func (s *authServer) UserList(ctx context.Context, r *pb.AuthUserListRequest) (*pb.AuthUserListResponse, error) {
	return authDo[*pb.AuthUserListResponse](ctx, s.a, &pb.InternalRaftRequest{AuthUserList: r})
}

func (s *authServer) UserDelete(ctx context.Context, r *pb.AuthUserDeleteRequest) (*pb.AuthUserDeleteResponse, error) {
	return authDo[*pb.AuthUserDeleteResponse](ctx, s.a, &pb.InternalRaftRequest{AuthUserDelete: r})
}

func (s *authServer) UserChangePassword(ctx context.Context, r *pb.AuthUserChangePasswordRequest) (*pb.AuthUserChangePasswordResponse, error) {
	resp, err := s.a.UserChangePassword(ctx, r)
	return resp, toGRPCError(err)
}

func (s *authServer) UserGrantRole(ctx context.Context, r *pb.AuthUserGrantRoleRequest) (*pb.AuthUserGrantRoleResponse, error) {
	return authDo[*pb.AuthUserGrantRoleResponse](ctx, s.a, &pb.InternalRaftRequest{AuthUserGrantRole: r})
}

func (s *authServer) UserRevokeRole(ctx context.Context, r *pb.AuthUserRevokeRoleRequest) (*pb.AuthUserRevokeRoleResponse, error) {
	return authDo[*pb.AuthUserRevokeRoleResponse](ctx, s.a, &pb.InternalRaftRequest{AuthUserRevokeRole: r})
}

func (s *authServer) RoleAdd(ctx context.Context, r *pb.AuthRoleAddRequest) (*pb.AuthRoleAddResponse, error) {
	return authDo[*pb.AuthRoleAddResponse](ctx, s.a, &pb.InternalRaftRequest{AuthRoleAdd: r})
}

func (s *authServer) RoleGet(ctx context.Context, r *pb.AuthRoleGetRequest) (*pb.AuthRoleGetResponse, error) {
	return authDo[*pb.AuthRoleGetResponse](ctx, s.a, &pb.InternalRaftRequest{AuthRoleGet: r})
}

func (s *authServer) RoleList(ctx context.Context, r *pb.AuthRoleListRequest) (*pb.AuthRoleListResponse, error) {
	return authDo[*pb.AuthRoleListResponse](ctx, s.a, &pb.InternalRaftRequest{AuthRoleList: r})
}

func (s *authServer) RoleDelete(ctx context.Context, r *pb.AuthRoleDeleteRequest) (*pb.AuthRoleDeleteResponse, error) {
	return authDo[*pb.AuthRoleDeleteResponse](ctx, s.a, &pb.InternalRaftRequest{AuthRoleDelete: r})
}

func (s *authServer) RoleGrantPermission(ctx context.Context, r *pb.AuthRoleGrantPermissionRequest) (*pb.AuthRoleGrantPermissionResponse, error) {
	return authDo[*pb.AuthRoleGrantPermissionResponse](ctx, s.a, &pb.InternalRaftRequest{AuthRoleGrantPermission: r})
}

func (s *authServer) RoleRevokePermission(ctx context.Context, r *pb.AuthRoleRevokePermissionRequest) (*pb.AuthRoleRevokePermissionResponse, error) {
	return authDo[*pb.AuthRoleRevokePermissionResponse](ctx, s.a, &pb.InternalRaftRequest{AuthRoleRevokePermission: r})
}
