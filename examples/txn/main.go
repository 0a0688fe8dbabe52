// Command txn shows a compare-and-swap with etcd's transaction API: the
// update succeeds only while the key still has the value read before.
//
//	go run ./examples/txn -endpoints 127.0.0.1:2379
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
	key := flag.String("key", "examples/txn", "key to update")
	flag.Parse()
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	if _, err := cli.Put(ctx, *key, "v1"); err != nil {
		log.Fatal(err)
	}
	swap := func(from, to string) bool {
		resp, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.Value(*key), "=", from)).
			Then(clientv3.OpPut(*key, to)).
			Else(clientv3.OpGet(*key)).
			Commit()
		if err != nil {
			log.Fatal(err)
		}
		return resp.Succeeded
	}
	fmt.Printf("swap v1 -> v2: succeeded=%v\n", swap("v1", "v2"))
	fmt.Printf("swap v1 -> v3: succeeded=%v (the value is v2 now)\n", swap("v1", "v3"))
	get, err := cli.Get(ctx, *key)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("final value: %s\n", get.Kvs[0].Value)
	if string(get.Kvs[0].Value) != "v2" {
		log.Fatal("compare-and-swap misbehaved")
	}
}
