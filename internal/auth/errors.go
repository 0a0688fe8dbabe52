package auth

import "errors"

// Sentinel errors of the auth state. Front ends map them to protocol
// errors (pkg/etcdcompat's table).
var (
	// ErrRootUserNotExist: auth cannot be enabled without a root user.
	ErrRootUserNotExist = errors.New("auth: root user does not exist")
	// ErrRootRoleNotExist: auth cannot be enabled while root lacks the
	// root role.
	ErrRootRoleNotExist = errors.New("auth: root user does not have root role")
	// ErrUserAlreadyExist: UserAdd names an existing user.
	ErrUserAlreadyExist = errors.New("auth: user already exists")
	// ErrUserEmpty: a user name is empty, or auth is enabled and the
	// request carries no identity.
	ErrUserEmpty = errors.New("auth: user name is empty")
	// ErrUserNotFound: no user has the name.
	ErrUserNotFound = errors.New("auth: user not found")
	// ErrRoleAlreadyExist: RoleAdd names an existing role.
	ErrRoleAlreadyExist = errors.New("auth: role already exists")
	// ErrRoleNotFound: no role has the name.
	ErrRoleNotFound = errors.New("auth: role not found")
	// ErrRoleEmpty: a role name is empty.
	ErrRoleEmpty = errors.New("auth: role name is empty")
	// ErrPermissionNotGiven: RoleGrantPermission carries no permission.
	ErrPermissionNotGiven = errors.New("auth: permission not given")
	// ErrAuthFailed: unknown user or wrong password.
	ErrAuthFailed = errors.New("auth: authentication failed, invalid user ID or password")
	// ErrNoPasswordUser: a password was given for a user created without
	// one, or a password hash in a request cannot be decoded.
	ErrNoPasswordUser = errors.New("auth: authentication failed, password was given for no password user")
	// ErrPermissionDenied: the user's roles do not allow the request.
	ErrPermissionDenied = errors.New("auth: permission denied")
	// ErrRoleNotGranted: UserRevokeRole names a role the user lacks.
	ErrRoleNotGranted = errors.New("auth: role is not granted to the user")
	// ErrPermissionNotGranted: RoleRevokePermission names a permission the
	// role lacks.
	ErrPermissionNotGranted = errors.New("auth: permission is not granted to the role")
	// ErrAuthNotEnabled: Authenticate while auth is disabled.
	ErrAuthNotEnabled = errors.New("auth: authentication is not enabled")
	// ErrAuthOldRevision: the auth state changed after the request's
	// identity was resolved; the client should retry.
	ErrAuthOldRevision = errors.New("auth: revision in header is old")
	// ErrInvalidAuthToken: the token is malformed, expired or unknown.
	ErrInvalidAuthToken = errors.New("auth: invalid auth token")
	// ErrInvalidAuthMgmt: the change would remove root's powers while auth
	// is enabled, or a permission's range is not valid.
	ErrInvalidAuthMgmt = errors.New("auth: invalid auth management")
	// ErrInvalidAuthOpts: --auth-token names no known token type, is not
	// "type,name=value,...", repeats an option, or has JWT options that
	// cannot be read (sign method, key file, TTL).
	ErrInvalidAuthOpts = errors.New("auth: invalid auth options")
	// ErrMissingKey: --auth-token=jwt names no key for its sign method.
	ErrMissingKey = errors.New("auth: missing key data")
	// ErrKeyMismatch: the JWT public key is not the private key's.
	ErrKeyMismatch = errors.New("auth: public and private keys don't match")
	// ErrVerifyOnly: Authenticate on a member given only a JWT public key,
	// which verifies tokens but cannot sign them.
	ErrVerifyOnly = errors.New("auth: token signing attempted with verify-only key")
)
