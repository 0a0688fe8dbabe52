// Command connect connects to a Cairn (or etcd) member with the official
// etcd client and prints the member list and endpoint status.
//
//	go run ./examples/connect -endpoints 127.0.0.1:2379
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
	flag.Parse()
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	members, err := cli.MemberList(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range members.Members {
		fmt.Printf("member %x name=%s peers=%v clients=%v\n", m.ID, m.Name, m.PeerURLs, m.ClientURLs)
	}
	for _, ep := range cli.Endpoints() {
		st, err := cli.Status(ctx, ep)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("endpoint %s version=%s leader=%x raft_term=%d raft_index=%d\n", ep, st.Version, st.Leader, st.RaftTerm, st.RaftIndex)
	}
}
