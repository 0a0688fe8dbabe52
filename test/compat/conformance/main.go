// Command conformance checks that an etcd v3 endpoint behaves as etcd
// 3.7 does, through the official clientv3 SDK: the cases etcd users rely on
// most, each asserted field by field. Pointed at etcd it proves the
// expectations are etcd's; pointed at Cairn it proves Cairn meets them.
//
//	go run ./test/compat/conformance --endpoints 127.0.0.1:2379 [--report FILE] [--run REGEXP]
//
// It prints "PASS name" or "FAIL name: why" per case and a closing
// "N passed, M failed" line, writes a Markdown report when asked, and exits
// with status 1 when any case fails (2 on bad usage).
//
// The cases write under a key prefix of their own; the compaction case
// compacts the whole key space, and the auth case enables auth for a
// moment, so point it at a cluster with no other users.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// env is what every case gets: a client, the endpoints (for clients of
// its own) and a key prefix no other run uses.
type env struct {
	cli       *clientv3.Client
	endpoints []string
	prefix    string
}

// key returns the run's key for name.
func (e *env) key(name string) string { return e.prefix + name }

// newClient dials the endpoints, as user when user is not empty.
func (e *env) newClient(user, password string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints: e.endpoints, DialTimeout: 5 * time.Second,
		Username: user, Password: password, Logger: zap.NewNop(),
	})
}

// testCase is one named check; it returns why it failed, or nil.
type testCase struct {
	name string
	run  func(ctx context.Context, e *env) error
}

var cases = []testCase{
	{"put-get", putGet},
	{"txn", txn},
	{"lease-expiry", leaseExpiry},
	{"watch", watchNext},
	{"range", ranges},
	{"delete-prev-kv", deletePrevKV},
	{"compaction", compaction},
	{"watch-history", watchHistory},
	{"lease-keepalive-ttl-revoke", leaseLifecycle},
	{"mutex-election", mutexElection},
	{"stm", stm},
	{"auth", authUserRole},
	{"member-list-status", memberListStatus},
	{"snapshot-save", snapshotSave},
}

// result is a case's outcome, for the report.
type result struct {
	name string
	err  error
	took time.Duration
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("conformance", flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoints := fs.String("endpoints", "127.0.0.1:2379", "comma-separated etcd endpoints (host:port)")
	report := fs.String("report", "", "write a Markdown report to this file")
	only := fs.String("run", "", "run only the cases whose name matches this regular expression")
	title := fs.String("title", "", "what the endpoints are, for the report's title")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	filter, err := regexp.Compile(*only)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	e := &env{endpoints: strings.Split(*endpoints, ","), prefix: fmt.Sprintf("compat-%d/", time.Now().UnixNano())}
	if e.cli, err = e.newClient("", ""); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	defer e.cli.Close()
	var results []result
	failed := 0
	for _, c := range cases {
		if !filter.MatchString(c.name) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		start := time.Now()
		err := c.run(ctx, e)
		cancel()
		results = append(results, result{c.name, err, time.Since(start)})
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "FAIL %s: %v\n", c.name, err)
		} else {
			fmt.Fprintf(stdout, "PASS %s\n", c.name)
		}
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", len(results)-failed, failed)
	if *report != "" {
		if err := writeReport(*report, *title, *endpoints, results); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
	}
	if failed > 0 {
		return 1
	}
	return 0
}

func writeReport(path, title, endpoints string, results []result) error {
	var b strings.Builder
	if title == "" {
		title = endpoints
	}
	fmt.Fprintf(&b, "# Conformance: %s\n\nEndpoints `%s`, %s.\n\n| case | result | time |\n|---|---|---|\n",
		title, endpoints, time.Now().UTC().Format(time.RFC3339))
	failed := 0
	for _, r := range results {
		outcome := "PASS"
		if r.err != nil {
			failed++
			outcome = "FAIL: " + strings.ReplaceAll(r.err.Error(), "|", `\|`)
		}
		fmt.Fprintf(&b, "| %s | %s | %.1f s |\n", r.name, outcome, r.took.Seconds())
	}
	fmt.Fprintf(&b, "\n%d passed, %d failed\n", len(results)-failed, failed)
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// check returns an error built from format when ok is false.
func check(ok bool, format string, args ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf(format, args...)
}

func putGet(ctx context.Context, e *env) error {
	k := e.key("foo")
	put, err := e.cli.Put(ctx, k, "v1")
	if err != nil {
		return err
	}
	get, err := e.cli.Get(ctx, k)
	if err != nil {
		return err
	}
	if len(get.Kvs) != 1 || get.Count != 1 {
		return fmt.Errorf("get %s: %d kvs, count %d", k, len(get.Kvs), get.Count)
	}
	kv := get.Kvs[0]
	return errors.Join(
		check(string(kv.Value) == "v1", "value %q, want v1", kv.Value),
		check(kv.Version == 1, "version %d, want 1", kv.Version),
		check(kv.CreateRevision == put.Header.Revision && kv.ModRevision == put.Header.Revision,
			"create/mod revision %d/%d, want the put's %d", kv.CreateRevision, kv.ModRevision, put.Header.Revision),
		check(get.Header.Revision >= put.Header.Revision, "read revision %d before the put's %d", get.Header.Revision, put.Header.Revision),
	)
}

func txn(ctx context.Context, e *env) error {
	k := e.key("foo")
	if _, err := e.cli.Put(ctx, k, "v1"); err != nil {
		return err
	}
	resp, err := e.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(k), "=", "v1")).
		Then(clientv3.OpPut(k, "v2")).
		Else(clientv3.OpPut(k, "v3")).
		Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded || len(resp.Responses) != 1 || resp.Responses[0].GetResponsePut() == nil {
		return fmt.Errorf("txn: succeeded %v, responses %v; want the then branch's one put", resp.Succeeded, resp.Responses)
	}
	if got := resp.Responses[0].GetResponsePut().Header; got != nil && got.Revision != resp.Header.Revision {
		return fmt.Errorf("put response revision %d, txn's %d", got.Revision, resp.Header.Revision)
	}
	get, err := e.cli.Get(ctx, k)
	if err != nil {
		return err
	}
	return check(len(get.Kvs) == 1 && string(get.Kvs[0].Value) == "v2" && get.Kvs[0].ModRevision == resp.Header.Revision,
		"after the txn %s is %v, want v2 at revision %d", k, get.Kvs, resp.Header.Revision)
}

func leaseExpiry(ctx context.Context, e *env) error {
	l, err := e.cli.Grant(ctx, 5)
	if err != nil {
		return err
	}
	if l.TTL != 5 {
		return fmt.Errorf("granted TTL %d, want 5", l.TTL)
	}
	k := e.key("bar")
	if _, err := e.cli.Put(ctx, k, "leased", clientv3.WithLease(l.ID)); err != nil {
		return err
	}
	time.Sleep(6 * time.Second)
	get, err := e.cli.Get(ctx, k)
	if err != nil {
		return err
	}
	ttl, err := e.cli.TimeToLive(ctx, l.ID)
	if err != nil {
		return err
	}
	return errors.Join(
		check(get.Count == 0, "%s still exists 6 s after its 5 s lease was granted", k),
		check(ttl.TTL == -1, "TimeToLive of the expired lease: TTL %d, want -1", ttl.TTL),
	)
}

func watchNext(ctx context.Context, e *env) error {
	k := e.key("watched")
	cur, err := e.cli.Get(ctx, k)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := e.cli.Watch(wctx, k, clientv3.WithRev(cur.Header.Revision+1))
	put, err := e.cli.Put(ctx, k, "w")
	if err != nil {
		return err
	}
	select {
	case wr, ok := <-wch:
		if !ok || wr.Err() != nil || len(wr.Events) != 1 {
			return fmt.Errorf("watch response %+v (open %v): want one event", wr, ok)
		}
		ev := wr.Events[0]
		return check(ev.Type == mvccpb.PUT && string(ev.Kv.Key) == k && string(ev.Kv.Value) == "w" &&
			ev.Kv.ModRevision == put.Header.Revision && ev.Kv.Version == 1,
			"event %v %q=%q at %d (version %d), want PUT %q=w at %d", ev.Type, ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision, ev.Kv.Version, k, put.Header.Revision)
	case <-ctx.Done():
		return errors.New("no event")
	}
}

func ranges(ctx context.Context, e *env) error {
	p := e.key("r/")
	var revs []int64
	for _, s := range []string{"a", "b", "c", "d", "e"} {
		r, err := e.cli.Put(ctx, p+s, "1"+s)
		if err != nil {
			return err
		}
		revs = append(revs, r.Header.Revision)
	}
	if _, err := e.cli.Put(ctx, p+"a", "2a"); err != nil {
		return err
	}
	var errs []error
	r, err := e.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithLimit(2), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
	if err != nil {
		return err
	}
	errs = append(errs, check(r.Count == 5 && r.More && len(r.Kvs) == 2 && string(r.Kvs[0].Key) == p+"e" && string(r.Kvs[1].Key) == p+"d",
		"prefix, limit 2, by key descending: count %d, more %v, %d kvs %v; want e, d of 5, more", r.Count, r.More, len(r.Kvs), keysOf(r.Kvs)))
	r, err = e.cli.Get(ctx, p+"b", clientv3.WithRange(p+"d"))
	if err != nil {
		return err
	}
	errs = append(errs, check(fmt.Sprint(keysOf(r.Kvs)) == fmt.Sprint([]string{p + "b", p + "c"}), "range [b, d): %v", keysOf(r.Kvs)))
	r, err = e.cli.Get(ctx, p+"a", clientv3.WithRev(revs[0]))
	if err != nil {
		return err
	}
	errs = append(errs, check(len(r.Kvs) == 1 && string(r.Kvs[0].Value) == "1a" && r.Kvs[0].Version == 1,
		"a at revision %d: %v, want the first value", revs[0], r.Kvs))
	r, err = e.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return err
	}
	errs = append(errs, check(r.Count == 5 && len(r.Kvs) == 0, "count only: count %d, %d kvs", r.Count, len(r.Kvs)))
	r, err = e.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend))
	if err != nil {
		return err
	}
	errs = append(errs, check(len(r.Kvs) == 5 && string(r.Kvs[0].Key) == p+"a" && len(r.Kvs[0].Value) == 0,
		"keys only by mod revision descending: first %v, want a without value", keysOf(r.Kvs)))
	r, err = e.cli.Get(ctx, p+"c", clientv3.WithFromKey(), clientv3.WithSerializable())
	if err != nil {
		return err
	}
	errs = append(errs, check(len(r.Kvs) >= 3 && string(r.Kvs[0].Key) == p+"c", "from key c (serializable): %v", keysOf(r.Kvs)))
	return errors.Join(errs...)
}

func keysOf(kvs []*mvccpb.KeyValue) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = string(kv.Key)
	}
	return out
}

func deletePrevKV(ctx context.Context, e *env) error {
	k := e.key("del")
	put, err := e.cli.Put(ctx, k, "gone")
	if err != nil {
		return err
	}
	d, err := e.cli.Delete(ctx, k, clientv3.WithPrevKV())
	if err != nil {
		return err
	}
	if d.Deleted != 1 || len(d.PrevKvs) != 1 {
		return fmt.Errorf("deleted %d with %d prev kvs, want 1 and 1", d.Deleted, len(d.PrevKvs))
	}
	pk := d.PrevKvs[0]
	again, err := e.cli.Delete(ctx, k)
	if err != nil {
		return err
	}
	return errors.Join(
		check(string(pk.Key) == k && string(pk.Value) == "gone" && pk.ModRevision == put.Header.Revision,
			"prev kv %q=%q at %d, want %q=gone at %d", pk.Key, pk.Value, pk.ModRevision, k, put.Header.Revision),
		check(d.Header.Revision == put.Header.Revision+1, "delete at revision %d, want %d", d.Header.Revision, put.Header.Revision+1),
		check(again.Deleted == 0 && again.Header.Revision == d.Header.Revision, "second delete: deleted %d at %d, want 0 at %d (no new revision)",
			again.Deleted, again.Header.Revision, d.Header.Revision),
	)
}

func compaction(ctx context.Context, e *env) error {
	k := e.key("c")
	r1, err := e.cli.Put(ctx, k, "1")
	if err != nil {
		return err
	}
	r2, err := e.cli.Put(ctx, k, "2")
	if err != nil {
		return err
	}
	if _, err := e.cli.Compact(ctx, r2.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		return err
	}
	var errs []error
	_, err = e.cli.Get(ctx, k, clientv3.WithRev(r1.Header.Revision))
	errs = append(errs, check(errors.Is(err, rpctypes.ErrCompacted), "read at compacted revision %d: %v, want %v", r1.Header.Revision, err, rpctypes.ErrCompacted))
	g, err := e.cli.Get(ctx, k, clientv3.WithRev(r2.Header.Revision))
	errs = append(errs, check(err == nil && len(g.Kvs) == 1 && string(g.Kvs[0].Value) == "2", "read at the compaction revision: %v %v", g, err))
	_, err = e.cli.Compact(ctx, r1.Header.Revision)
	errs = append(errs, check(errors.Is(err, rpctypes.ErrCompacted), "compacting an older revision: %v, want %v", err, rpctypes.ErrCompacted))
	_, err = e.cli.Compact(ctx, r2.Header.Revision+1000000)
	errs = append(errs, check(errors.Is(err, rpctypes.ErrFutureRev), "compacting a future revision: %v, want %v", err, rpctypes.ErrFutureRev))
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wr := <-e.cli.Watch(wctx, k, clientv3.WithRev(r1.Header.Revision))
	errs = append(errs, check(wr.CompactRevision == r2.Header.Revision && wr.Canceled,
		"watch from a compacted revision: compact revision %d, canceled %v; want %d, canceled", wr.CompactRevision, wr.Canceled, r2.Header.Revision))
	return errors.Join(errs...)
}

func watchHistory(ctx context.Context, e *env) error {
	k := e.key("h")
	p1, err := e.cli.Put(ctx, k, "1")
	if err != nil {
		return err
	}
	if _, err := e.cli.Put(ctx, k, "2"); err != nil {
		return err
	}
	del, err := e.cli.Delete(ctx, k)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	wch := e.cli.Watch(wctx, k, clientv3.WithRev(p1.Header.Revision), clientv3.WithPrevKV())
	var evs []*clientv3.Event
	for len(evs) < 3 {
		select {
		case wr, ok := <-wch:
			if !ok || wr.Err() != nil {
				cancel()
				return fmt.Errorf("watch ended early: %v", wr.Err())
			}
			evs = append(evs, wr.Events...)
		case <-ctx.Done():
			cancel()
			return fmt.Errorf("got %d of 3 events", len(evs))
		}
	}
	got := make([]string, len(evs))
	for i, ev := range evs {
		prev := "-"
		if ev.PrevKv != nil {
			prev = string(ev.PrevKv.Value)
		}
		got[i] = fmt.Sprintf("%v %s prev %s", ev.Type, ev.Kv.Value, prev)
	}
	want := []string{"PUT 1 prev -", "PUT 2 prev 1", "DELETE  prev 2"}
	errs := []error{check(fmt.Sprint(got) == fmt.Sprint(want), "history %q, want %q", got, want),
		check(evs[2].Kv.ModRevision == del.Header.Revision, "delete event at %d, want %d", evs[2].Kv.ModRevision, del.Header.Revision)}
	cancel()
	select {
	case _, ok := <-wch:
		for ok {
			_, ok = <-wch
		}
	case <-time.After(5 * time.Second):
		errs = append(errs, errors.New("the watch channel stays open after cancel"))
	}
	return errors.Join(errs...)
}

func leaseLifecycle(ctx context.Context, e *env) error {
	l, err := e.cli.Grant(ctx, 30)
	if err != nil {
		return err
	}
	k := e.key("lk")
	if _, err := e.cli.Put(ctx, k, "v", clientv3.WithLease(l.ID)); err != nil {
		return err
	}
	ka, err := e.cli.KeepAliveOnce(ctx, l.ID)
	if err != nil {
		return err
	}
	ttl, err := e.cli.TimeToLive(ctx, l.ID, clientv3.WithAttachedKeys())
	if err != nil {
		return err
	}
	errs := []error{
		check(ka.ID == l.ID && ka.TTL == 30, "keep-alive: ID %x TTL %d, want %x 30", ka.ID, ka.TTL, l.ID),
		check(ttl.GrantedTTL == 30 && ttl.TTL > 25 && ttl.TTL <= 30 && len(ttl.Keys) == 1 && string(ttl.Keys[0]) == k,
			"TimeToLive: granted %d, TTL %d, keys %q", ttl.GrantedTTL, ttl.TTL, ttl.Keys),
	}
	ls, err := e.cli.Leases(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, s := range ls.Leases {
		found = found || s.ID == l.ID
	}
	errs = append(errs, check(found, "lease %x not listed", l.ID))
	if _, err := e.cli.Revoke(ctx, l.ID); err != nil {
		return err
	}
	g, err := e.cli.Get(ctx, k)
	if err != nil {
		return err
	}
	after, err := e.cli.TimeToLive(ctx, l.ID)
	if err != nil {
		return err
	}
	_, err = e.cli.Revoke(ctx, l.ID)
	errs = append(errs,
		check(g.Count == 0, "%s survives its lease's revoke", k),
		check(after.TTL == -1, "TimeToLive after revoke: %d, want -1", after.TTL),
		check(errors.Is(err, rpctypes.ErrLeaseNotFound), "second revoke: %v, want %v", err, rpctypes.ErrLeaseNotFound))
	return errors.Join(errs...)
}

func mutexElection(ctx context.Context, e *env) error {
	s1, err := concurrency.NewSession(e.cli, concurrency.WithTTL(10))
	if err != nil {
		return err
	}
	defer s1.Close()
	s2, err := concurrency.NewSession(e.cli, concurrency.WithTTL(10))
	if err != nil {
		return err
	}
	defer s2.Close()
	m1, m2 := concurrency.NewMutex(s1, e.key("lock")), concurrency.NewMutex(s2, e.key("lock"))
	if err := m1.Lock(ctx); err != nil {
		return err
	}
	var errs []error
	errs = append(errs, check(errors.Is(m2.TryLock(ctx), concurrency.ErrLocked), "a second session's TryLock did not find the mutex locked"))
	if err := m1.Unlock(ctx); err != nil {
		return err
	}
	if err := m2.Lock(ctx); err != nil {
		return err
	}
	errs = append(errs, m2.Unlock(ctx))

	e1, e2 := concurrency.NewElection(s1, e.key("elect")), concurrency.NewElection(s2, e.key("elect"))
	if err := e1.Campaign(ctx, "a"); err != nil {
		return err
	}
	l, err := e2.Leader(ctx)
	if err != nil {
		return err
	}
	errs = append(errs, check(len(l.Kvs) == 1 && string(l.Kvs[0].Value) == "a", "leader seen by the other session: %v", l.Kvs))
	won := make(chan error, 1)
	go func() { won <- e2.Campaign(ctx, "b") }()
	select {
	case err := <-won:
		errs = append(errs, fmt.Errorf("second candidate won while the first led (%v)", err))
	case <-time.After(300 * time.Millisecond):
	}
	if err := e1.Resign(ctx); err != nil {
		return err
	}
	if err := <-won; err != nil {
		return err
	}
	l, err = e1.Leader(ctx)
	if err != nil {
		return err
	}
	errs = append(errs, check(len(l.Kvs) == 1 && string(l.Kvs[0].Value) == "b", "leader after resign: %v", l.Kvs), e2.Resign(ctx))
	return errors.Join(errs...)
}

func stm(ctx context.Context, e *env) error {
	k := e.key("counter")
	const n = 5
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = concurrency.NewSTM(e.cli, func(s concurrency.STM) error {
				v := 0
				if cur := s.Get(k); cur != "" {
					fmt.Sscan(cur, &v)
				}
				s.Put(k, fmt.Sprint(v+1))
				return nil
			}, concurrency.WithAbortContext(ctx), concurrency.WithIsolation(concurrency.SerializableSnapshot))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	g, err := e.cli.Get(ctx, k)
	if err != nil {
		return err
	}
	return check(len(g.Kvs) == 1 && string(g.Kvs[0].Value) == fmt.Sprint(n) && g.Kvs[0].Version == n,
		"after %d concurrent increments: %v, want %d at version %d", n, g.Kvs, n, n)
}

func authUserRole(ctx context.Context, e *env) (err error) {
	st, err := e.cli.AuthStatus(ctx)
	if err != nil {
		return err
	}
	if st.Enabled {
		return errors.New("auth is already enabled on these endpoints; run against a cluster without auth")
	}
	root, user, role := "root", "compat-user", "compat-role"
	prefix := e.key("auth/")
	steps := []func() error{
		func() error { _, err := e.cli.UserAdd(ctx, root, "rootpw"); return err },
		func() error { _, err := e.cli.UserGrantRole(ctx, root, "root"); return err },
		func() error { _, err := e.cli.RoleAdd(ctx, role); return err },
		func() error {
			_, err := e.cli.RoleGrantPermission(ctx, role, prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := e.cli.UserAdd(ctx, user, "userpw"); return err },
		func() error { _, err := e.cli.UserGrantRole(ctx, user, role); return err },
		func() error { _, err := e.cli.AuthEnable(ctx); return err },
	}
	// Whatever happens, leave the endpoints as found: auth off, no users.
	defer func() {
		rc, cerr := e.newClient(root, "rootpw")
		if cerr == nil {
			_, _ = rc.AuthDisable(ctx)
			rc.Close()
		}
		_, _ = e.cli.UserDelete(ctx, user)
		_, _ = e.cli.UserDelete(ctx, root)
		_, _ = e.cli.RoleDelete(ctx, role)
	}()
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	uc, err := e.newClient(user, "userpw")
	if err != nil {
		return err
	}
	defer uc.Close()
	_, putErr := uc.Put(ctx, prefix+"x", "allowed")
	_, deniedErr := uc.Put(ctx, e.key("elsewhere"), "denied")
	_, anonErr := e.cli.Get(ctx, prefix+"x")
	_, badErr := e.newClientCheck(ctx, user, "wrong")
	return errors.Join(
		check(putErr == nil, "put inside the role's prefix: %v", putErr),
		check(errors.Is(deniedErr, rpctypes.ErrPermissionDenied), "put outside it: %v, want %v", deniedErr, rpctypes.ErrPermissionDenied),
		check(errors.Is(anonErr, rpctypes.ErrUserEmpty), "read without a user: %v, want %v", anonErr, rpctypes.ErrUserEmpty),
		check(errors.Is(badErr, rpctypes.ErrAuthFailed), "wrong password: %v, want %v", badErr, rpctypes.ErrAuthFailed),
	)
}

// newClientCheck dials as user and makes one call, for the error a wrong
// password gives.
func (e *env) newClientCheck(ctx context.Context, user, password string) (*clientv3.GetResponse, error) {
	c, err := e.newClient(user, password)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Get(ctx, e.key("x"))
}

func memberListStatus(ctx context.Context, e *env) error {
	ml, err := e.cli.MemberList(ctx)
	if err != nil {
		return err
	}
	if len(ml.Members) == 0 {
		return errors.New("member list is empty")
	}
	ids := map[uint64]bool{}
	var errs []error
	for _, m := range ml.Members {
		ids[m.ID] = true
		errs = append(errs, check(m.ID != 0 && m.Name != "" && len(m.PeerURLs) > 0 && len(m.ClientURLs) > 0,
			"member %x: name %q, peer URLs %v, client URLs %v", m.ID, m.Name, m.PeerURLs, m.ClientURLs))
	}
	leaders := map[uint64]bool{}
	for _, ep := range e.endpoints {
		st, err := e.cli.Status(ctx, ep)
		if err != nil {
			return fmt.Errorf("status of %s: %w", ep, err)
		}
		leaders[st.Leader] = true
		errs = append(errs, check(st.Version != "" && st.DbSize > 0 && st.RaftIndex > 0 && st.RaftTerm > 0 && st.RaftAppliedIndex > 0,
			"status of %s: version %q, db size %d, raft index %d, term %d, applied %d", ep, st.Version, st.DbSize, st.RaftIndex, st.RaftTerm, st.RaftAppliedIndex),
			check(ids[st.Header.MemberId] && ids[st.Leader], "status of %s: member %x or leader %x not in the member list", ep, st.Header.MemberId, st.Leader))
	}
	errs = append(errs, check(len(leaders) == 1, "endpoints disagree on the leader: %v", leaders))
	return errors.Join(errs...)
}

func snapshotSave(ctx context.Context, e *env) error {
	rc, err := e.cli.Snapshot(ctx)
	if err != nil {
		return err
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, rc); err != nil {
		return err
	}
	b := buf.Bytes()
	if len(b) < sha256.Size+4096 || len(b)%512 != sha256.Size {
		return fmt.Errorf("snapshot of %d bytes: want a database of whole 512-byte sectors and a 32-byte SHA-256", len(b))
	}
	db, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	got := sha256.Sum256(db)
	return check(bytes.Equal(got[:], sum), "the SHA-256 trailer does not match the database")
}
