// Command lease attaches a key to a short lease and keeps the lease alive
// for longer than its TTL, showing the key survives; then it stops the
// keep-alives and shows the key is deleted when the lease expires.
//
//	go run ./examples/lease -endpoints 127.0.0.1:2379 -ttl 3 -keepalive 5s
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated client endpoints")
	key := flag.String("key", "examples/lease", "key to attach to the lease")
	ttl := flag.Int64("ttl", 3, "lease TTL in seconds")
	keep := flag.Duration("keepalive", 5*time.Second, "how long to keep the lease alive (longer than -ttl)")
	flag.Parse()
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ttlDur := time.Duration(*ttl) * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), *keep+2*ttlDur+30*time.Second)
	defer cancel()

	grant, err := cli.Grant(ctx, *ttl)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("granted lease %x with TTL %ds\n", grant.ID, grant.TTL)
	if _, err := cli.Put(ctx, *key, "alive", clientv3.WithLease(grant.ID)); err != nil {
		log.Fatal(err)
	}
	printTimeToLive(ctx, cli, grant.ID, "after grant")

	// Keep the lease alive for longer than its TTL. The client renews it
	// about every TTL/3 and reports each renewal on the channel.
	kctx, stop := context.WithTimeout(ctx, *keep)
	renewals, err := cli.KeepAlive(kctx, grant.ID)
	if err != nil {
		log.Fatal(err)
	}
	n := 0
	for range renewals {
		n++
	}
	stop()
	get, err := cli.Get(ctx, *key)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("after keeping the lease alive for %v (%d renewals): %s still exists: %v\n", *keep, n, *key, len(get.Kvs) == 1)
	if len(get.Kvs) != 1 {
		log.Fatal("the key expired while its lease was kept alive")
	}
	printTimeToLive(ctx, cli, grant.ID, "after keep-alives stop")

	// Without renewals the lease expires within its TTL, and its keys go
	// with it.
	start := time.Now()
	for {
		get, err := cli.Get(ctx, *key)
		if err != nil {
			log.Fatal(err)
		}
		if len(get.Kvs) == 0 {
			fmt.Printf("%s is gone %.1fs after the keep-alives stopped\n", *key, time.Since(start).Seconds())
			break
		}
		if time.Since(start) > ttlDur+5*time.Second {
			log.Fatalf("%s still exists %v after the keep-alives stopped", *key, time.Since(start))
		}
		time.Sleep(250 * time.Millisecond)
	}
	printTimeToLive(ctx, cli, grant.ID, "after expiry")
}

// printTimeToLive prints the lease's remaining TTL and attached keys; an
// expired lease reports TTL -1.
func printTimeToLive(ctx context.Context, cli *clientv3.Client, id clientv3.LeaseID, when string) {
	ttl, err := cli.TimeToLive(ctx, id, clientv3.WithAttachedKeys())
	if err != nil {
		log.Fatal(err)
	}
	keys := make([]string, len(ttl.Keys))
	for i, k := range ttl.Keys {
		keys[i] = string(k)
	}
	fmt.Printf("TimeToLive %s: ttl=%d granted_ttl=%d keys=%v\n", when, ttl.TTL, ttl.GrantedTTL, keys)
}
