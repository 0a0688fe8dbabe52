// Command lock shows a distributed lock with etcd's concurrency.Mutex: two
// sessions lock the same mutex, and the second waits until the first
// unlocks.
//
//	go run ./examples/lock -endpoints 127.0.0.1:2379
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated client endpoints")
	prefix := flag.String("prefix", "examples/lock", "key prefix of the mutex")
	hold := flag.Duration("hold", time.Second, "how long the first session holds the lock")
	flag.Parse()
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *hold+10*time.Second)
	defer cancel()

	// Each session is a lease kept alive in the background: if its process
	// dies, the lease expires and the lock is released.
	s1, err := concurrency.NewSession(cli)
	if err != nil {
		log.Fatal(err)
	}
	defer s1.Close()
	s2, err := concurrency.NewSession(cli)
	if err != nil {
		log.Fatal(err)
	}
	defer s2.Close()
	m1 := concurrency.NewMutex(s1, *prefix)
	m2 := concurrency.NewMutex(s2, *prefix)

	if err := m1.Lock(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("1: session 1 holds the lock")

	locked2 := make(chan error, 1)
	go func() {
		fmt.Println("2: session 2 waits for the lock")
		locked2 <- m2.Lock(ctx)
	}()
	select {
	case err := <-locked2:
		log.Fatalf("session 2 got the lock while session 1 held it (err=%v)", err)
	case <-time.After(*hold):
	}

	if err := m1.Unlock(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("3: session 1 unlocks")
	if err := <-locked2; err != nil {
		log.Fatal(err)
	}
	fmt.Println("4: session 2 holds the lock")
	if err := m2.Unlock(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("5: session 2 unlocks")
}
