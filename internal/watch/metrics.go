package watch

import "github.com/prometheus/client_golang/prometheus"

// Collectors returns the watch service's series, under etcd's names: the
// open streams, their watchers, the watchers not synced with the live
// events (etcd's slow watchers), the events sent, and those waiting in the
// streams' outboxes to be sent. Each is read from the streams when
// scraped, so that a stream's sending touches no shared counter; the
// caller registers them.
func (h *Hub) Collectors() []prometheus.Collector {
	// sum adds up of over the open streams, starting from closed.
	sum := func(of func(s *Stream) int64, closed *int64) func() float64 {
		return func() float64 {
			h.mu.Lock()
			defer h.mu.Unlock()
			n := int64(0)
			if closed != nil {
				n = *closed
			}
			for s := range h.subs {
				n += of(s)
			}
			return float64(n)
		}
	}
	gauge := func(name, help string, of func(s *Stream) int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, sum(of, nil))
	}
	return []prometheus.Collector{
		gauge("etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams.",
			func(*Stream) int64 { return 1 }),
		gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers.",
			func(s *Stream) int64 { return s.watchers.Load() }),
		gauge("etcd_debugging_mvcc_slow_watcher_total", "Total number of unsynced slow watchers.",
			func(s *Stream) int64 { return s.slow.Load() }),
		gauge("etcd_debugging_mvcc_pending_events_total", "Total number of pending events to be sent.",
			func(s *Stream) int64 { return s.box.pending.Load() }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "etcd_debugging_mvcc_events_total",
			Help: "Total number of events sent by this member.",
		}, sum(func(s *Stream) int64 { return s.box.sent.Load() }, &h.sentByClosed)),
	}
}
