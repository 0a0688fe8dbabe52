// Command rest shows that Cairn's REST API and the etcd API serve one
// store: a key written over REST is read with clientv3, a key written with
// clientv3 is read over REST, at the same revisions, and a REST watch
// (Server-Sent Events) sees both writes. The member must serve the REST
// API, which is off unless asked for: start it with --http-listen-addr
// 127.0.0.1:8080 (make run does).
//
//	go run ./examples/rest -endpoints 127.0.0.1:2379 -http http://127.0.0.1:8080
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// keyValue is a key as the REST API answers it (GET /v1/kv/{key}, and the
// data of a watch event).
type keyValue struct {
	Key         string `json:"key"`
	Value       string `json:"value"`
	ModRevision int64  `json:"mod_revision"`
}

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated client endpoints of the etcd API")
	httpURL := flag.String("http", "http://127.0.0.1:8080", "base URL of Cairn's REST API")
	prefix := flag.String("prefix", "examples/rest/", "key prefix to write under")
	flag.Parse()
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	api := strings.TrimSuffix(*httpURL, "/")

	// A REST watch on the prefix: the first message, "created", says the
	// watch is in place.
	watch := sse(ctx, api+"/v1/watch/"+*prefix+"?prefix=true")
	if event, _ := watch(); event != "created" {
		log.Fatalf("watch: first event is %q, want created", event)
	}

	// Write over REST (the body is the value), read with clientv3.
	fromREST := *prefix + "from-rest"
	var put struct{ Revision int64 }
	call(ctx, http.MethodPut, api+"/v1/kv/"+fromREST, "written over REST", &put)
	fmt.Printf("REST PUT %s at revision %d\n", fromREST, put.Revision)
	get, err := cli.Get(ctx, fromREST)
	if err != nil {
		log.Fatal(err)
	}
	if len(get.Kvs) != 1 || string(get.Kvs[0].Value) != "written over REST" || get.Kvs[0].ModRevision != put.Revision {
		log.Fatalf("clientv3 reads %v, want the REST write", get.Kvs)
	}
	fmt.Printf("clientv3 Get %s = %q (mod_revision %d)\n", fromREST, get.Kvs[0].Value, get.Kvs[0].ModRevision)

	// Write with clientv3, read over REST.
	fromGRPC := *prefix + "from-grpc"
	put2, err := cli.Put(ctx, fromGRPC, "written over gRPC")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("clientv3 Put %s at revision %d\n", fromGRPC, put2.Header.Revision)
	var kv keyValue
	call(ctx, http.MethodGet, api+"/v1/kv/"+fromGRPC, "", &kv)
	if kv.Value != "written over gRPC" || kv.ModRevision != put2.Header.Revision {
		log.Fatalf("REST reads %+v, want the clientv3 write", kv)
	}
	fmt.Printf("REST GET %s = %q (mod_revision %d)\n", kv.Key, kv.Value, kv.ModRevision)

	// The REST watch saw both writes, in revision order.
	for _, want := range []keyValue{{fromREST, "written over REST", put.Revision}, {fromGRPC, "written over gRPC", put2.Header.Revision}} {
		event, data := watch()
		var got keyValue
		if err := json.Unmarshal([]byte(data), &got); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("REST watch: %s %s = %q at revision %d\n", event, got.Key, got.Value, got.ModRevision)
		if event != "put" || got != want {
			log.Fatalf("watch: got %s %+v, want put %+v", event, got, want)
		}
	}

	if _, err := cli.Delete(ctx, *prefix, clientv3.WithPrefix()); err != nil {
		log.Fatal(err)
	}
}

// call sends a request to the REST API and decodes its JSON answer into
// out. Errors come back as {"error": {"code", "message"}} with a non-2xx
// status.
func call(ctx context.Context, method, url, body string, out any) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		log.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		log.Fatal(err)
	}
	if resp.StatusCode/100 != 2 {
		log.Fatalf("%s %s: %s %s", method, url, resp.Status, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		log.Fatal(err)
	}
}

// sse opens a Server-Sent Events stream and returns a function that reads
// its next message: the event name and its data.
func sse(ctx context.Context, url string) func() (event, data string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		log.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		log.Fatalf("GET %s: %s %s", url, resp.Status, b)
	}
	lines := bufio.NewScanner(resp.Body)
	return func() (event, data string) {
		for lines.Scan() {
			line := lines.Text()
			switch {
			case line == "" && event != "":
				return event, data
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data = strings.TrimPrefix(line, "data: ")
			}
		}
		log.Fatalf("watch stream ended: %v", lines.Err())
		return "", ""
	}
}
