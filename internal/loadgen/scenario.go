package loadgen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"
)

// Metric is one named figure of a watch or lease workload.
type Metric struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Better says which way is good: "higher", "lower", or empty for a
	// figure that gives context but is not a score.
	Better string `json:"better,omitempty"`
}

// Metric returns the figure called name and whether r has it.
func (r Result) Metric(name string) (Metric, bool) {
	for _, m := range r.Metrics {
		if m.Name == name {
			return m, true
		}
	}
	return Metric{}, false
}

// metrics accumulates a workload's figures in order.
type metrics []Metric

func (m *metrics) add(name string, v float64, unit, better string) {
	*m = append(*m, Metric{Name: name, Value: v, Unit: unit, Better: better})
}

func (m *metrics) ms(name string, d time.Duration, better string) {
	m.add(name, float64(d)/float64(time.Millisecond), "ms", better)
}

// normaliseScenario checks what the watch and lease workloads use of a
// Config: loopback endpoints, Conns (default conns), RequestTimeout and
// MaxDuration. Clients and Total are theirs to ignore.
func (c Config) normaliseScenario(conns int) (Config, error) {
	if len(c.Endpoints) == 0 {
		return c, errors.New("loadgen: no endpoints")
	}
	for _, ep := range c.Endpoints {
		if err := checkLoopback(ep); err != nil {
			return c, err
		}
	}
	if c.Conns <= 0 {
		c.Conns = conns
	}
	if c.Conns > MaxClients {
		return c, fmt.Errorf("loadgen: %d connections is more than the limit of %d", c.Conns, MaxClients)
	}
	if c.MaxDuration <= 0 || c.MaxDuration > MaxDuration {
		c.MaxDuration = MaxDuration
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = defaultTimeout
	}
	c.Clients, c.Total = c.Conns, 1
	return c, nil
}

// dialWithWriter dials cfg's connections for the watchers or lease
// clients of a workload, and one more of its own for the writer, so that
// the writer's requests never queue behind theirs.
func dialWithWriter(ctx context.Context, cfg Config) (conns []*clientv3.Client, writer *clientv3.Client, err error) {
	if conns, err = dial(ctx, cfg); err != nil {
		return nil, nil, err
	}
	wcfg := cfg
	wcfg.Conns = 1
	w, err := dial(ctx, wcfg)
	if err != nil {
		closeAll(conns)
		return nil, nil, err
	}
	return conns, w[0], nil
}

// countError records one failure of the given kind in r.
func (r *Result) countError(kind string) {
	r.Errors++
	if r.ErrorKinds == nil {
		r.ErrorKinds = make(map[string]int)
	}
	r.ErrorKinds[kind]++
}

// closeAll closes every client of conns.
func closeAll(conns []*clientv3.Client) {
	for _, c := range conns {
		c.Close()
	}
}

// streamContext returns a context whose outgoing gRPC metadata names
// stream n. clientv3 multiplexes every Watch call of a client whose
// context carries the same metadata onto one gRPC Watch stream, so
// distinct metadata is how a client opens several streams.
func streamContext(ctx context.Context, n int) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "loadgen-watch-stream", strconv.Itoa(n))
}

// tally counts errors by message from many goroutines; the first
// maxErrorKinds distinct messages are kept.
type tally struct {
	mu    sync.Mutex
	n     int
	kinds map[string]int
}

func (t *tally) fail(err error) {
	t.failMsg(err.Error())
}

func (t *tally) failMsg(k string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n++
	if t.kinds == nil {
		t.kinds = make(map[string]int)
	}
	if _, ok := t.kinds[k]; !ok && len(t.kinds) >= maxErrorKinds {
		k = "(other errors)"
	}
	t.kinds[k]++
}

func (t *tally) into(r *Result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r.Errors += t.n
	for k, n := range t.kinds {
		if r.ErrorKinds == nil {
			r.ErrorKinds = make(map[string]int)
		}
		r.ErrorKinds[k] += n
	}
}

// latencies collects durations from many goroutines.
type latencies struct {
	mu   sync.Mutex
	lats []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.lats = append(l.lats, d)
	l.mu.Unlock()
}

func (l *latencies) summary() (Latency, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return summarise(l.lats), len(l.lats)
}

// processCPU returns the user+system CPU time of process pid from
// /proc/<pid>/stat.
func processCPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// utime and stime are fields 14 and 15 counted from the pid; the
	// command name before them may hold spaces, so count from its closing
	// parenthesis.
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0, fmt.Errorf("loadgen: /proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("loadgen: /proc/%d/stat: unexpected format", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("loadgen: /proc/%d/stat: unexpected format", pid)
	}
	// USER_HZ is 100 on Linux.
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// processRSS returns the resident set size of process pid in bytes, from
// VmRSS in /proc/<pid>/status.
func processRSS(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(raw)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb << 10, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("loadgen: /proc/%d/status: no VmRSS", pid)
}

// sleepCtx sleeps for d or until ctx is done, and reports whether it slept
// the whole time.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
