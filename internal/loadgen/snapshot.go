package loadgen

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// SnapshotOptions shape a snapshot workload: DataBytes of values loaded
// under Prefix by Loaders goroutines, then one Maintenance.Snapshot taken
// while Writers goroutines keep putting.
type SnapshotOptions struct {
	DataBytes int64 // value bytes loaded before the snapshot; default 1 GiB
	ValueSize int   // bytes per loaded value; default 100 KiB
	Loaders   int   // goroutines loading, over cfg.Conns connections; default 8
	// Writers put WriterValueSize-byte values to random keys of their own
	// (1000 of them, beside Prefix) from before the snapshot starts until
	// it has been received, over a connection of their own; default 1 and
	// 256 bytes. Small values keep what the writers add to the store out
	// of the memory figures.
	Writers         int
	WriterValueSize int
	// Settle is how long the server's resident memory must stay within
	// 8 MiB before the "RSS before" reading; default 10s, waited for at
	// most 20 times as long.
	Settle time.Duration
	Sample time.Duration // interval of resident memory readings during the snapshot; default 50ms
	// PprofURL, if set, is the server's pprof address (its client URL and
	// /debug/pprof, as etcd's and Cairn's --enable-pprof serve it). Before
	// its memory settles, the server is made to collect its garbage
	// through /heap?gc=1: otherwise the garbage loading left, which an
	// idle Go server keeps until its next collection, is room the
	// snapshot's allocations reuse unseen, and the growth is understated.
	PprofURL string
	// Dir is where the snapshot is saved to be checked; the file is
	// removed at the end. Default os.TempDir().
	Dir    string
	Prefix string // keys are Prefix+number; default "loadgen/snapshot/"
}

// maxSnapshotData bounds what the snapshot workload loads.
const maxSnapshotData = 64 << 30

func (o SnapshotOptions) withDefaults() (SnapshotOptions, error) {
	if o.DataBytes <= 0 {
		o.DataBytes = 1 << 30
	}
	if o.ValueSize <= 0 {
		o.ValueSize = 100 << 10
	}
	if o.Loaders <= 0 {
		o.Loaders = 8
	}
	if o.Writers <= 0 {
		o.Writers = 1
	}
	if o.WriterValueSize <= 0 {
		o.WriterValueSize = 256
	}
	if o.Settle <= 0 {
		o.Settle = 10 * time.Second
	}
	if o.Sample <= 0 {
		o.Sample = 50 * time.Millisecond
	}
	if o.Dir == "" {
		o.Dir = os.TempDir()
	}
	if o.Prefix == "" {
		o.Prefix = "loadgen/snapshot/"
	}
	if o.PprofURL != "" {
		if err := checkLoopback(o.PprofURL); err != nil {
			return o, err
		}
	}
	if o.DataBytes > maxSnapshotData || o.keys() > MaxTotal || o.Loaders > MaxClients || o.Writers > MaxClients {
		return o, fmt.Errorf("loadgen: snapshot of %d bytes in %d-byte values by %d loaders and %d writers is over the limits",
			o.DataBytes, o.ValueSize, o.Loaders, o.Writers)
	}
	return o, nil
}

// keys is the number of keys loaded: enough values to reach DataBytes.
func (o SnapshotOptions) keys() int {
	return int((o.DataBytes + int64(o.ValueSize) - 1) / int64(o.ValueSize))
}

func (o SnapshotOptions) key(i int) string { return fmt.Sprintf("%s%08d", o.Prefix, i) }

// writerKeys is the number of keys the writers overwrite during the
// snapshot, under a prefix of their own beside Prefix, so that the loaded
// data stays as it was for a later run.
const writerKeys = 1000

func (o SnapshotOptions) writerKey(i int) string {
	return fmt.Sprintf("%s-writer/%04d", strings.TrimSuffix(o.Prefix, "/"), i)
}

// Snapshot measures Maintenance.Snapshot on a large store under writes.
// It loads opts.DataBytes of values (unless the store already holds
// them, from an earlier run), waits for the server's resident
// memory to settle, then starts the writers and takes one snapshot,
// saving the stream to a file while it reads the server's resident memory
// every opts.Sample. It then checks the file: its last 32 bytes must be
// the SHA-256 of the rest, and the bbolt database before them must hold
// every loaded key, no gap in its revisions (unless it records a
// compaction), and a newest revision between the store's revision just
// before the snapshot was asked for and just after it was received: one
// moment's state, nothing torn. A failed check counts as an error.
//
// Result.Requests counts the loading puts and the writers' puts;
// Throughput and Latency are the writers'. The figures are in
// Result.Metrics, headed by "snapshot MB/s"; the memory figures need
// cfg.ServerPID. The loaded keys are left in the store.
func Snapshot(ctx context.Context, cfg Config, opts SnapshotOptions) (Result, error) {
	cfg, err := cfg.normaliseScenario(4)
	if err != nil {
		return Result{}, err
	}
	if opts, err = opts.withDefaults(); err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.MaxDuration)
	defer cancel()
	conns, writer, err := dialWithWriter(ctx, cfg)
	if err != nil {
		return Result{}, err
	}
	defer closeAll(append(conns, writer))
	start := time.Now()
	res := Result{Workload: "snapshot", Clients: opts.Loaders, Conns: cfg.Conns}
	var m, load metrics // load's figures follow the snapshot's

	// Load, unless an earlier run left the same data.
	n := opts.keys()
	loaded := int64(n)
	if !alreadyLoaded(ctx, cfg, writer, opts, n) {
		var (
			loadTime time.Duration
			loadErrs *tally
		)
		loaded, loadTime, loadErrs = loadSnapshotData(ctx, cfg, conns, opts, n)
		loadErrs.into(&res)
		res.Requests = n
		if ctx.Err() != nil {
			res.Incomplete = true
			return res, nil
		}
		load.add("load rate", float64(loaded)*float64(opts.ValueSize)/1e6/loadTime.Seconds(), "MB/s", "")
	} else {
		load.add("load skipped", 1, "", "")
	}
	load.add("data loaded", float64(loaded)*float64(opts.ValueSize)/(1<<20), "MiB", "")

	var (
		rssBefore  int64
		settleTime time.Duration
		settled    bool
	)
	if opts.PprofURL != "" {
		if err := collectGarbage(ctx, opts.PprofURL); err != nil {
			res.countError(err.Error())
		}
	}
	if cfg.ServerPID > 0 {
		rssBefore, settleTime, settled = settledRSS(ctx, cfg.ServerPID, opts.Settle)
	}

	// Writers run from before the snapshot is asked for until after it has
	// been received.
	wctx, stopWriters := context.WithCancel(ctx)
	var (
		okPuts  atomic.Int64
		putLats latencies
		putErrs tally
		wg      sync.WaitGroup
	)
	wval := randomValue(opts.WriterValueSize)
	for range opts.Writers {
		wg.Go(func() {
			for wctx.Err() == nil {
				rctx, cancel := context.WithTimeout(wctx, cfg.RequestTimeout)
				t0 := time.Now()
				_, err := writer.Put(rctx, opts.writerKey(mrand.IntN(writerKeys)), wval)
				cancel()
				switch {
				case err == nil:
					putLats.add(time.Since(t0))
					okPuts.Add(1)
				case wctx.Err() == nil:
					putErrs.fail(err)
				}
			}
		})
	}
	// The snapshot starts once the writers are under way.
	for deadline := time.Now().Add(cfg.RequestTimeout); okPuts.Load() == 0 && time.Now().Before(deadline) && ctx.Err() == nil; {
		sleepCtx(ctx, time.Millisecond)
	}

	var sampler *rssSampler
	if cfg.ServerPID > 0 {
		sampler = sampleRSS(cfg.ServerPID, opts.Sample)
	}
	revBefore, errBefore := currentRevision(ctx, cfg, writer)
	putsBefore := okPuts.Load()
	t0 := time.Now()
	path, size, errSnap := saveSnapshot(ctx, conns[0], opts.Dir)
	took := time.Since(t0)
	putsDuring := okPuts.Load() - putsBefore
	var rssPeak int64
	var samples int
	if sampler != nil {
		rssPeak, samples = sampler.stop()
	}
	revAfter, errAfter := currentRevision(ctx, cfg, writer)
	stopWriters()
	wg.Wait()
	if path != "" {
		defer os.Remove(path)
	}
	putErrs.into(&res)
	res.Requests += int(okPuts.Load())
	res.Latency, _ = putLats.summary()
	res.Throughput = float64(putsDuring) / took.Seconds()
	for _, err := range []error{errBefore, errSnap, errAfter} {
		if err != nil {
			res.countError(err.Error())
		}
	}

	m.add("snapshot MB/s", float64(size)/1e6/took.Seconds(), "MB/s", "higher")
	m.add("snapshot size", float64(size)/(1<<20), "MiB", "")
	m.add("snapshot duration", took.Seconds(), "s", "lower")
	if cfg.ServerPID > 0 {
		m.add("RSS before", float64(rssBefore)/(1<<20), "MiB", "")
		m.add("RSS peak", float64(rssPeak)/(1<<20), "MiB", "")
		m.add("RSS growth", float64(rssPeak-rssBefore)/(1<<20), "MiB", "lower")
		if after, err := processRSS(cfg.ServerPID); err == nil {
			m.add("RSS after", float64(after)/(1<<20), "MiB", "")
		}
		m.add("RSS samples", float64(samples), "", "")
		m.add("RSS settle wait", settleTime.Seconds(), "s", "")
		if !settled {
			// Not an error: the growth figure is then less certain.
			m.add("RSS not settled", 1, "", "")
		}
	}
	m.add("puts during snapshot", float64(putsDuring), "", "")
	m.ms("put p99", res.Latency.P99, "lower")
	m = append(m, load...)

	if errSnap == nil && errBefore == nil && errAfter == nil {
		chk, err := checkSnapshot(path, size, opts.Prefix)
		if err != nil {
			res.countError(err.Error())
		} else {
			for _, p := range chk.problems(revBefore, revAfter, loaded) {
				res.countError("snapshot check: " + p)
			}
			m.add("revision before", float64(revBefore), "", "")
			m.add("snapshot revision", float64(chk.revision), "", "")
			m.add("revision after", float64(revAfter), "", "")
			m.add("loaded keys in snapshot", float64(chk.keys), "", "")
		}
	}
	res.Elapsed = time.Since(start)
	res.Incomplete = ctx.Err() != nil
	res.Metrics = m
	return res, nil
}

// alreadyLoaded reports whether the store holds the n keys of opts, with
// values of opts.ValueSize, as a run against the same server leaves them:
// a second run, after the server restarted, then measures a snapshot of a
// store the server has not just been handed.
func alreadyLoaded(ctx context.Context, cfg Config, cli *clientv3.Client, opts SnapshotOptions, n int) bool {
	rctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
	defer cancel()
	count, err := cli.Get(rctx, opts.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || count.Count != int64(n) {
		return false
	}
	last, err := cli.Get(rctx, opts.key(n-1))
	return err == nil && len(last.Kvs) == 1 && len(last.Kvs[0].Value) == opts.ValueSize
}

// loadSnapshotData puts n values of opts.ValueSize from opts.Loaders
// goroutines over conns, key i to opts.key(i), and returns how many
// succeeded and how long it took.
func loadSnapshotData(ctx context.Context, cfg Config, conns []*clientv3.Client, opts SnapshotOptions, n int) (int64, time.Duration, *tally) {
	var (
		next, ok atomic.Int64
		errs     tally
		wg       sync.WaitGroup
	)
	val := randomValue(opts.ValueSize)
	start := time.Now()
	for l := range opts.Loaders {
		cli := conns[l%len(conns)]
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				rctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
				_, err := cli.Put(rctx, opts.key(i), val)
				cancel()
				if err != nil {
					errs.fail(err)
					continue
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	return ok.Load(), time.Since(start), &errs
}

// collectGarbage makes the Go server whose pprof handlers are at
// pprofURL run a garbage collection, by asking for a heap profile taken
// after one.
func collectGarbage(ctx context.Context, pprofURL string) error {
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, strings.TrimSuffix(pprofURL, "/")+"/heap?gc=1", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("collect the server's garbage: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("collect the server's garbage: %s from %s", resp.Status, req.URL)
	}
	return nil
}

// currentRevision returns the store's revision by a linearizable read.
func currentRevision(ctx context.Context, cfg Config, cli *clientv3.Client) (int64, error) {
	rctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
	defer cancel()
	r, err := cli.Get(rctx, "\x00loadgen-revision", clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("read revision: %w", err)
	}
	return r.Header.Revision, nil
}

// saveSnapshot receives a snapshot into a new file in dir, as etcdctl
// snapshot save does, and returns the file and its size (the database
// and the SHA-256 after it). On error the file is removed.
func saveSnapshot(ctx context.Context, cli *clientv3.Client, dir string) (string, int64, error) {
	f, err := os.CreateTemp(dir, "loadgen-snapshot-*.db")
	if err != nil {
		return "", 0, err
	}
	rc, err := cli.Snapshot(ctx)
	var n int64
	if err == nil {
		n, err = io.Copy(f, rc)
		rc.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", n, fmt.Errorf("snapshot: %w", err)
	}
	return f.Name(), n, nil
}

// snapshotCheck is what checkSnapshot found in a snapshot file.
type snapshotCheck struct {
	revision  int64   // newest main revision in the key bucket
	keys      int64   // distinct keys under the prefix
	gaps      []int64 // main revisions missing between the oldest and newest
	compacted bool    // the file records a finished compaction, which leaves gaps
}

// checkSnapshot checks the SHA-256 trailer of the snapshot at path, of
// size bytes, cuts it off, and reads the key bucket of the bbolt
// database that remains.
func checkSnapshot(path string, size int64, prefix string) (snapshotCheck, error) {
	var chk snapshotCheck
	if size <= sha256.Size {
		return chk, fmt.Errorf("snapshot check: %d bytes is too short", size)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return chk, err
	}
	h := sha256.New()
	_, err = io.Copy(h, io.LimitReader(f, size-sha256.Size))
	trailer := make([]byte, sha256.Size)
	if err == nil {
		_, err = io.ReadFull(f, trailer)
	}
	if err == nil && !bytes.Equal(h.Sum(nil), trailer) {
		err = fmt.Errorf("snapshot check: the last 32 bytes are not the SHA-256 of the rest")
	}
	if err == nil {
		err = f.Truncate(size - sha256.Size)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return chk, err
	}

	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return chk, fmt.Errorf("snapshot check: open bbolt: %w", err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		if meta := tx.Bucket([]byte("meta")); meta != nil {
			chk.compacted = meta.Get([]byte("finishedCompactRev")) != nil
		}
		b := tx.Bucket([]byte("key"))
		if b == nil {
			return fmt.Errorf("no key bucket")
		}
		seen := make(map[string]bool)
		var prev int64
		return b.ForEach(func(k, v []byte) error {
			if len(k) < 17 || k[8] != '_' {
				return fmt.Errorf("malformed revision %x", k)
			}
			main := int64(binary.BigEndian.Uint64(k[:8]))
			if prev > 0 && main > prev+1 && len(chk.gaps) < 10 {
				chk.gaps = append(chk.gaps, prev+1)
			}
			prev = main
			chk.revision = max(chk.revision, main)
			var kv mvccpb.KeyValue
			if err := proto.Unmarshal(v, &kv); err != nil {
				return fmt.Errorf("revision %x: %w", k, err)
			}
			if key := string(kv.Key); strings.HasPrefix(key, prefix) && !seen[key] {
				seen[key] = true
				chk.keys++
			}
			return nil
		})
	})
	if err != nil {
		return chk, fmt.Errorf("snapshot check: %w", err)
	}
	return chk, nil
}

// problems lists what is wrong with a snapshot taken between revisions
// before and after of a store into which loaded keys were put.
func (c snapshotCheck) problems(before, after, loaded int64) []string {
	var ps []string
	if c.revision < before || c.revision > after {
		ps = append(ps, fmt.Sprintf("newest revision %d is outside [%d, %d], the revisions before and after", c.revision, before, after))
	}
	if c.keys != loaded {
		ps = append(ps, fmt.Sprintf("%d loaded keys, want %d", c.keys, loaded))
	}
	if len(c.gaps) > 0 && !c.compacted {
		ps = append(ps, fmt.Sprintf("revisions missing from %v", c.gaps))
	}
	return ps
}

// settleBand is how far the server's resident memory may move within the
// settling window. A garbage-collected server returns the memory that
// loading freed to the system over tens of seconds; a snapshot's growth is
// measured from where that stops.
const settleBand = 8 << 20

// settledRSS waits until the resident memory of process pid has stayed
// within settleBand for window, or 20 windows have passed, and returns the
// median of the last window's readings, the time waited, and whether it
// settled.
func settledRSS(ctx context.Context, pid int, window time.Duration) (int64, time.Duration, bool) {
	type reading struct {
		at  time.Time
		rss int64
	}
	every := max(window/20, 10*time.Millisecond)
	start := time.Now()
	var rs []reading
	for {
		if rss, err := processRSS(pid); err == nil {
			rs = append(rs, reading{time.Now(), rss})
		}
		for len(rs) > 0 && time.Since(rs[0].at) > window {
			rs = rs[1:]
		}
		if len(rs) > 0 {
			xs := make([]int64, len(rs))
			for i, r := range rs {
				xs[i] = r.rss
			}
			slices.Sort(xs)
			settled := time.Since(start) >= window && xs[len(xs)-1]-xs[0] <= settleBand
			if settled || time.Since(start) >= 20*window || ctx.Err() != nil {
				return xs[len(xs)/2], time.Since(start), settled
			}
		}
		if !sleepCtx(ctx, every) && len(rs) == 0 {
			return 0, time.Since(start), false
		}
	}
}

// rssSampler reads a process's resident memory at an interval and keeps
// the highest reading.
type rssSampler struct {
	done    chan struct{}
	wg      sync.WaitGroup
	peak    int64
	samples int
}

func sampleRSS(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{done: make(chan struct{})}
	read := func() {
		if rss, err := processRSS(pid); err == nil {
			s.peak = max(s.peak, rss)
			s.samples++
		}
	}
	read()
	s.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				read()
			case <-s.done:
				read()
				return
			}
		}
	})
	return s
}

// stop ends the sampling and returns the highest reading and the number
// of readings.
func (s *rssSampler) stop() (int64, int) {
	close(s.done)
	s.wg.Wait()
	return s.peak, s.samples
}
