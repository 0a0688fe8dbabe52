package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/cairn-kv/cairn/internal/mvcc"
)

// WatchStream is one open watch stream of the store's watch service;
// *watch.Stream implements it.
type WatchStream interface {
	// Create adds a watcher; its responses, the created one first, go to
	// the send function the stream was opened with.
	Create(req *etcdserverpb.WatchCreateRequest)
	// Close ends the stream and its watchers.
	Close()
	// Done is closed when the member is stopping.
	Done() <-chan struct{}
}

// OpenWatch opens a watch stream whose responses are passed to send, one
// at a time, from the stream's own goroutine.
type OpenWatch func(send func(*etcdserverpb.WatchResponse) error) WatchStream

// watchBuffer is how many responses may wait for a slow HTTP client. When
// it is full the stream's own goroutine waits; the watch service then
// stops feeding it live events and catches it up from history later, so a
// slow client holds up nothing but itself.
const watchBuffer = 64

// sseEvent is one event as the watch endpoint sends it.
type sseEvent struct {
	Type string `json:"type"` // "put" or "delete"
	keyValue
	PrevKV *keyValue `json:"prev_kv,omitempty"`
}

// watch serves GET /v1/watch/{key} as Server-Sent Events: an "created"
// message with the revision the watch starts after, then one "put" or
// "delete" message per event (JSON with the key, value and revisions), and
// a final "canceled" message if the watch service ends the watch (for
// example when ?revision is compacted). ?prefix=true watches every key
// under the prefix, ?revision=N starts at revision N (history first),
// ?prev_kv=true adds each key's previous value.
func (h *handler) watch(w http.ResponseWriter, r *http.Request) error {
	if h.openWatch == nil {
		return errNoRoute
	}
	q := parseQuery(r, "encoding", "prefix", "revision", "prev_kv")
	c := q.codec()
	prefix := q.bool("prefix")
	req := &etcdserverpb.WatchCreateRequest{StartRevision: q.int("revision"), PrevKv: q.bool("prev_kv")}
	if q.err != nil {
		return q.err
	}
	switch key, err := pathKey(r, c); {
	case prefix && errors.Is(err, mvcc.ErrEmptyKey):
		req.Key, req.RangeEnd = []byte{0}, []byte{0}
	case err != nil:
		return err
	case prefix:
		req.Key, req.RangeEnd = key, prefixEnd(key)
	default:
		req.Key = key
	}
	// As etcd's watch service checks a watch when it is created: read
	// permission on the whole range, and nothing checked afterwards.
	if err := h.checkRange(r.Context(), req.Key, req.RangeEnd); err != nil {
		return err
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		return errors.New("httpapi: response writer cannot stream")
	}

	responses := make(chan *etcdserverpb.WatchResponse, watchBuffer)
	stopped := make(chan struct{})
	stream := h.openWatch(func(resp *etcdserverpb.WatchResponse) error {
		select {
		case responses <- resp:
			return nil
		case <-stopped:
			return errors.New("httpapi: watch client gone")
		}
	})
	// Close waits for the stream's goroutine, which may be blocked handing
	// a response to a client that fell behind: release it first.
	defer func() {
		close(stopped)
		stream.Close()
	}()
	stream.Create(req)

	// A stream has no end: drop a write deadline an earlier JSON answer on
	// this kept-alive connection may have left.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	for {
		select {
		case resp := <-responses:
			if err := writeWatchResponse(w, c, resp); err != nil {
				return nil // the client went away; nothing more to tell it
			}
			flusher.Flush()
			if resp.Canceled {
				return nil
			}
		case <-stream.Done():
			return nil
		case <-r.Context().Done():
			return nil
		}
	}
}

// writeWatchResponse renders one watch response as SSE messages.
func writeWatchResponse(w http.ResponseWriter, c codec, resp *etcdserverpb.WatchResponse) error {
	rev := resp.GetHeader().GetRevision()
	switch {
	case resp.Created:
		return writeSSE(w, "created", map[string]int64{"revision": rev})
	case resp.Canceled:
		return writeSSE(w, "canceled", map[string]any{
			"reason": resp.CancelReason, "compact_revision": resp.CompactRevision, "revision": rev,
		})
	}
	for _, ev := range resp.Events {
		e := sseEvent{Type: "put", keyValue: c.keyValue(ev.Kv)}
		if ev.Type == mvccpb.DELETE {
			e.Type = "delete"
		}
		if ev.PrevKv != nil {
			prev := c.keyValue(ev.PrevKv)
			e.PrevKV = &prev
		}
		if err := writeSSE(w, e.Type, e); err != nil {
			return err
		}
	}
	return nil
}

func writeSSE(w http.ResponseWriter, event string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data)
	return err
}
