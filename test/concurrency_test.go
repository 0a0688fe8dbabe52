package test

import (
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// TestConcurrencyRecipes runs clientv3/concurrency unchanged against Cairn:
// sessions on leases, a mutex held by one session at a time (TryLock fails
// while it is held, and a session's expiry releases it), an election with
// campaign, proclaim, observe and resign, and an STM transfer under
// contention.
func TestConcurrencyRecipes(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startMember(t, engine)
		cli := m.client(t)
		newSession := func() *concurrency.Session {
			t.Helper()
			s, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
			if err != nil {
				t.Fatal(err)
			}
			return s
		}

		// Mutex: exclusive, TryLock sees the holder, Unlock hands over.
		s1, s2 := newSession(), newSession()
		m1, m2 := concurrency.NewMutex(s1, "lock/"), concurrency.NewMutex(s2, "lock/")
		if err := m1.Lock(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if err := m2.TryLock(ctx(t)); !errors.Is(err, concurrency.ErrLocked) {
			t.Fatalf("TryLock while held: %v, want ErrLocked", err)
		}
		acquired := make(chan error, 1)
		go func() { acquired <- m2.Lock(ctx(t)) }()
		select {
		case err := <-acquired:
			t.Fatalf("second Lock returned while the first holds the lock: %v", err)
		case <-time.After(300 * time.Millisecond):
		}
		if err := m1.Unlock(ctx(t)); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-acquired:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("second Lock not granted after Unlock")
		}
		// Closing the holder's session revokes its lease and frees the lock.
		s3 := newSession()
		m3 := concurrency.NewMutex(s3, "lock/")
		go func() { acquired <- m3.Lock(ctx(t)) }()
		s2.Close()
		select {
		case err := <-acquired:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("lock not granted after the holder's session closed")
		}

		// Election: the leader is observed, proclaims, and resigns.
		e1 := concurrency.NewElection(s1, "elect/")
		e2 := concurrency.NewElection(s3, "elect/")
		if err := e1.Campaign(ctx(t), "one"); err != nil {
			t.Fatal(err)
		}
		octx, cancel := context.WithCancel(context.Background())
		defer cancel()
		observed := e2.Observe(octx)
		waitLeader := func(want string) {
			t.Helper()
			deadline := time.After(10 * time.Second)
			for {
				select {
				case resp := <-observed:
					if len(resp.Kvs) > 0 && string(resp.Kvs[0].Value) == want {
						return
					}
				case <-deadline:
					t.Fatalf("leader %q not observed", want)
				}
			}
		}
		waitLeader("one")
		if err := e1.Proclaim(ctx(t), "uno"); err != nil {
			t.Fatal(err)
		}
		waitLeader("uno")
		campaigned := make(chan error, 1)
		go func() { campaigned <- e2.Campaign(ctx(t), "two") }()
		if err := e1.Resign(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if err := <-campaigned; err != nil {
			t.Fatal(err)
		}
		waitLeader("two")
		if leader, err := e1.Leader(ctx(t)); err != nil || string(leader.Kvs[0].Value) != "two" {
			t.Fatalf("Leader: %v %v", leader, err)
		}

		// STM: concurrent transfers keep the total.
		if _, err := cli.Put(ctx(t), "acct/a", "100"); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx(t), "acct/b", "0"); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := 0; i < 10; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := concurrency.NewSTM(cli, func(stm concurrency.STM) error {
					a, _ := strconv.Atoi(stm.Get("acct/a"))
					b, _ := strconv.Atoi(stm.Get("acct/b"))
					stm.Put("acct/a", strconv.Itoa(a-1))
					stm.Put("acct/b", strconv.Itoa(b+1))
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		resp, err := cli.Get(ctx(t), "acct/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 2 || string(resp.Kvs[0].Value) != "90" || string(resp.Kvs[1].Value) != "10" {
			t.Fatalf("accounts after 10 transfers: %v", resp.Kvs)
		}
	})
}

// TestEtcdctlLockAndElect drives the v3lock and v3election services with
// etcdctl: a command runs under a lock, and a campaigning candidate is seen
// by an observer.
func TestEtcdctlLockAndElect(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startMember(t, engine)
		out, exit := m.etcdctlStdin("", "lock", "cairn-lock", "echo", "locked-ok")
		if exit != 0 || !strings.Contains(out, "locked-ok") {
			t.Fatalf("etcdctl lock: exit %d\n%s", exit, out)
		}

		c, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		candidate := exec.CommandContext(c, etcdctlBin, "--endpoints", m.clientEP, "elect", "cairn-elect", "alice")
		candidate.Env = cleanEnv()
		var candOut strings.Builder
		candidate.Stdout = &candOut
		if err := candidate.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); _ = candidate.Wait() }()
		deadline := time.Now().Add(10 * time.Second)
		for {
			oc, ocancel := context.WithTimeout(context.Background(), 2*time.Second)
			observer := exec.CommandContext(oc, etcdctlBin, "--endpoints", m.clientEP, "elect", "-l", "cairn-elect")
			observer.Env = cleanEnv()
			got, _ := observer.Output()
			ocancel()
			if strings.Contains(string(got), "alice") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("observer never saw the leader; candidate printed %q, observer %q", candOut.String(), got)
			}
		}
	})
}
