package store

import (
	"bytes"
	"context"
	"math"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/mvcc"
)

// firstChunkKeys is the size of a stream's first chunk; later chunks grow or
// shrink toward the target byte size.
const firstChunkKeys = 10

// RangeStream serves a range in chunks, pinned to one revision, so that a
// huge range never needs to be held in memory at once. Chunks after the
// first are sized to land near MaxRequestBytes. Every chunk carries a
// disjoint slice of the keys; only the last carries the header, more and
// count (the total, as a plain Range would report). send is called on the
// caller's goroutine.
func (c *Client) RangeStream(ctx context.Context, req *pb.RangeRequest, send func(*pb.RangeResponse) error) error {
	if err := ValidateRangeStream(req); err != nil {
		return err
	}
	if !req.Serializable {
		if err := c.linearizeFor(ctx); err != nil {
			return err
		}
	}
	id, err := c.identify(ctx)
	if err != nil {
		return err
	}
	if err := c.auth.Current().CheckRange(id, req.Key, req.RangeEnd); err != nil {
		return err
	}
	r := proto.Clone(req).(*pb.RangeRequest)
	if r.CountOnly {
		resp, err := c.rangeRead(r)
		if err != nil {
			return err
		}
		if err := c.auth.Current().CheckStale(id); err != nil {
			return err
		}
		return send(&pb.RangeResponse{Header: c.header(resp.Header.Revision), Count: resp.Count})
	}
	total := r.Limit
	if total == 0 {
		total = math.MaxInt64
	}
	r.Limit = min(firstChunkKeys, total)
	target := c.cfg.MaxRequestBytes
	sent := int64(0)
	// The final header carries the store's revision when the stream began,
	// as Range would report it, even for a read at a past revision.
	headerRev := int64(0)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		resp, err := c.rangeRead(r)
		if err != nil {
			return err
		}
		if headerRev == 0 {
			headerRev = resp.Header.Revision
			// Pin every later chunk to the revision the first one saw.
			if r.Revision == 0 {
				r.Revision = headerRev
			}
		}
		sent += int64(len(resp.Kvs))
		out := &pb.RangeResponse{Kvs: resp.Kvs}
		last := !resp.More || sent == total
		if last {
			out.Header = c.header(headerRev)
			out.More = resp.More
			// resp.Count counts from this chunk's first key to the end of
			// the range; add what earlier chunks returned.
			out.Count = sent - int64(len(resp.Kvs)) + resp.Count
		}
		// Nothing is sent that a permission revoked meanwhile denies.
		if err := c.auth.Current().CheckStale(id); err != nil {
			return err
		}
		if err := send(out); err != nil {
			return err
		}
		if last {
			return nil
		}
		r.Key = append(bytes.Clone(resp.Kvs[len(resp.Kvs)-1].Key), 0)
		size := proto.Size(resp)
		switch {
		case size < target/2:
			r.Limit *= 2
		case size > target*2:
			r.Limit /= 2
		}
		r.Limit = max(1, min(r.Limit, total-sent))
	}
}

// ValidateRangeStream checks what RangeStream accepts: any valid range in
// key order without revision filters (chunking relies on key order, and a
// filter would make chunk sizes unpredictable).
func ValidateRangeStream(req *pb.RangeRequest) error {
	if err := mvcc.ValidateRange(req); err != nil {
		return err
	}
	if req.SortOrder != pb.RangeRequest_NONE && (req.SortTarget != pb.RangeRequest_KEY || req.SortOrder != pb.RangeRequest_ASCEND) {
		return ErrStreamSortOrder
	}
	if req.MinModRevision != 0 || req.MaxModRevision != 0 || req.MinCreateRevision != 0 || req.MaxCreateRevision != 0 {
		return ErrStreamRevisionFilter
	}
	return nil
}

// rangeRead reads one MVCC range, timed as etcd times each of its range
// reads.
func (c *Client) rangeRead(r *pb.RangeRequest) (*pb.RangeResponse, error) {
	start := time.Now()
	resp, err := c.kv.Range(r)
	c.applyMetrics.ranged(start, err)
	return resp, err
}
