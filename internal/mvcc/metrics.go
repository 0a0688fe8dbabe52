package mvcc

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// opTally counts the operations of one of etcd's MVCC transactions, the
// unit etcd's operation counters are kept in: a range request, a read-only
// txn, the check phase or the write phase of a txn that writes, one put or
// delete request, the deletions of one lease revoke. A compare counts as a
// range, and so does the read of the previous value that prev_kv,
// ignore_value and ignore_lease ask of a put or a delete.
type opTally struct {
	ranges, puts, deletes int64
	// putBytes is the keys and values the puts wrote.
	putBytes int64
}

// opTotals sums the tallies of several transactions before they reach the
// counters, so that an Applier touches them once per commit.
type opTotals struct {
	opTally
	// txns counts the transactions of more than one operation, which is
	// what etcd's txn counter counts.
	txns int64
}

// add folds t into the totals and clears t.
func (s *opTotals) add(t *opTally) {
	if t.ranges+t.puts+t.deletes > 1 {
		s.txns++
	}
	s.ranges += t.ranges
	s.puts += t.puts
	s.deletes += t.deletes
	s.putBytes += t.putBytes
	*t = opTally{}
}

// metrics are the store's series, under etcd's names. Each KV has its own;
// Collectors hands them to the member's registry.
type metrics struct {
	ranges, puts, deletes, txns prometheus.Counter
	putBytes                    prometheus.Gauge
	keys, compactRev            prometheus.GaugeFunc
	// compacted counts the KV records compaction removed; hash and
	// hashRev time Hash and HashKV.
	compacted     prometheus.Counter
	hash, hashRev prometheus.Histogram
	// indexPause is, per compaction, how long the key index was locked
	// for it (in chunks here, where etcd's holds it once); dbPause times
	// each engine batch of a compaction, its scan and commit, and dbTotal
	// the engine part of a compaction as a whole, in milliseconds as
	// etcd's; lastCompaction is the Unix time the last one ended.
	indexPause, dbPause, dbTotal prometheus.Histogram
	lastCompaction               prometheus.Gauge
}

// hashBuckets are etcd's for its hash histograms: 10 ms to about 160 s.
var hashBuckets = prometheus.ExponentialBuckets(.01, 2, 15)

func newMetrics(kv *KV) *metrics {
	return &metrics{
		ranges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_mvcc_range_total",
			Help: "Total number of ranges seen by this member.",
		}),
		puts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_mvcc_put_total",
			Help: "Total number of puts seen by this member.",
		}),
		deletes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_mvcc_delete_total",
			Help: "Total number of deletes seen by this member.",
		}),
		txns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_mvcc_txn_total",
			Help: "Total number of txns seen by this member.",
		}),
		putBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "etcd_debugging_mvcc_total_put_size_in_bytes",
			Help: "The total size of put kv pairs seen by this member.",
		}),
		keys: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "etcd_debugging_mvcc_keys_total",
			Help: "Total number of keys.",
		}, func() float64 { return float64(kv.live.Load()) }),
		compactRev: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "etcd_debugging_mvcc_compact_revision",
			Help: "The revision of the last compaction in store.",
		}, func() float64 { return float64(kv.CompactRev()) }),
		compacted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_debugging_mvcc_db_compaction_keys_total",
			Help: "Total number of db keys compacted.",
		}),
		hash: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "etcd_mvcc_hash_duration_seconds",
			Help:    "The latency distribution of storage hash operation.",
			Buckets: hashBuckets,
		}),
		hashRev: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "etcd_mvcc_hash_rev_duration_seconds",
			Help:    "The latency distribution of storage hash by revision operation.",
			Buckets: hashBuckets,
		}),
		// etcd's buckets: from 0.5 ms, 1 ms and 100 ms, doubling up to
		// about 4 s, 4 s and 8 s.
		indexPause: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds",
			Help:    "Bucketed histogram of index compaction pause duration.",
			Buckets: prometheus.ExponentialBuckets(0.5, 2, 14),
		}),
		dbPause: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
			Help:    "Bucketed histogram of db compaction pause duration.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13),
		}),
		dbTotal: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
			Help:    "Bucketed histogram of db compaction total duration.",
			Buckets: prometheus.ExponentialBuckets(100, 2, 14),
		}),
		lastCompaction: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "etcd_debugging_mvcc_db_compaction_last",
			Help: "The unix time of the last db compaction. Resets to 0 on start.",
		}),
	}
}

// sinceMs observes the whole milliseconds from start in h, as etcd's
// compaction histograms count them.
func sinceMs(h prometheus.Histogram, start time.Time) {
	h.Observe(float64(time.Since(start) / time.Millisecond))
}

// since observes the time from start in h.
func since(h prometheus.Histogram, start time.Time) { h.Observe(time.Since(start).Seconds()) }

// record adds the totals of finished transactions to the counters.
func (m *metrics) record(s opTotals) {
	add := func(c prometheus.Counter, n int64) {
		if n != 0 {
			c.Add(float64(n))
		}
	}
	add(m.ranges, s.ranges)
	add(m.puts, s.puts)
	add(m.deletes, s.deletes)
	add(m.txns, s.txns)
	if s.putBytes != 0 {
		m.putBytes.Add(float64(s.putBytes))
	}
}

// recordOne adds one finished transaction's tally to the counters.
func (m *metrics) recordOne(t *opTally) {
	var s opTotals
	s.add(t)
	m.record(s)
}

// Collectors returns the store's metrics, for the caller to register.
func (kv *KV) Collectors() []prometheus.Collector {
	m := kv.metrics
	return []prometheus.Collector{m.ranges, m.puts, m.deletes, m.txns, m.putBytes, m.keys, m.compactRev, m.compacted, m.hash, m.hashRev,
		m.indexPause, m.dbPause, m.dbTotal, m.lastCompaction}
}
