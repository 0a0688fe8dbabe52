// Command putget writes a key, reads it back and deletes it, printing the
// revisions etcd's API reports at each step.
//
//	go run ./examples/putget -endpoints 127.0.0.1:2379
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
	key := flag.String("key", "examples/putget", "key to write")
	flag.Parse()
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	put, err := cli.Put(ctx, *key, "hello from cairn")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("put %s at revision %d\n", *key, put.Header.Revision)

	get, err := cli.Get(ctx, *key)
	if err != nil {
		log.Fatal(err)
	}
	if len(get.Kvs) != 1 {
		log.Fatalf("expected one key, got %d", len(get.Kvs))
	}
	kv := get.Kvs[0]
	fmt.Printf("get %s = %q (create_revision=%d mod_revision=%d version=%d)\n", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version)

	del, err := cli.Delete(ctx, *key)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("deleted %d key(s) at revision %d\n", del.Deleted, del.Header.Revision)
}
