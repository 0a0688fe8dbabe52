package test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// sseMessage is one Server-Sent Events message of the REST watch.
type sseMessage struct {
	event string
	data  map[string]any
}

// openSSE starts GET path on the member's REST API and returns a channel
// of its messages, closed when the stream ends.
func openSSE(t *testing.T, m *member, path string) <-chan sseMessage {
	t.Helper()
	c, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(c, http.MethodGet, m.httpURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET %s: %s, content type %q", path, resp.Status, resp.Header.Get("Content-Type"))
	}
	out := make(chan sseMessage, 64)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var msg sseMessage
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				msg.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &msg.data); err != nil {
					t.Errorf("bad SSE data %q: %v", line, err)
				}
			case line == "":
				out <- msg
				msg = sseMessage{}
			}
		}
	}()
	return out
}

func nextSSE(t *testing.T, ch <-chan sseMessage) sseMessage {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("watch stream ended")
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no watch message within 10s")
	}
	return sseMessage{}
}

// TestHTTPWatch streams events over SSE for writes made with clientv3:
// puts and deletes under a prefix with their revisions, history from a past
// revision, and a canceled message for a compacted start revision.
func TestHTTPWatch(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startMember(t, engine)
		cli := m.client(t)

		live := openSSE(t, m, "/v1/watch/app/?prefix=true&prev_kv=true")
		if msg := nextSSE(t, live); msg.event != "created" || msg.data["revision"] != float64(1) {
			t.Fatalf("first message %+v, want created at revision 1", msg)
		}
		put, err := cli.Put(ctx(t), "app/a", "1")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx(t), "other", "x"); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx(t), "app/a", "2"); err != nil {
			t.Fatal(err)
		}
		del, err := cli.Delete(ctx(t), "app/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		msg := nextSSE(t, live)
		if msg.event != "put" || msg.data["key"] != "app/a" || msg.data["value"] != "1" || msg.data["mod_revision"] != float64(put.Header.Revision) {
			t.Fatalf("first event %+v, want put app/a=1 at %d", msg, put.Header.Revision)
		}
		msg = nextSSE(t, live)
		prev, _ := msg.data["prev_kv"].(map[string]any)
		if msg.event != "put" || msg.data["value"] != "2" || prev["value"] != "1" {
			t.Fatalf("second event %+v, want put app/a=2 with prev 1", msg)
		}
		msg = nextSSE(t, live)
		if msg.event != "delete" || msg.data["key"] != "app/a" || msg.data["mod_revision"] != float64(del.Header.Revision) {
			t.Fatalf("third event %+v, want delete app/a at %d", msg, del.Header.Revision)
		}

		// From a past revision, history comes first.
		hist := openSSE(t, m, "/v1/watch/app/a?revision=2")
		if msg := nextSSE(t, hist); msg.event != "created" {
			t.Fatalf("history watch opened with %+v", msg)
		}
		for _, want := range []string{"put", "put", "delete"} {
			if msg := nextSSE(t, hist); msg.event != want {
				t.Fatalf("history event %+v, want %s", msg, want)
			}
		}

		// A start revision below the compaction is canceled, as in etcd.
		if _, err := cli.Compact(ctx(t), del.Header.Revision); err != nil {
			t.Fatal(err)
		}
		gone := openSSE(t, m, "/v1/watch/app/a?revision=2")
		msg = nextSSE(t, gone)
		if msg.event == "created" {
			msg = nextSSE(t, gone)
		}
		if msg.event != "canceled" || msg.data["compact_revision"] != float64(del.Header.Revision) {
			t.Fatalf("compacted watch got %+v, want canceled with compact_revision %d", msg, del.Header.Revision)
		}
	})
}

// TestCrossProtocolWatch: a key put over REST fires an etcd watch.
func TestCrossProtocolWatch(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startMember(t, engine)
		cli := m.client(t)
		wc := cli.Watch(ctx(t), "xp", clientv3.WithCreatedNotify())
		if resp := <-wc; !resp.Created {
			t.Fatalf("watch not created: %+v", resp)
		}
		if code, body := m.httpDo(t, http.MethodPut, "/v1/kv/xp", strings.NewReader("from-rest")); code != http.StatusOK {
			t.Fatalf("REST put: %d %s", code, body)
		}
		select {
		case resp := <-wc:
			if len(resp.Events) != 1 || string(resp.Events[0].Kv.Value) != "from-rest" {
				t.Fatalf("watch got %+v", resp.Events)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no watch event for the REST put")
		}
	})
}
