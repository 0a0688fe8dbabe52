// Package config parses Cairn's command line: every flag of etcd 3.7 with
// etcd's defaults and checks, their ETCD_* environment variables, and Cairn's
// own additions (--storage-engine, --http-listen-addr).
//
// A flag is in one of four groups. Cairn acts on the flags it implements.
// It keeps the values of a few cluster flags in Config although nothing
// acts on them (clusterFlags lists them, with the reason). It accepts
// the flags of features it lacks and warns when one is moved from its
// default (inertFlags). It refuses to start when a flag asks for a
// protection it cannot give, such as TLS over unix sockets (checkRefusals).
package config

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/tlsutil"

	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/tlsconfig"
)

// ErrFlagSyntax wraps errors of the command line's syntax (an unknown flag,
// a value of the wrong type), for which etcd exits with status 2 rather
// than 1.
var ErrFlagSyntax = errors.New("invalid command line")

// Config is a member's configuration.
type Config struct {
	Name                     string
	DataDir                  string
	ListenClientURLs         []url.URL
	AdvertiseClientURLs      []url.URL
	ListenPeerURLs           []url.URL
	InitialAdvertisePeerURLs []url.URL
	// InitialCluster maps member names to peer URLs.
	InitialCluster      map[string][]url.URL
	InitialClusterState string
	InitialClusterToken string
	SnapshotCount       uint64
	MaxRequestBytes     uint
	MaxTxnOps           uint
	QuotaBackendBytes   int64
	HeartbeatInterval   time.Duration
	ElectionTimeout     time.Duration
	LogLevel            string
	// LogOutputs are where logs go (--log-outputs): "default" or "stderr",
	// "stdout", "systemd/journal" (stderr, which journald collects under
	// systemd) or file paths. LogFormat is "json" or "console".
	LogOutputs []string
	LogFormat  string
	// StorageEngine is "memory" or "rocksdb".
	StorageEngine string
	// HTTPListenAddr is where Cairn's REST API listens (host:port); empty,
	// the default, serves no REST API, so a member opens no port etcd does
	// not.
	HTTPListenAddr string
	// EnablePprof serves Go's runtime profiles under /debug/pprof/ on the
	// client URLs, as etcd's --enable-pprof does.
	EnablePprof bool
	// Metrics is the detail of /metrics (--metrics): "extensive" adds the
	// gRPC handling-time histograms; any other value, as in etcd, is basic.
	Metrics string
	// ListenMetricsURLs are extra listeners serving only /metrics and the
	// health endpoints (--listen-metrics-urls).
	ListenMetricsURLs []url.URL
	// WatchProgressNotifyInterval is the period of progress notifications
	// to watchers that ask for them (--watch-progress-notify-interval).
	WatchProgressNotifyInterval time.Duration
	// WarningApplyDuration is the time past which an applied request, or a
	// read served without raft, is logged and counted as slow
	// (--warning-apply-duration; 0 warns of every one, as in etcd).
	WarningApplyDuration time.Duration
	// WarningUnaryRequestDuration is the time past which a unary client
	// call is logged as "request stats" (--warning-unary-request-duration).
	WarningUnaryRequestDuration time.Duration
	// GRPCKeepAliveMinTime is the shortest interval between a client's
	// pings the client server accepts; GRPCKeepAliveInterval how long a
	// client connection may be idle before the server pings it, and
	// GRPCKeepAliveTimeout how long it then waits for the answer
	// (--grpc-keepalive-*). As in etcd, a zero MinTime leaves gRPC's own
	// policy, and a zero Interval or Timeout gRPC's own pings.
	GRPCKeepAliveMinTime, GRPCKeepAliveInterval, GRPCKeepAliveTimeout time.Duration
	// EnableLogRotation rotates the one file among LogOutputs as
	// LogRotationConfigJSON says (--enable-log-rotation,
	// --log-rotation-config-json: lumberjack's maxsize in MB, maxage in
	// days, maxbackups, localtime, compress).
	EnableLogRotation     bool
	LogRotationConfigJSON string
	// SocketReusePort and SocketReuseAddress set SO_REUSEPORT and
	// SO_REUSEADDR on the client, peer and metrics listeners
	// (--socket-reuse-port, --socket-reuse-address).
	SocketReusePort, SocketReuseAddress bool
	// Features are etcd's server feature gates as --feature-gates sets
	// them, whether Cairn acts on them or not.
	Features []Feature
	// CompactionBatchLimit is the most revisions one engine batch of a
	// compaction deletes, and CompactionSleepInterval the pause between two
	// batches (--compaction-batch-limit, --compaction-sleep-interval); 0
	// takes etcd's defaults, 1000 and 10ms.
	CompactionBatchLimit    int
	CompactionSleepInterval time.Duration
	// CORS lists the origins allowed to read client HTTP answers (--cors)
	// and HostWhitelist the Host names plain-text client HTTP requests may
	// name (--host-whitelist); "*" allows all.
	CORS, HostWhitelist []string
	// MaxConcurrentStreams is the most streams (calls) a client connection
	// may have open at once (--max-concurrent-streams).
	MaxConcurrentStreams uint32
	// LeaseCheckpoint has the leader record leases' remaining TTLs through
	// raft every LeaseCheckpointInterval, so that a restart or a new
	// leader does not give every lease its whole TTL again (etcd's
	// LeaseCheckpoint feature gate; checkpoints are always persisted, as
	// LeaseCheckpointPersist asks and etcd 3.6 on does by default).
	LeaseCheckpoint bool
	// LeaseCheckpointInterval is the time between checkpoints of a lease
	// (5 minutes, etcd's default).
	LeaseCheckpointInterval time.Duration
	// InitialCorruptCheck has a member that restarts with data compare
	// its HashKV with its peers' before it serves, and refuse to start on
	// a mismatch (etcd's InitialCorruptCheck feature gate).
	InitialCorruptCheck bool
	// CorruptCheckTime is the period of the leader's corruption check of
	// the members' current hashes; 0 turns it off (--corrupt-check-time).
	CorruptCheckTime time.Duration
	// CompactHashCheck has the leader compare the hashes its compactions
	// computed with its peers' every CompactHashCheckTime (etcd's
	// CompactHashCheck feature gate, --compact-hash-check-time).
	CompactHashCheck     bool
	CompactHashCheckTime time.Duration
	// StrictReconfigCheck refuses membership changes that would cost the
	// cluster its quorum (--strict-reconfig-check).
	StrictReconfigCheck bool
	// InitialElectionTickAdvance fast-forwards the election ticks of a
	// starting member so that it campaigns sooner
	// (--initial-election-tick-advance).
	InitialElectionTickAdvance bool
	// PreVote enables raft's pre-vote, so that a member coming back from a
	// partition does not disrupt the leader (--pre-vote).
	PreVote bool
	// MaxLearners is the most learner members the membership may hold
	// (--max-learners).
	MaxLearners int
	// SnapshotCatchUpEntries is how many raft entries a compaction of the
	// log keeps behind the snapshot for slow followers
	// (--snapshot-catchup-entries).
	SnapshotCatchUpEntries uint64
	// MaxSnapshots and MaxWALs are how many snapshot and WAL files to keep,
	// 0 meaning all (--max-snapshots, deprecated by etcd, and --max-wals).
	MaxSnapshots uint
	MaxWALs      uint
	// ForceNewCluster restarts the member as the only member of a new
	// cluster, keeping its data (--force-new-cluster).
	ForceNewCluster bool
	// UnsafeNoFsync skips fsyncs, trading durability for speed
	// (--unsafe-no-fsync).
	UnsafeNoFsync bool
	// ClientTLS and PeerTLS are the TLS settings of the client URLs
	// (--cert-file, --key-file, --client-cert-auth, --trusted-ca-file, ...)
	// and of the peer URLs (--peer-cert-file, ...); --cipher-suites and
	// --tls-min/max-version apply to both. Each serves https:// URLs.
	ClientTLS tlsconfig.Info
	PeerTLS   tlsconfig.Info
	// ClientAutoTLS and PeerAutoTLS serve a generated self-signed
	// certificate, valid SelfSignedCertValidity years, when the side has
	// none of its own (--auto-tls, --peer-auto-tls).
	ClientAutoTLS          bool
	PeerAutoTLS            bool
	SelfSignedCertValidity uint
	// BcryptCost is the bcrypt cost of auth password hashes
	// (--bcrypt-cost); out of bcrypt's bounds, the auth package uses 10.
	BcryptCost int
	// AuthTokenTTL is how long a simple auth token lives after its last
	// use (--auth-token-ttl).
	AuthTokenTTL time.Duration
	// AuthToken is the kind of auth tokens, with the JWT keys read
	// (--auth-token).
	AuthToken auth.TokenConfig
	// AutoCompactionMode is "periodic" or "revision"
	// (--auto-compaction-mode).
	AutoCompactionMode string
	// AutoCompactionRetention is the history the leader keeps when it
	// compacts on its own (--auto-compaction-retention): a span of time in
	// periodic mode, a number of revisions (the Duration's count, as etcd
	// holds it) in revision mode. 0 disables auto-compaction.
	AutoCompactionRetention time.Duration
	// Discovery is bootstrapping through a discovery service instead of
	// --initial-cluster. Cairn refuses to start when it is asked for.
	Discovery Discovery
	// PrintVersion asks for the version lines instead of starting.
	PrintVersion bool
	// Warnings are problems worth logging that do not stop the start, such
	// as ETCD_ variables that name no flag.
	Warnings []string
}

// Discovery is etcd's v3 discovery (--discovery-* flags) and DNS SRV
// discovery (--discovery-srv, --discovery-srv-name).
type Discovery struct {
	// Endpoints are the gRPC endpoints of the discovery service and Token
	// names the cluster to bootstrap there; etcd requires both or neither.
	Endpoints []string
	Token     string
	// DialTimeout, RequestTimeout, KeepAliveTime and KeepAliveTimeout tune
	// the client of the discovery service.
	DialTimeout      time.Duration
	RequestTimeout   time.Duration
	KeepAliveTime    time.Duration
	KeepAliveTimeout time.Duration
	// InsecureTransport talks to the discovery service without TLS;
	// InsecureSkipTLSVerify skips the check of its certificate. Cert, Key
	// and CACert are the client's TLS files.
	InsecureTransport     bool
	InsecureSkipTLSVerify bool
	Cert                  string
	Key                   string
	CACert                string
	// User and Password authenticate to the discovery service.
	User     string
	Password string
	// SRV is the DNS domain whose SRV records list the members; SRVName is
	// a suffix to the SRV service name.
	SRV     string
	SRVName string
	// Fallback is what to do when discovery fails; etcd 3.7 accepts only
	// "exit".
	Fallback string
}

// EngineDir is where the storage engine keeps its files.
func (c *Config) EngineDir() string { return c.DataDir + "/" + c.StorageEngine }

// Default quota etcd applies when --quota-backend-bytes is 0 (2 GiB).
const defaultQuotaBackendBytes = 2 << 30

// Parse reads args (without the program name) and the environment (as
// os.Environ returns it). Usage errors go to errOut.
func Parse(args, environ []string, errOut io.Writer) (*Config, error) {
	fs := flag.NewFlagSet("cairn", flag.ContinueOnError)
	fs.SetOutput(errOut)
	var (
		name        = fs.String("name", "default", "Human-readable name for this member.")
		dataDir     = fs.String("data-dir", "", "Path to the data directory (default \"${name}.etcd\").")
		lcurls      = fs.String("listen-client-urls", "http://localhost:2379", "List of URLs to listen on for client traffic.")
		acurls      = fs.String("advertise-client-urls", "http://localhost:2379", "List of this member's client URLs to advertise to the public.")
		lpurls      = fs.String("listen-peer-urls", "http://localhost:2380", "List of URLs to listen on for peer traffic.")
		apurls      = fs.String("initial-advertise-peer-urls", "http://localhost:2380", "List of this member's peer URLs to advertise to the rest of the cluster.")
		icluster    = fs.String("initial-cluster", "", "Initial cluster configuration for bootstrapping (default \"${name}=${initial-advertise-peer-urls}\").")
		icstate     = fs.String("initial-cluster-state", "new", "Initial cluster state ('new' or 'existing').")
		ictoken     = fs.String("initial-cluster-token", "etcd-cluster", "Initial cluster token for the etcd cluster during bootstrap.")
		snapCount   = fs.Uint64("snapshot-count", 10000, "Number of committed transactions to trigger a snapshot to disk.")
		maxReq      = fs.Uint("max-request-bytes", 1572864, "Maximum client request size in bytes the server will accept.")
		maxTxnOps   = fs.Uint("max-txn-ops", 128, "Maximum number of operations permitted in a transaction.")
		quota       = fs.Int64("quota-backend-bytes", 0, "Raise alarms when backend size exceeds the given quota (0 defaults to low space quota).")
		heartbeat   = fs.Uint("heartbeat-interval", 100, "Time (in milliseconds) of a heartbeat interval.")
		election    = fs.Uint("election-timeout", 1000, "Time (in milliseconds) for an election to timeout.")
		logLevel    = fs.String("log-level", "info", "Configures log level. Only supports debug, info, warn, error, panic, or fatal.")
		logOutputs  = fs.String("log-outputs", "default", "Specify 'stdout' or 'stderr' to skip journald logging even when running under systemd, or list of comma separated output targets.")
		logFormat   = fs.String("log-format", "json", "Configures log format. Only supports json, console.")
		engine      = fs.String("storage-engine", "rocksdb", "Storage engine: 'rocksdb' or 'memory' (Cairn).")
		httpAddr    = fs.String("http-listen-addr", "", "host:port of Cairn's REST API, e.g. 127.0.0.1:8080; empty (default) serves no REST API (Cairn).")
		watchProg   = fs.Duration("watch-progress-notify-interval", 10*time.Minute, "Duration of periodic watch progress notifications.")
		warnApply   = fs.Duration("warning-apply-duration", 100*time.Millisecond, "Time duration after which a warning is generated if applying a request takes more time.")
		maxStreams  = uint32Value(math.MaxUint32)
		cors        = urlsValue{raw: "*", exceptions: []string{"*"}}
		hosts       = fs.String("host-whitelist", "*", "Comma-separated acceptable hostnames from HTTP client requests, if server is not secure (empty means allow all).")
		warnUnary   = fs.Duration("warning-unary-request-duration", 300*time.Millisecond, "Time duration after which a warning is generated if a unary request takes more time.")
		kaMinTime   = fs.Duration("grpc-keepalive-min-time", 5*time.Second, "Minimum interval duration that a client should wait before pinging server.")
		kaInterval  = fs.Duration("grpc-keepalive-interval", 2*time.Hour, "Frequency duration of server-to-client ping to check if a connection is alive (0 to disable).")
		kaTimeout   = fs.Duration("grpc-keepalive-timeout", 20*time.Second, "Additional duration of wait before closing a non-responsive connection (0 to disable).")
		logRotate   = fs.Bool("enable-log-rotation", false, "Enable log rotation of a single log-outputs file target.")
		logRotation = fs.String("log-rotation-config-json", `{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}`, "Configures log rotation if enabled with a JSON logger config. Default: MaxSize=100(MB), MaxAge=0(days,no limit), MaxBackups=0(no limit), LocalTime=false(UTC), Compress=false(gzip)")
		reusePort   = fs.Bool("socket-reuse-port", false, "Enable to set socket option SO_REUSEPORT on listeners allowing rebinding of a port already in use.")
		reuseAddr   = fs.Bool("socket-reuse-address", false, "Enable to set socket option SO_REUSEADDR on listeners allowing binding to an address in `TIME_WAIT` state.")
		compBatch   = fs.Int("compaction-batch-limit", 0, "Sets the maximum revisions deleted in each compaction batch.")
		compSleep   = fs.Duration("compaction-sleep-interval", 0, "Sets the sleep interval between each compaction batch.")
		gates       = featureGateFlag{}
		cpInterval  = fs.Duration("lease-checkpoint-interval", 5*time.Minute, "Duration of periodic lease checkpoints (with the LeaseCheckpoint feature gate).")
		corruptTime = fs.Duration("corrupt-check-time", 0, "Duration of time between cluster corruption check passes.")
		compactTime = fs.Duration("compact-hash-check-time", time.Minute, "Duration of time between leader checks followers compaction hashes (with the CompactHashCheck feature gate).")
		enablePprof = fs.Bool("enable-pprof", false, "Enable runtime profiling data via HTTP server. Address is at client URL + \"/debug/pprof/\"")
		metrics     = fs.String("metrics", "basic", "Set level of detail for exported metrics, specify 'extensive' to include server side grpc histogram metrics")
		lmurls      = urlsValue{exceptions: []string{""}}
		showVersion = fs.Bool("version", false, "Print the version and exit.")
	)
	fs.Var(&lmurls, "listen-metrics-urls", "List of URLs to listen on for the metrics and health endpoints.")
	fs.Var(&maxStreams, "max-concurrent-streams", "Maximum concurrent streams that each client can open at a time.")
	fs.Var(&cors, "cors", "Comma-separated white list of origins for CORS, or cross-origin resource sharing, (empty or * means allow all)")
	fs.Var(gates, "feature-gates", "A set of key=value pairs that describe server level feature gates for alpha/experimental features (LeaseCheckpoint, LeaseCheckpointPersist, InitialCorruptCheck, CompactHashCheck are honoured; etcd's other gates are accepted).")
	// etcd 3.5's spellings of flags above, still accepted.
	var (
		oldWatchProg  = fs.Duration("experimental-watch-progress-notify-interval", 10*time.Minute, "Deprecated: use --watch-progress-notify-interval.")
		oldCP         = fs.Bool("experimental-enable-lease-checkpoint", false, "Deprecated: use --feature-gates=LeaseCheckpoint=true.")
		oldCPPersist  = fs.Bool("experimental-enable-lease-checkpoint-persist", false, "Deprecated: use --feature-gates=LeaseCheckpointPersist=true.")
		oldCPInterval = fs.Duration("experimental-lease-checkpoint-interval", 5*time.Minute, "Deprecated: use --lease-checkpoint-interval.")
	)
	// Cluster flags, kept for the clustering work.
	var (
		strictReconfig = fs.Bool("strict-reconfig-check", true, "Reject reconfiguration requests that would cause quorum loss.")
		tickAdvance    = fs.Bool("initial-election-tick-advance", true, "Whether to fast-forward initial election ticks on boot for faster election.")
		preVote        = fs.Bool("pre-vote", true, "Enable raft's pre-vote, so that a member back from a partition does not disrupt the leader.")
		maxLearners    = fs.Int("max-learners", 1, "Most learner members allowed in the membership.")
		catchUp        = fs.Uint64("snapshot-catchup-entries", 5000, "Raft entries kept behind a snapshot for slow followers.")
		maxSnaps       = fs.Uint("max-snapshots", 5, "Snapshot files to keep (0 keeps all). Deprecated by etcd.")
		maxWALs        = fs.Uint("max-wals", 5, "WAL files to keep (0 keeps all).")
		forceNew       = fs.Bool("force-new-cluster", false, "Restart as the only member of a new cluster, keeping the data.")
		noFsync        = fs.Bool("unsafe-no-fsync", false, "Skip fsyncs (unsafe: loses data on a crash).")
		bcryptCost     = fs.Uint("bcrypt-cost", 10, "bcrypt cost of auth passwords.")
		authTokenTTL   = fs.Uint("auth-token-ttl", 300, "Lifetime in seconds of simple auth tokens.")
		authToken      = fs.String("auth-token", "simple", "Auth token type and options: simple, or jwt,sign-method=...,priv-key=...,pub-key=...,ttl=...")
		disc           = Discovery{Fallback: "exit"}
		discEndpoints  listValue
	)
	fs.Var(&discEndpoints, "discovery-endpoints", "V3 discovery: gRPC endpoints of the discovery service (refused: not supported yet).")
	fs.StringVar(&disc.Token, "discovery-token", "", "V3 discovery: token of the cluster to bootstrap.")
	fs.DurationVar(&disc.DialTimeout, "discovery-dial-timeout", 2*time.Second, "V3 discovery: dial timeout.")
	fs.DurationVar(&disc.RequestTimeout, "discovery-request-timeout", 5*time.Second, "V3 discovery: request timeout.")
	fs.DurationVar(&disc.KeepAliveTime, "discovery-keepalive-time", 2*time.Second, "V3 discovery: keepalive time.")
	fs.DurationVar(&disc.KeepAliveTimeout, "discovery-keepalive-timeout", 6*time.Second, "V3 discovery: keepalive timeout.")
	fs.BoolVar(&disc.InsecureTransport, "discovery-insecure-transport", true, "V3 discovery: talk to the service without TLS.")
	fs.BoolVar(&disc.InsecureSkipTLSVerify, "discovery-insecure-skip-tls-verify", false, "V3 discovery: skip the check of the service's certificate.")
	fs.StringVar(&disc.Cert, "discovery-cert", "", "V3 discovery: client TLS certificate file.")
	fs.StringVar(&disc.Key, "discovery-key", "", "V3 discovery: client TLS key file.")
	fs.StringVar(&disc.CACert, "discovery-cacert", "", "V3 discovery: CA bundle of the service.")
	fs.StringVar(&disc.User, "discovery-user", "", "V3 discovery: username[:password].")
	fs.StringVar(&disc.Password, "discovery-password", "", "V3 discovery: password.")
	fs.StringVar(&disc.SRV, "discovery-srv", "", "DNS domain whose SRV records list the members (refused: not supported yet).")
	fs.StringVar(&disc.SRVName, "discovery-srv-name", "", "Suffix to the DNS SRV name.")
	fs.String("auto-compaction-retention", "0", "Auto compaction retention for mvcc key value store. 0 means disable auto compaction.")
	fs.String("auto-compaction-mode", "periodic", "interpret 'auto-compaction-retention' one of: periodic|revision. 'periodic' for duration based retention, defaulting to hours if no time unit is provided (e.g. '5m'). 'revision' for revision number based retention.")
	// Security.
	var (
		ctls, ptls                                  tlsconfig.Info
		clientAllowedHosts, peerCNs, peerHosts, css listValue
		peerSkipSAN                                 bool
	)
	fs.StringVar(&ctls.CertFile, "cert-file", "", "Path to the client server TLS cert file.")
	fs.StringVar(&ctls.KeyFile, "key-file", "", "Path to the client server TLS key file.")
	fs.StringVar(&ctls.ClientCertFile, "client-cert-file", "", "Path to an explicit peer client TLS cert file otherwise cert file will be used when client auth is required.")
	fs.StringVar(&ctls.ClientKeyFile, "client-key-file", "", "Path to an explicit peer client TLS key file otherwise key file will be used when client auth is required.")
	fs.BoolVar(&ctls.ClientCertAuth, "client-cert-auth", false, "Enable client cert authentication.")
	fs.StringVar(&ctls.CRLFile, "client-crl-file", "", "Path to the client certificate revocation list file.")
	fs.Var(&clientAllowedHosts, "client-cert-allowed-hostname", "Comma-separated list of SAN hostnames for client cert authentication.")
	fs.StringVar(&ctls.TrustedCAFile, "trusted-ca-file", "", "Path to the client server TLS trusted CA cert file.")
	autoTLS := fs.Bool("auto-tls", false, "Client TLS using generated certificates")
	fs.StringVar(&ptls.CertFile, "peer-cert-file", "", "Path to the peer server TLS cert file.")
	fs.StringVar(&ptls.KeyFile, "peer-key-file", "", "Path to the peer server TLS key file.")
	fs.StringVar(&ptls.ClientCertFile, "peer-client-cert-file", "", "Path to an explicit peer client TLS cert file otherwise peer cert file will be used when client auth is required.")
	fs.StringVar(&ptls.ClientKeyFile, "peer-client-key-file", "", "Path to an explicit peer client TLS key file otherwise peer key file will be used when client auth is required.")
	fs.BoolVar(&ptls.ClientCertAuth, "peer-client-cert-auth", false, "Enable peer client cert authentication.")
	fs.StringVar(&ptls.TrustedCAFile, "peer-trusted-ca-file", "", "Path to the peer server TLS trusted CA file.")
	peerAutoTLS := fs.Bool("peer-auto-tls", false, "Peer TLS using generated certificates")
	validity := fs.Uint("self-signed-cert-validity", 1, "The validity period of the client and peer certificates, unit is year.")
	fs.StringVar(&ptls.CRLFile, "peer-crl-file", "", "Path to the peer certificate revocation list file.")
	fs.Var(&peerCNs, "peer-cert-allowed-cn", "Comma-separated list of allowed CNs for inter-peer TLS authentication.")
	fs.Var(&peerHosts, "peer-cert-allowed-hostname", "Comma-separated list of allowed SAN hostnames for inter-peer TLS authentication.")
	fs.Var(&css, "cipher-suites", "Comma-separated list of supported TLS cipher suites between client/server and peers (empty will be auto-populated by Go).")
	fs.BoolVar(&peerSkipSAN, "peer-skip-client-san-verification", false, "Skip verification of SAN field in client certificate for peer connections.")
	tlsMin := fs.String("tls-min-version", "TLS1.2", "Minimum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3.")
	tlsMax := fs.String("tls-max-version", "", "Maximum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3 (empty defers to Go).")
	fallback := &choiceValue{v: "exit", valids: []string{"exit", "proxy"}}
	fs.Var(fallback, "discovery-fallback", "What to do when discovery fails; only 'exit'.")
	addInertFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrFlagSyntax, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%q is not a valid flag", fs.Arg(0))
	}
	warnings, err := applyEnv(fs, environ)
	if err != nil {
		return nil, err
	}
	c := &Config{
		Name:                *name,
		DataDir:             *dataDir,
		InitialClusterState: *icstate,
		InitialClusterToken: *ictoken,
		SnapshotCount:       *snapCount,
		MaxRequestBytes:     *maxReq,
		MaxTxnOps:           *maxTxnOps,
		QuotaBackendBytes:   *quota,
		HeartbeatInterval:   time.Duration(*heartbeat) * time.Millisecond,
		ElectionTimeout:     time.Duration(*election) * time.Millisecond,
		LogLevel:            *logLevel,
		LogOutputs:          strings.Split(*logOutputs, ","),
		LogFormat:           *logFormat,
		StorageEngine:       *engine,
		HTTPListenAddr:      *httpAddr,
		EnablePprof:         *enablePprof,
		Metrics:             *metrics,
		PrintVersion:        *showVersion,
		Warnings:            warnings,

		StrictReconfigCheck:        *strictReconfig,
		InitialElectionTickAdvance: *tickAdvance,
		PreVote:                    *preVote,
		MaxLearners:                *maxLearners,
		SnapshotCatchUpEntries:     *catchUp,
		MaxSnapshots:               *maxSnaps,
		MaxWALs:                    *maxWALs,
		ForceNewCluster:            *forceNew,
		UnsafeNoFsync:              *noFsync,
		BcryptCost:                 int(min(*bcryptCost, 1<<16)),
		AuthTokenTTL:               time.Duration(min(*authTokenTTL, 1<<32)) * time.Second,
		Discovery:                  disc,
	}
	ctls.AllowedHostnames = clientAllowedHosts
	ptls.AllowedCNs, ptls.AllowedHostnames = peerCNs, peerHosts
	ptls.VerifyClientSAN = !peerSkipSAN
	c.ClientTLS, c.PeerTLS = ctls, ptls
	c.ClientAutoTLS, c.PeerAutoTLS = *autoTLS, *peerAutoTLS
	// etcd takes a validity of 0 as its default, one year.
	c.SelfSignedCertValidity = max(*validity, 1)
	c.Discovery.Endpoints = discEndpoints
	c.Discovery.Fallback = fallback.v
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, p := range []struct{ old, cur string }{
		{"experimental-watch-progress-notify-interval", "watch-progress-notify-interval"},
		{"experimental-lease-checkpoint-interval", "lease-checkpoint-interval"},
	} {
		if set[p.old] && set[p.cur] {
			return nil, fmt.Errorf("cannot specify both --%s and --%s", p.old, p.cur)
		}
	}
	c.WatchProgressNotifyInterval = *watchProg
	c.WarningApplyDuration = *warnApply
	c.WarningUnaryRequestDuration = *warnUnary
	c.CompactionBatchLimit = *compBatch
	c.SocketReusePort, c.SocketReuseAddress = *reusePort, *reuseAddr
	c.EnableLogRotation, c.LogRotationConfigJSON = *logRotate, *logRotation
	c.CompactionSleepInterval = *compSleep
	c.GRPCKeepAliveMinTime, c.GRPCKeepAliveInterval, c.GRPCKeepAliveTimeout = *kaMinTime, *kaInterval, *kaTimeout
	c.MaxConcurrentStreams = uint32(maxStreams)
	c.CORS, c.HostWhitelist = splitList(cors.raw), splitList(*hosts)
	if set["experimental-watch-progress-notify-interval"] {
		c.WatchProgressNotifyInterval = *oldWatchProg
	}
	c.LeaseCheckpointInterval = *cpInterval
	if set["experimental-lease-checkpoint-interval"] {
		c.LeaseCheckpointInterval = *oldCPInterval
	}
	c.LeaseCheckpoint = gates.enabled("LeaseCheckpoint") || *oldCP
	if persist := gates.enabled("LeaseCheckpointPersist") || *oldCPPersist; persist && !c.LeaseCheckpoint {
		return nil, errors.New("enabling feature gate LeaseCheckpointPersist requires enabling feature gate LeaseCheckpoint")
	}
	c.InitialCorruptCheck = gates.enabled("InitialCorruptCheck")
	c.Features = gates.features()
	c.CorruptCheckTime = *corruptTime
	c.CompactHashCheck, c.CompactHashCheckTime = gates.enabled("CompactHashCheck"), *compactTime
	if c.PrintVersion {
		return c, nil
	}
	for _, p := range []struct {
		flag string
		raw  string
		dst  *[]url.URL
	}{
		{"listen-client-urls", *lcurls, &c.ListenClientURLs},
		{"advertise-client-urls", *acurls, &c.AdvertiseClientURLs},
		{"listen-peer-urls", *lpurls, &c.ListenPeerURLs},
		{"initial-advertise-peer-urls", *apurls, &c.InitialAdvertisePeerURLs},
	} {
		if *p.dst, err = parseURLs(p.raw); err != nil {
			return nil, fmt.Errorf("--%s: %w", p.flag, err)
		}
	}
	if lmurls.raw != "" {
		if c.ListenMetricsURLs, err = parseURLs(lmurls.raw); err != nil {
			return nil, fmt.Errorf("--listen-metrics-urls: %w", err)
		}
	}
	if c.DataDir == "" {
		c.DataDir = c.Name + ".etcd"
	}
	if *icluster == "" {
		// One entry per advertised peer URL, as etcd builds it: the raw
		// flag may hold several comma-separated URLs.
		c.InitialCluster = map[string][]url.URL{c.Name: slices.Clone(c.InitialAdvertisePeerURLs)}
	} else if c.InitialCluster, err = parseInitialCluster(*icluster); err != nil {
		return nil, fmt.Errorf("--initial-cluster: %w", err)
	}
	if c.QuotaBackendBytes == 0 {
		c.QuotaBackendBytes = defaultQuotaBackendBytes
	}
	if err := checkInert(fs, c, *icluster != ""); err != nil {
		return nil, err
	}
	if err := checkRefusals(fs, c); err != nil {
		return nil, err
	}
	if err := c.parseTLS(css, *tlsMin, *tlsMax); err != nil {
		return nil, err
	}
	tokens, tokenWarnings, err := auth.ParseTokenConfig(*authToken)
	if err != nil {
		return nil, fmt.Errorf("--auth-token: %w", err)
	}
	c.AuthToken = tokens
	c.Warnings = append(c.Warnings, tokenWarnings...)
	c.Warnings = append(c.Warnings, inertWarnings(fs)...)
	return c, c.validate()
}

// parseTLS sets the cipher suites and TLS versions of both sides and
// checks the TLS settings as etcd does when it starts.
func (c *Config) parseTLS(suites []string, minVersion, maxVersion string) error {
	minV, err := tlsutil.GetTLSVersion(minVersion)
	if err != nil {
		return err
	}
	maxV, err := tlsutil.GetTLSVersion(maxVersion)
	if err != nil {
		return err
	}
	// 0 lets Go choose the highest version.
	if maxV != 0 && minV > maxV {
		return fmt.Errorf("min version (%s) is greater than max version (%s)", minVersion, maxVersion)
	}
	if minV == tls.VersionTLS13 && len(suites) > 0 {
		return errors.New("cipher suites cannot be configured when only TLS1.3 is enabled")
	}
	ids, err := tlsutil.GetCipherSuites(suites)
	if err != nil {
		return err
	}
	for _, side := range []*tlsconfig.Info{&c.ClientTLS, &c.PeerTLS} {
		side.MinVersion, side.MaxVersion = minV, maxV
		if len(ids) > 0 {
			side.CipherSuites = ids
		}
	}
	for _, u := range c.ListenClientURLs {
		if (u.Scheme == "https" || u.Scheme == "unixs") && c.ClientTLS.Empty() && !c.ClientAutoTLS {
			return fmt.Errorf("TLS key/cert (--cert-file, --key-file) must be provided for client url %s with HTTPS scheme", u.String())
		}
	}
	for _, u := range c.ListenMetricsURLs {
		if (u.Scheme == "https" || u.Scheme == "unixs") && c.ClientTLS.Empty() && !c.ClientAutoTLS {
			return errors.New("client TLS key/cert (--cert-file, --key-file) must be provided for metrics secure url")
		}
	}
	for _, u := range c.ListenPeerURLs {
		if u.Scheme == "https" && c.PeerTLS.Empty() && !c.PeerAutoTLS {
			return fmt.Errorf("cannot listen on TLS for %s: KeyFile and CertFile are not presented", u.Host)
		}
	}
	return nil
}

func (c *Config) validate() error {
	switch {
	case c.StorageEngine != "memory" && c.StorageEngine != "rocksdb":
		return fmt.Errorf("--storage-engine must be 'memory' or 'rocksdb', got %q", c.StorageEngine)
	case c.InitialClusterState != "new" && c.InitialClusterState != "existing":
		return fmt.Errorf("--initial-cluster-state must be 'new' or 'existing', got %q", c.InitialClusterState)
	case c.MaxRequestBytes == 0:
		return errors.New("--max-request-bytes must be positive")
	case c.MaxTxnOps == 0:
		return errors.New("--max-txn-ops must be positive")
	case c.QuotaBackendBytes < 0:
		return errors.New("--quota-backend-bytes must not be negative")
	case c.LeaseCheckpointInterval <= 0:
		return errors.New("--lease-checkpoint-interval must be positive")
	case c.HeartbeatInterval <= 0 || c.ElectionTimeout < 5*c.HeartbeatInterval:
		return fmt.Errorf("--election-timeout[%v] should be at least 5 times as --heartbeat-interval[%v]", c.ElectionTimeout, c.HeartbeatInterval)
	}
	if _, ok := c.InitialCluster[c.Name]; !ok {
		return fmt.Errorf("couldn't find local name %q in the initial cluster configuration", c.Name)
	}
	return nil
}

// applyEnv sets every flag not given on the command line from its ETCD_*
// variable (ETCD_DATA_DIR for --data-dir). As in etcd, a variable that
// duplicates a flag given on the command line is an error; an ETCD_
// variable that names no flag is only a warning.
func applyEnv(fs *flag.FlagSet, environ []string) ([]string, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	known := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { known[envName(f.Name)] = f.Name })
	var unknown, warnings []string
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, "ETCD_") {
			continue
		}
		if k == "ETCD_VERSION" {
			// As in etcd, --version cannot come from the environment, where
			// scripts often keep ETCD_VERSION for their own use.
			warnings = append(warnings, "cannot set special environment variable ETCD_VERSION")
			continue
		}
		name, isFlag := known[k]
		if !isFlag {
			if !ignoredEnv[k] {
				unknown = append(unknown, k)
			}
			continue
		}
		if set[name] {
			return nil, fmt.Errorf("conflicting environment variable %q is shadowed by corresponding command-line flag (either unset environment variable or disable flag)", k)
		}
		if v == "" {
			// etcd applies only non-empty variables.
			continue
		}
		if err := fs.Set(name, v); err != nil {
			return nil, fmt.Errorf("invalid value %q for %s: %w", v, k, err)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		warnings = append(warnings, "unrecognized environment variable "+k)
	}
	return warnings, nil
}

// ignoredEnv are ETCD_ variables that configure clients (etcdctl), not the
// server; a shell that sets them for etcdctl must still start Cairn.
var ignoredEnv = map[string]bool{
	"ETCD_UNSUPPORTED_ARCH": true,
}

func envName(flagName string) string {
	return "ETCD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func parseURLs(s string) ([]url.URL, error) {
	var out []url.URL
	for _, raw := range strings.Split(s, ",") {
		raw = strings.TrimSpace(raw)
		u, err := url.Parse(raw)
		if err != nil {
			return nil, err
		}
		if u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "unix" && u.Scheme != "unixs" {
			return nil, fmt.Errorf("URL scheme must be http, https, unix, or unixs: %s", raw)
		}
		if u.Scheme == "http" || u.Scheme == "https" {
			if u.Port() == "" {
				return nil, fmt.Errorf("URL address does not have the form \"host:port\": %s", raw)
			}
		}
		if u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("URL must not contain a path: %s", raw)
		}
		out = append(out, *u)
	}
	return out, nil
}

// gateSpec is a feature gate's stage, as etcd names it, and its default.
type gateSpec struct {
	stage string
	def   bool
}

// Feature gate stages, as etcd's etcd_server_feature_enabled labels them.
const (
	alpha = "ALPHA"
	beta  = "BETA"
)

// featureGates are etcd 3.7's server feature gates, which --feature-gates
// accepts, with their stages and defaults; AllAlpha and AllBeta set every
// gate of their stage that is not set itself. Cairn acts on the lease
// checkpoint and corruption check ones.
var featureGates = map[string]gateSpec{
	"AllAlpha": {stage: alpha}, "AllBeta": {stage: beta},
	"StopGRPCServiceOnDefrag": {stage: alpha}, "InitialCorruptCheck": {stage: alpha}, "CompactHashCheck": {stage: alpha},
	"TxnModeWriteWithSharedBuffer": {stage: beta, def: true}, "LeaseCheckpoint": {stage: alpha},
	"LeaseCheckpointPersist": {stage: alpha}, "SetMemberLocalAddr": {stage: alpha},
	"FastLeaseKeepAlive": {stage: beta, def: true}, "PriorityRequest": {stage: alpha},
}

// Feature is one of etcd's server feature gates as the configuration sets
// it, which etcd reports in etcd_server_feature_enabled.
type Feature struct {
	Name, Stage string
	Enabled     bool
}

// featureGateFlag is --feature-gates: "Name=bool,Name=bool", parsed by the
// flag package as etcd's is, so that a bad value is a syntax error (exit
// status 2) with etcd's message. Later settings of a gate win.
type featureGateFlag map[string]bool

func (g featureGateFlag) String() string {
	var parts []string
	for k, v := range g {
		parts = append(parts, fmt.Sprintf("%s=%t", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (g featureGateFlag) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok {
			return fmt.Errorf("missing bool value for %s", k)
		}
		v = strings.TrimSpace(v)
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("invalid value of %s=%s, err: %w", k, v, err)
		}
		if _, ok := featureGates[k]; !ok {
			return fmt.Errorf("unrecognized feature gate: %s", k)
		}
		g[k] = b
	}
	return nil
}

// enabled reports whether gate name is on, as etcd decides: set so, or
// left unset while AllAlpha or AllBeta, whichever is of its stage, is
// set so, or else on by default.
func (g featureGateFlag) enabled(name string) bool {
	if v, ok := g[name]; ok {
		return v
	}
	spec := featureGates[name]
	all := map[string]string{alpha: "AllAlpha", beta: "AllBeta"}[spec.stage]
	if v, ok := g[all]; ok && name != all {
		return v
	}
	return spec.def
}

// features lists every gate as g sets it, sorted by name.
func (g featureGateFlag) features() []Feature {
	out := make([]Feature, 0, len(featureGates))
	for name, spec := range featureGates {
		out = append(out, Feature{Name: name, Stage: spec.stage, Enabled: g.enabled(name)})
	}
	slices.SortFunc(out, func(a, b Feature) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func parseInitialCluster(s string) (map[string][]url.URL, error) {
	out := map[string][]url.URL{}
	for _, part := range strings.Split(s, ",") {
		name, raw, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("%q is not of the form name=url", part)
		}
		us, err := parseURLs(raw)
		if err != nil {
			return nil, err
		}
		out[name] = append(out[name], us...)
	}
	return out, nil
}

// splitList splits a comma-separated flag value into its non-empty items,
// as etcd reads --cors and --host-whitelist.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}
