package auth

import (
	"bytes"
	"sort"

	"go.etcd.io/etcd/api/v3/authpb"
)

// Key ranges here order keys as etcd's permission checks do: the empty
// key sorts after every other, so that an interval ending in it is open
// ended. A permission on one key covers [key, key+"\x00"); one whose range
// end is "\x00" covers every key from its key on.

// interval is a half-open key interval [begin, end) in that order.
type interval struct{ begin, end []byte }

// compareKeys orders keys with the empty key last.
func compareKeys(a, b []byte) int {
	switch {
	case len(a) == 0 && len(b) == 0:
		return 0
	case len(a) == 0:
		return 1
	case len(b) == 0:
		return -1
	}
	return bytes.Compare(a, b)
}

// overlaps is etcd's overlap test of a query q with a permission n,
// including its answer for a query whose end precedes its begin.
func overlaps(q, n interval) bool {
	return compareKeys(q.begin, n.end) < 0 &&
		(compareKeys(q.begin, n.begin) >= 0 || compareKeys(q.end, n.begin) > 0)
}

// pointInterval is the interval of the single key k.
func pointInterval(k []byte) interval {
	end := make([]byte, len(k)+1)
	copy(end, k)
	return interval{begin: k, end: end}
}

// isOpenEnded reports whether a range end means "every key from the
// range's key on".
func isOpenEnded(end []byte) bool { return len(end) == 1 && end[0] == 0 }

// permInterval is the interval a permission covers.
func permInterval(p *authpb.Permission) interval {
	switch {
	case len(p.RangeEnd) == 0:
		return pointInterval(p.Key)
	case isOpenEnded(p.RangeEnd):
		return interval{begin: p.Key}
	default:
		return interval{begin: p.Key, end: p.RangeEnd}
	}
}

// validPermission is etcd's check of a permission's range when granted: a
// key, and a range end that is empty, after the key, or "\x00".
func validPermission(key, end []byte) bool {
	if len(key) == 0 {
		return false
	}
	return len(end) == 0 || compareKeys(key, end) < 0 || isOpenEnded(end)
}

// userPerms are the merged permissions of a user's roles, each list sorted
// by interval begin.
type userPerms struct{ read, write []interval }

func mergePerms(u *authpb.User, roles map[string]*authpb.Role) *userPerms {
	p := &userPerms{}
	for _, name := range u.Roles {
		r := roles[name]
		if r == nil {
			continue
		}
		for _, perm := range r.KeyPermission {
			ivl := permInterval(perm)
			switch perm.PermType {
			case authpb.Permission_READWRITE:
				p.read = append(p.read, ivl)
				p.write = append(p.write, ivl)
			case authpb.Permission_READ:
				p.read = append(p.read, ivl)
			case authpb.Permission_WRITE:
				p.write = append(p.write, ivl)
			}
		}
	}
	for _, l := range [][]interval{p.read, p.write} {
		sort.SliceStable(l, func(i, j int) bool { return compareKeys(l[i].begin, l[j].begin) < 0 })
	}
	return p
}

// allows reports whether the permissions cover key (end empty) or the
// whole range [key, end) (end "\x00": every key from key on).
func (p *userPerms) allows(key, end []byte, write bool) bool {
	perms := p.read
	if write {
		perms = p.write
	}
	if len(end) == 0 {
		q := pointInterval(key)
		for _, n := range perms {
			if overlaps(q, n) {
				return true
			}
		}
		return false
	}
	q := interval{begin: key, end: end}
	if isOpenEnded(end) {
		q.end = nil
	}
	return covers(perms, q)
}

// covers reports whether the permissions that overlap q leave no gap and
// reach from q's begin to its end.
func covers(perms []interval, q interval) bool {
	var minBegin, maxEnd []byte
	found := false
	for _, n := range perms {
		if !overlaps(q, n) {
			continue
		}
		if !found {
			minBegin, maxEnd, found = n.begin, n.end, true
			continue
		}
		if compareKeys(maxEnd, n.begin) < 0 {
			return false
		}
		if compareKeys(n.end, maxEnd) > 0 {
			maxEnd = n.end
		}
	}
	return found && compareKeys(maxEnd, q.end) >= 0 && compareKeys(minBegin, q.begin) <= 0
}
