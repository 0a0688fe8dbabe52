// Command watch watches a key from the current revision, then puts and
// deletes it, and prints the PUT and DELETE events the watch delivers (the
// DELETE with the key's previous value, asked for with WithPrevKV).
//
//	go run ./examples/watch -endpoints 127.0.0.1:2379
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
	key := flag.String("key", "examples/watch", "key to watch")
	flag.Parse()
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Start the watch just after the current revision, so it sees every
	// change made from here on and nothing older.
	get, err := cli.Get(ctx, *key)
	if err != nil {
		log.Fatal(err)
	}
	from := get.Header.Revision + 1
	wch := cli.Watch(ctx, *key, clientv3.WithRev(from), clientv3.WithPrevKV())
	fmt.Printf("watching %s from revision %d\n", *key, from)

	if _, err := cli.Put(ctx, *key, "v1"); err != nil {
		log.Fatal(err)
	}
	if _, err := cli.Delete(ctx, *key); err != nil {
		log.Fatal(err)
	}

	var events []*clientv3.Event
	for len(events) < 2 {
		resp, ok := <-wch
		if !ok {
			log.Fatalf("watch closed after %d event(s): %v", len(events), ctx.Err())
		}
		if err := resp.Err(); err != nil {
			log.Fatal(err)
		}
		for _, ev := range resp.Events {
			fmt.Printf("event %s %s = %q at revision %d", ev.Type, ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision)
			if ev.PrevKv != nil {
				fmt.Printf(" (prev_kv %q)", ev.PrevKv.Value)
			}
			fmt.Println()
			events = append(events, ev)
		}
	}

	put, del := events[0], events[1]
	if put.Type != clientv3.EventTypePut || string(put.Kv.Value) != "v1" {
		log.Fatalf("first event is not the PUT of v1: %v", put)
	}
	if del.Type != clientv3.EventTypeDelete || del.PrevKv == nil || string(del.PrevKv.Value) != "v1" {
		log.Fatalf("second event is not a DELETE with prev_kv v1: %v", del)
	}
	fmt.Println("watch saw the PUT, then the DELETE with the previous value")
}
