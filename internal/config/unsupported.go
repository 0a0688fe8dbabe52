package config

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// flagKind is the type of an inert flag's value.
type flagKind int

const (
	textFlag flagKind = iota
	boolFlag
	durationFlag
	intFlag
	uintFlag
	urlsFlag    // URLs; def is also the one value taken as it is
	choicesFlag // v2-deprecation's words
	legacyFlag  // etcd 2 flags that etcd ignores
)

// inertFlag is an etcd flag Cairn accepts without acting on it.
type inertFlag struct {
	name string
	kind flagKind
	def  string // etcd's default, in the form the flag's String gives
	// same are values that do in Cairn what def does, so warn no more than
	// def: "" for bbolt's freelist type, "stderr" for the log outputs.
	same  []string
	usage string
}

// Reasons for refusals, after "--flag: ".
const (
	refuseConfigFile = "configuration files are not supported yet (see docs/limitations.md), and ignoring one could drop its TLS or auth settings; give the settings as flags or ETCD_* variables"
	refuseUnixPeer   = "unix:// and unixs:// peer URLs are not supported yet (see docs/limitations.md); use http:// or https:// for peers"
	refuseDiscovery  = "discovery is not supported yet (see docs/limitations.md); refusing to bootstrap a one-member cluster instead"
)

// inertFlags are etcd 3.7's flags for features Cairn does not have, with
// etcd's types and defaults, so that a bad value fails as in etcd. One set
// to anything but its default is logged once at start, naming the flag.
var inertFlags = []inertFlag{
	// member
	{name: "wal-dir", usage: "Path to a dedicated WAL directory."},
	{name: "listen-client-http-urls", kind: urlsFlag, usage: "URLs to serve the HTTP-only client API on."},
	{name: "memory-mlock", kind: boolFlag, def: "false", usage: "Lock the member's pages in RAM."},
	{name: "backend-bbolt-freelist-type", def: "map", same: []string{""}, usage: "Freelist type of the bbolt backend."},
	{name: "backend-batch-interval", kind: durationFlag, def: "0s", usage: "Longest time before the backend commits a batch."},
	{name: "backend-batch-limit", kind: intFlag, def: "0", usage: "Most operations before the backend commits a batch."},
	{name: "enable-grpc-gateway", kind: boolFlag, def: "true", usage: "Serve the JSON gateway (Cairn always serves it)."},
	{name: "raft-read-timeout", kind: durationFlag, def: "5s", usage: "Read timeout of peer connections."},
	{name: "raft-write-timeout", kind: durationFlag, def: "5s", usage: "Write timeout of peer connections."},
	// clustering
	{name: "discovery", usage: "v2 discovery URL (listed by etcd 3.7's help, which no longer accepts it)."},
	{name: "discovery-proxy", usage: "HTTP proxy for v2 discovery (listed by etcd 3.7's help, which no longer accepts it)."},
	{name: "v2-deprecation", kind: choicesFlag, def: "write-only", usage: "v2store deprecation stage (etcd enforces its default whatever is given)."},
	// security
	// monitoring and logging
	{name: "logger", def: "zap", usage: "Logger; only zap."},
	{name: "enable-distributed-tracing", kind: boolFlag, def: "false", usage: "Export OpenTelemetry traces."},
	{name: "distributed-tracing-address", def: "localhost:4317", usage: "Trace collector address."},
	{name: "distributed-tracing-service-name", def: "etcd", usage: "Service name in traces."},
	{name: "distributed-tracing-instance-id", usage: "Instance ID in traces."},
	{name: "distributed-tracing-sampling-rate", kind: intFlag, def: "0", usage: "Samples per million spans."},
	// features
	{name: "bootstrap-defrag-threshold-megabytes", kind: uintFlag, def: "0", usage: "Defragment at start when it frees this much."},
	{name: "downgrade-check-time", kind: durationFlag, def: "5s", usage: "Period of downgrade status checks."},
	// etcd 2 flags that etcd 3.7 accepts and ignores.
	{name: "cluster-active-size", kind: legacyFlag},
	{name: "cluster-remove-delay", kind: legacyFlag},
	{name: "cluster-sync-interval", kind: legacyFlag},
	{name: "config", kind: legacyFlag},
	{name: "force", kind: legacyFlag},
	{name: "max-result-buffer", kind: legacyFlag},
	{name: "max-retry-attempts", kind: legacyFlag},
	{name: "peer-heartbeat-interval", kind: legacyFlag},
	{name: "peer-election-timeout", kind: legacyFlag},
	{name: "retry-interval", kind: legacyFlag},
	{name: "snapshot", kind: legacyFlag},
	{name: "v", kind: legacyFlag},
	{name: "vv", kind: legacyFlag},
}

// clusterFlags are cluster flags whose values Config keeps but which act on
// nothing in Cairn, each with the reason: set away from the default, they
// are logged as having no effect.
var clusterFlags = map[string]string{
	"max-snapshots":                      "Cairn keeps no snapshot files; a raft snapshot is the engine's state",
	"max-wals":                           "Cairn keeps one raft log file, rewritten in place when compacted",
	"discovery-token":                    "no discovery service is supported",
	"discovery-dial-timeout":             "no discovery service is supported",
	"discovery-request-timeout":          "no discovery service is supported",
	"discovery-keepalive-time":           "no discovery service is supported",
	"discovery-keepalive-timeout":        "no discovery service is supported",
	"discovery-insecure-transport":       "no discovery service is supported",
	"discovery-insecure-skip-tls-verify": "no discovery service is supported",
	"discovery-cert":                     "no discovery service is supported",
	"discovery-key":                      "no discovery service is supported",
	"discovery-cacert":                   "no discovery service is supported",
	"discovery-user":                     "no discovery service is supported",
	"discovery-password":                 "no discovery service is supported",
	"discovery-srv-name":                 "no discovery service is supported",
}

// deprecatedFlags are etcd's warnings for deprecated flags, logged whenever
// the flag is given, as etcd does.
var deprecatedFlags = map[string]string{
	"max-snapshots":  "--max-snapshots is deprecated by etcd 3.6 and goes away in 3.8",
	"v2-deprecation": "--v2-deprecation is deprecated by etcd and goes away in 3.8; its default is enforced whatever is given",
}

// addInertFlags defines inertFlags and --config-file on fs.
func addInertFlags(fs *flag.FlagSet) {
	fs.String("config-file", "", "Path to an etcd configuration file (refused: not supported yet).")
	for _, f := range inertFlags {
		usage := f.usage + " No effect in Cairn."
		switch f.kind {
		case textFlag:
			fs.String(f.name, f.def, usage)
		case boolFlag:
			fs.Bool(f.name, mustParse(strconv.ParseBool(f.def)), usage)
		case durationFlag:
			fs.Duration(f.name, mustParse(time.ParseDuration(f.def)), usage)
		case intFlag:
			fs.Int(f.name, mustParse(strconv.Atoi(f.def)), usage)
		case uintFlag:
			fs.Uint(f.name, uint(mustParse(strconv.ParseUint(f.def, 10, 64))), usage)
		case urlsFlag:
			fs.Var(&urlsValue{raw: f.def, exceptions: []string{f.def}}, f.name, usage)
		case choicesFlag:
			v := &choicesValue{valids: []string{"write-only", "write-only-skip-check", "write-only-drop-data", "gone"}}
			if f.def != "" {
				v.vs = []string{f.def}
			}
			fs.Var(v, f.name, usage)
		case legacyFlag:
			fs.Var(new(legacyValue), f.name, "etcd 2 flag, ignored as etcd ignores it.")
		}
	}
}

func mustParse[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// notDefault reports whether flag name holds something other than its
// default.
func notDefault(fs *flag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	return f.Value.String() != f.DefValue
}

// checkRefusals returns the error for the first flag that asks for what
// Cairn refuses to start without: a configuration file, unix peer URLs,
// discovery. Flags at their defaults never are.
func checkRefusals(fs *flag.FlagSet, c *Config) error {
	if notDefault(fs, "config-file") {
		return fmt.Errorf("--config-file: %s", refuseConfigFile)
	}
	peerFlags := []struct {
		name string
		urls []url.URL
	}{
		{"listen-peer-urls", c.ListenPeerURLs},
		{"initial-advertise-peer-urls", c.InitialAdvertisePeerURLs},
	}
	for _, name := range sortedKeys(c.InitialCluster) {
		peerFlags = append(peerFlags, struct {
			name string
			urls []url.URL
		}{"initial-cluster", c.InitialCluster[name]})
	}
	for _, f := range peerFlags {
		for _, u := range f.urls {
			if u.Scheme == "unix" || u.Scheme == "unixs" {
				return fmt.Errorf("--%s: %s", f.name, refuseUnixPeer)
			}
		}
	}
	// etcd bootstraps from the discovery service instead of
	// --initial-cluster; Cairn would form a cluster of its own.
	switch {
	case len(c.Discovery.Endpoints) > 0:
		return fmt.Errorf("--discovery-endpoints: %s", refuseDiscovery)
	case c.Discovery.SRV != "":
		return fmt.Errorf("--discovery-srv: %s", refuseDiscovery)
	}
	return nil
}

// checkInert checks the values of inert, discovery and auto-compaction
// flags as etcd does when it starts, and sets c's auto-compaction fields.
func checkInert(fs *flag.FlagSet, c *Config, explicitCluster bool) error {
	get := func(name string) string { return fs.Lookup(name).Value.String() }
	d := c.Discovery
	n := 0
	for _, set := range []bool{explicitCluster, d.SRV != "", len(d.Endpoints) > 0} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New(`multiple discovery or bootstrap flags are set. Choose one of "initial-cluster", "discovery-endpoints" or "discovery-srv"`)
	}
	if (d.Token != "") != (len(d.Endpoints) > 0) {
		return errors.New("both --discovery-token and --discovery-endpoints must be set")
	}
	for _, ep := range d.Endpoints {
		if strings.TrimSpace(ep) == "" {
			return errors.New("--discovery-endpoints must not contain empty endpoints")
		}
	}
	if d.Fallback == "proxy" {
		return errors.New(`v2 proxy is deprecated, and --discovery-fallback can't be configured as "proxy"`)
	}
	if l := get("logger"); l != "zap" {
		return fmt.Errorf("unknown logger option %q", l)
	}
	if f := get("log-format"); f != "json" && f != "console" && f != "" {
		return fmt.Errorf("unknown log format: %s, supported values json, console", f)
	}
	mode := get("auto-compaction-mode")
	switch mode {
	case "periodic", "revision":
	case "":
		return errors.New("undefined auto-compaction-mode")
	default:
		return fmt.Errorf("unknown auto-compaction-mode %q", mode)
	}
	retention, err := parseCompactionRetention(mode, get("auto-compaction-retention"))
	if err != nil {
		return err
	}
	c.AutoCompactionMode, c.AutoCompactionRetention = mode, retention
	if retention < 0 {
		c.Warnings = append(c.Warnings, fmt.Sprintf("--auto-compaction-retention=%s is negative: auto-compaction stays off in Cairn (see docs/limitations.md)", get("auto-compaction-retention")))
	}
	if t := fs.Lookup("compact-hash-check-time").Value.(flag.Getter).Get().(time.Duration); t <= 0 {
		return fmt.Errorf("--compact-hash-check-time must be >0 (set to %v)", t)
	}
	if get("enable-distributed-tracing") == "true" {
		switch rate := fs.Lookup("distributed-tracing-sampling-rate").Value.(flag.Getter).Get().(int); {
		case rate < 0:
			return errors.New("distributed tracing configurition is not valid: (tracing sampling rate must be positive)")
		case rate > 1000000:
			return errors.New("distributed tracing configurition is not valid: (tracing sampling rate must be less than 1000000)")
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// parseCompactionRetention reads --auto-compaction-retention as etcd does:
// empty is 0 (disabled); a number that is not negative is hours in
// periodic mode and revisions in revision mode; anything else must be a
// duration, taken as it is in either mode (in revision mode, its count of
// nanoseconds is the number of revisions).
func parseCompactionRetention(mode, retention string) (time.Duration, error) {
	if retention == "" {
		return 0, nil
	}
	if n, err := strconv.Atoi(retention); err == nil && n >= 0 {
		if mode == "periodic" {
			return time.Duration(n) * time.Hour, nil
		}
		return time.Duration(n), nil
	}
	d, err := time.ParseDuration(retention)
	if err != nil {
		return 0, fmt.Errorf("error parsing CompactionRetention: %w", err)
	}
	return d, nil
}

// inertWarnings names every accepted flag that is set away from its default
// but has no effect in Cairn, in the flags' order, and etcd's deprecation
// warnings for the deprecated flags given.
func inertWarnings(fs *flag.FlagSet) []string {
	inert := map[string]bool{}
	same := map[string][]string{}
	for _, f := range inertFlags {
		inert[f.name] = true
		same[f.name] = f.same
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var out []string
	fs.VisitAll(func(f *flag.Flag) {
		if msg, ok := deprecatedFlags[f.Name]; ok && given[f.Name] {
			out = append(out, msg)
		}
		if v := f.Value.String(); v == f.DefValue || slices.Contains(same[f.Name], v) {
			return
		}
		if inert[f.Name] {
			out = append(out, fmt.Sprintf("--%s has no effect in Cairn; it is accepted for compatibility with etcd (see docs/limitations.md)", f.Name))
		} else if why, ok := clusterFlags[f.Name]; ok {
			out = append(out, fmt.Sprintf("--%s has no effect in Cairn (%s); it is accepted for compatibility with etcd (see docs/limitations.md)", f.Name, why))
		}
	})
	return out
}
