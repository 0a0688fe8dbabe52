package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.etcd.io/etcd/api/v3/authpb"
)

// fuzzPerms splits data into permissions: records of key, range end and
// type separated by 0xff bytes, three fields each; the rest is the query.
func fuzzPerms(data []byte) (perms []*authpb.Permission, key, end []byte) {
	fields := bytes.Split(data, []byte{0xff})
	for len(fields) >= 4 {
		typ := authpb.Permission_Type(0)
		if len(fields[2]) > 0 {
			typ = authpb.Permission_Type(fields[2][0] % 3)
		}
		if validPermission(fields[0], fields[1]) {
			perms = append(perms, &authpb.Permission{PermType: typ, Key: fields[0], RangeEnd: fields[1]})
		}
		fields = fields[3:]
	}
	key = fields[0]
	if len(fields) > 1 {
		end = fields[1]
	}
	return perms, key, end
}

// inInterval is the plain reading of a permission's interval for one key:
// from its key on, below its end, where an empty end is past every key.
func inInterval(k []byte, n interval) bool {
	return compareKeys(n.begin, k) <= 0 && compareKeys(k, n.end) < 0
}

// FuzzPermissions checks the merged permission checks against a plain
// reference for single keys, and for ranges that a covered range's first
// key is covered too; no input may panic.
func FuzzPermissions(f *testing.F) {
	f.Add([]byte("a\xffb\xff\x02\xffa"))
	f.Add([]byte("a\xff\x00\xff\x00\xffzz\xff"))
	f.Add([]byte("foo\xff\xff\x01\xfffoo\xfffop"))
	f.Add([]byte("a\xffc\xff\x02\xffc\xffe\xff\x02\xffa\xffe"))
	f.Add([]byte("\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		perms, key, end := fuzzPerms(data)
		u := &authpb.User{Name: []byte("u"), Roles: []string{"r"}}
		p := mergePerms(u, map[string]*authpb.Role{"r": {Name: []byte("r"), KeyPermission: perms}})
		for _, write := range []bool{false, true} {
			want := false
			for _, perm := range perms {
				rw := perm.PermType == authpb.Permission_READWRITE
				if (write && (rw || perm.PermType == authpb.Permission_WRITE) || !write && (rw || perm.PermType == authpb.Permission_READ)) &&
					inInterval(key, permInterval(perm)) {
					want = true
				}
			}
			if got := p.allows(key, nil, write); got != want {
				t.Fatalf("key %q write=%v: allows %v, reference %v (perms %v)", key, write, got, want, perms)
			}
			if len(end) > 0 && len(key) > 0 && (isOpenEnded(end) || compareKeys(key, end) < 0) &&
				p.allows(key, end, write) && !p.allows(key, nil, write) {
				t.Fatalf("range [%q, %q) write=%v allowed but its first key is not (perms %v)", key, end, write, perms)
			}
		}
	})
}

// FuzzTokenIndex: any string parses or is refused without a panic, and a
// parsed token is "<anything without dots>.<its index in decimal>".
func FuzzTokenIndex(f *testing.F) {
	f.Add("abcdefghijklmnop.12")
	f.Add("x.")
	f.Add("..")
	f.Add("a.18446744073709551616")
	f.Fuzz(func(t *testing.T, token string) {
		index, ok := tokenIndex(token)
		if !ok {
			return
		}
		prefix, digits, found := strings.Cut(token, ".")
		if !found || strings.Contains(prefix, ".") {
			t.Fatalf("%q parsed (index %d) without exactly one dot", token, index)
		}
		if n, err := strconv.ParseUint(digits, 10, 64); err != nil || n != index {
			t.Fatalf("%q parsed as index %d", token, index)
		}
	})
}

// FuzzJWTVerify: whatever a client sends as a JWT, verification neither
// panics nor accepts a token this member's key did not sign: every token
// it accepts names the one user it signed tokens for.
func FuzzJWTVerify(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	tokens := &jwtTokens{cfg: jwtConfig{method: jwt.SigningMethodES256, signKey: key, verifyKey: &key.PublicKey, ttl: time.Hour}}
	signed, err := tokens.sign("", "u", 7)
	if err != nil {
		f.Fatal(err)
	}
	if id, ok := tokens.info(context.Background(), signed, 0, nil); !ok || id.User != "u" || id.Revision != 7 {
		f.Fatalf("the token signed here is not accepted: %+v %v", id, ok)
	}
	f.Add(signed)
	header, rest, _ := strings.Cut(signed, ".")
	claims, sig, _ := strings.Cut(rest, ".")
	f.Add(header + "." + claims + ".")
	f.Add(header + "." + "eyJ1c2VybmFtZSI6InJvb3QiLCJyZXZpc2lvbiI6N30" + "." + sig)
	f.Add("eyJhbGciOiJub25lIn0.eyJ1c2VybmFtZSI6InJvb3QifQ.")
	f.Add("...")
	f.Fuzz(func(t *testing.T, token string) {
		id, ok := tokens.info(context.Background(), token, 0, nil)
		if ok && id.User != "u" {
			t.Fatalf("accepted %q as %q", token, id.User)
		}
	})
}
