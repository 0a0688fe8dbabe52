// Command election shows leader election with etcd's concurrency.Election:
// two candidates campaign, the first leads while the second waits, an
// observer sees each leader, and when the first resigns the second leads.
//
//	go run ./examples/election -endpoints 127.0.0.1:2379
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
	prefix := flag.String("prefix", "examples/election", "key prefix of the election")
	wait := flag.Duration("wait", time.Second, "how long to check that the second candidate waits")
	flag.Parse()
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *wait+10*time.Second)
	defer cancel()

	// Each candidate has its own session: if its process dies, the session's
	// lease expires and the candidate leaves the election.
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
	alice := concurrency.NewElection(s1, *prefix)
	bob := concurrency.NewElection(s2, *prefix)

	if err := alice.Campaign(ctx, "alice"); err != nil {
		log.Fatal(err)
	}
	fmt.Println("alice campaigns and leads")

	// Observe reports the current leader, then every new one.
	observed := alice.Observe(ctx)
	expectLeader(observed, "alice")

	bobLeads := make(chan error, 1)
	go func() { bobLeads <- bob.Campaign(ctx, "bob") }()
	select {
	case err := <-bobLeads:
		log.Fatalf("bob became leader while alice led (err=%v)", err)
	case <-time.After(*wait):
		fmt.Println("bob campaigns and waits")
	}

	if err := alice.Resign(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("alice resigns")
	if err := <-bobLeads; err != nil {
		log.Fatal(err)
	}
	fmt.Println("bob's campaign returns: bob leads")
	expectLeader(observed, "bob")

	leader, err := bob.Leader(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("leader is %s\n", leader.Kvs[0].Value)
	if err := bob.Resign(ctx); err != nil {
		log.Fatal(err)
	}
}

// expectLeader reads the next leader from an Observe channel and exits if
// it is not want.
func expectLeader(observed <-chan *clientv3.GetResponse, want string) {
	resp, ok := <-observed
	if !ok {
		log.Fatalf("observe ended before %s led", want)
	}
	got := string(resp.Kvs[0].Value)
	fmt.Printf("observe: leader is %s\n", got)
	if got != want {
		log.Fatalf("observed leader %s, want %s", got, want)
	}
}
