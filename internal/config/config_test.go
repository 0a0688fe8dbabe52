package config

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/tlsconfig"
)

func mustURLs(t *testing.T, raws ...string) []url.URL {
	t.Helper()
	var out []url.URL
	for _, raw := range raws {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *u)
	}
	return out
}

func parse(t *testing.T, args, environ []string) (*Config, error) {
	t.Helper()
	var errOut bytes.Buffer
	return Parse(args, environ, &errOut)
}

// TestDefaults checks that no flags and no environment give etcd's
// defaults, including the derived ones etcd documents as "${name}.etcd" and
// "${name}=${initial-advertise-peer-urls}".
func TestDefaults(t *testing.T) {
	c, err := parse(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Name:                     "default",
		DataDir:                  "default.etcd",
		ListenClientURLs:         mustURLs(t, "http://localhost:2379"),
		AdvertiseClientURLs:      mustURLs(t, "http://localhost:2379"),
		ListenPeerURLs:           mustURLs(t, "http://localhost:2380"),
		InitialAdvertisePeerURLs: mustURLs(t, "http://localhost:2380"),
		InitialCluster:           map[string][]url.URL{"default": mustURLs(t, "http://localhost:2380")},
		InitialClusterState:      "new",
		InitialClusterToken:      "etcd-cluster",
		SnapshotCount:            10000,
		MaxRequestBytes:          1572864,
		MaxTxnOps:                128,
		QuotaBackendBytes:        2 << 30,
		HeartbeatInterval:        100 * time.Millisecond,
		ElectionTimeout:          time.Second,
		LogLevel:                 "info",
		StorageEngine:            "rocksdb",
		Metrics:                  "basic",
	}
	want.WatchProgressNotifyInterval = 10 * time.Minute
	want.WarningApplyDuration = 100 * time.Millisecond
	want.WarningUnaryRequestDuration = 300 * time.Millisecond
	want.GRPCKeepAliveMinTime, want.GRPCKeepAliveInterval, want.GRPCKeepAliveTimeout = 5*time.Second, 2*time.Hour, 20*time.Second
	want.LogOutputs, want.LogFormat = []string{"default"}, "json"
	want.MaxConcurrentStreams = math.MaxUint32
	want.CORS, want.HostWhitelist = []string{"*"}, []string{"*"}
	want.LeaseCheckpointInterval = 5 * time.Minute
	want.CompactHashCheckTime = time.Minute
	want.StrictReconfigCheck = true
	want.InitialElectionTickAdvance = true
	want.PreVote = true
	want.MaxLearners = 1
	want.SnapshotCatchUpEntries = 5000
	want.MaxSnapshots = 5
	want.MaxWALs = 5
	want.BcryptCost = 10
	want.AuthTokenTTL = 300 * time.Second
	want.AutoCompactionMode = "periodic"
	want.ClientTLS = tlsconfig.Info{MinVersion: tls.VersionTLS12}
	want.PeerTLS = tlsconfig.Info{MinVersion: tls.VersionTLS12, VerifyClientSAN: true}
	want.SelfSignedCertValidity = 1
	want.LogRotationConfigJSON = `{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}`
	// etcd's gates, the beta ones on by default.
	want.Features = []Feature{
		{Name: "AllAlpha", Stage: "ALPHA"}, {Name: "AllBeta", Stage: "BETA"},
		{Name: "CompactHashCheck", Stage: "ALPHA"}, {Name: "FastLeaseKeepAlive", Stage: "BETA", Enabled: true},
		{Name: "InitialCorruptCheck", Stage: "ALPHA"}, {Name: "LeaseCheckpoint", Stage: "ALPHA"},
		{Name: "LeaseCheckpointPersist", Stage: "ALPHA"}, {Name: "PriorityRequest", Stage: "ALPHA"},
		{Name: "SetMemberLocalAddr", Stage: "ALPHA"}, {Name: "StopGRPCServiceOnDefrag", Stage: "ALPHA"},
		{Name: "TxnModeWriteWithSharedBuffer", Stage: "BETA", Enabled: true},
	}
	want.Discovery = Discovery{
		DialTimeout:       2 * time.Second,
		RequestTimeout:    5 * time.Second,
		KeepAliveTime:     2 * time.Second,
		KeepAliveTimeout:  6 * time.Second,
		InsecureTransport: true,
		Fallback:          "exit",
	}
	if diff := cmp.Diff(want, c, cmpopts.IgnoreUnexported(auth.TokenConfig{})); diff != "" {
		t.Errorf("Parse(no flags) mismatch (-want +got):\n%s", diff)
	}
	if got, want := c.EngineDir(), "default.etcd/rocksdb"; got != want {
		t.Errorf("EngineDir() = %q, want %q", got, want)
	}
}

// TestDerivedDefaults covers the defaults that depend on other flags.
func TestDerivedDefaults(t *testing.T) {
	tests := []struct {
		name        string
		args        []string
		wantDataDir string
		wantCluster map[string][]url.URL
		wantQuota   int64
	}{
		{
			name:        "data dir and cluster follow --name",
			args:        []string{"--name=n1"},
			wantDataDir: "n1.etcd",
			wantCluster: map[string][]url.URL{"n1": mustURLs(t, "http://localhost:2380")},
			wantQuota:   2 << 30,
		},
		{
			name:        "cluster follows --initial-advertise-peer-urls",
			args:        []string{"--name=n1", "--initial-advertise-peer-urls=http://10.0.0.1:2380"},
			wantDataDir: "n1.etcd",
			wantCluster: map[string][]url.URL{"n1": mustURLs(t, "http://10.0.0.1:2380")},
			wantQuota:   2 << 30,
		},
		{
			// etcd builds "n1=u1,n1=u2" (embed.Config.InitialClusterFromName).
			name:        "cluster takes every advertised peer URL",
			args:        []string{"--name=n1", "--initial-advertise-peer-urls=http://10.0.0.1:2380,http://10.0.0.2:2380"},
			wantDataDir: "n1.etcd",
			wantCluster: map[string][]url.URL{"n1": mustURLs(t, "http://10.0.0.1:2380", "http://10.0.0.2:2380")},
			wantQuota:   2 << 30,
		},
		{
			name:        "explicit values are kept",
			args:        []string{"--name=n1", "--data-dir=/var/lib/x", "--initial-cluster=n1=http://h1:1,n2=http://h2:2", "--quota-backend-bytes=4096"},
			wantDataDir: "/var/lib/x",
			wantCluster: map[string][]url.URL{"n1": mustURLs(t, "http://h1:1"), "n2": mustURLs(t, "http://h2:2")},
			wantQuota:   4096,
		},
		{
			name:        "a member may list several peer URLs",
			args:        []string{"--name=n1", "--initial-cluster=n1=http://h1:1,n1=http://h1:2"},
			wantDataDir: "n1.etcd",
			wantCluster: map[string][]url.URL{"n1": mustURLs(t, "http://h1:1", "http://h1:2")},
			wantQuota:   2 << 30,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(t, tt.args, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.DataDir != tt.wantDataDir {
				t.Errorf("DataDir = %q, want %q", c.DataDir, tt.wantDataDir)
			}
			if diff := cmp.Diff(tt.wantCluster, c.InitialCluster); diff != "" {
				t.Errorf("InitialCluster mismatch (-want +got):\n%s", diff)
			}
			if c.QuotaBackendBytes != tt.wantQuota {
				t.Errorf("QuotaBackendBytes = %d, want %d", c.QuotaBackendBytes, tt.wantQuota)
			}
		})
	}
}

// TestEnvironment checks that ETCD_* variables set the flags they name.
func TestEnvironment(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		args    []string
		check   func(t *testing.T, c *Config)
	}{
		{
			name:    "ETCD_NAME also moves the derived defaults",
			environ: []string{"ETCD_NAME=envname"},
			check: func(t *testing.T, c *Config) {
				if c.Name != "envname" || c.DataDir != "envname.etcd" {
					t.Errorf("Name, DataDir = %q, %q; want envname, envname.etcd", c.Name, c.DataDir)
				}
				if _, ok := c.InitialCluster["envname"]; !ok {
					t.Errorf("InitialCluster = %v, want a member named envname", c.InitialCluster)
				}
			},
		},
		{
			name:    "ETCD_DATA_DIR",
			environ: []string{"ETCD_DATA_DIR=/tmp/d"},
			check: func(t *testing.T, c *Config) {
				if c.DataDir != "/tmp/d" {
					t.Errorf("DataDir = %q, want /tmp/d", c.DataDir)
				}
			},
		},
		{
			name:    "ETCD_SNAPSHOT_COUNT",
			environ: []string{"ETCD_SNAPSHOT_COUNT=42"},
			check: func(t *testing.T, c *Config) {
				if c.SnapshotCount != 42 {
					t.Errorf("SnapshotCount = %d, want 42", c.SnapshotCount)
				}
			},
		},
		{
			name:    "ETCD_STORAGE_ENGINE",
			environ: []string{"ETCD_STORAGE_ENGINE=memory"},
			check: func(t *testing.T, c *Config) {
				if c.StorageEngine != "memory" || c.EngineDir() != "default.etcd/memory" {
					t.Errorf("StorageEngine, EngineDir = %q, %q; want memory, default.etcd/memory", c.StorageEngine, c.EngineDir())
				}
			},
		},
		{
			name:    "environment and flags for different settings combine",
			environ: []string{"ETCD_SNAPSHOT_COUNT=7", "PATH=/bin", "HOME=/root"},
			args:    []string{"--name=n1"},
			check: func(t *testing.T, c *Config) {
				if c.Name != "n1" || c.SnapshotCount != 7 {
					t.Errorf("Name, SnapshotCount = %q, %d; want n1, 7", c.Name, c.SnapshotCount)
				}
				if len(c.Warnings) != 0 {
					t.Errorf("Warnings = %q, want none", c.Warnings)
				}
			},
		},
		{
			// etcd only applies non-empty variables (pkg/flags.setFlagFromEnv),
			// so a blank line in an environment file changes nothing.
			name:    "empty variables are ignored",
			environ: []string{"ETCD_NAME=", "ETCD_SNAPSHOT_COUNT="},
			check: func(t *testing.T, c *Config) {
				if c.Name != "default" || c.SnapshotCount != 10000 {
					t.Errorf("Name, SnapshotCount = %q, %d; want default, 10000", c.Name, c.SnapshotCount)
				}
			},
		},
		{
			name:    "an unknown ETCD_ variable is only a warning",
			environ: []string{"ETCD_NO_SUCH_FLAG=1", "ETCD_ANOTHER=x", "NOT_ETCD_NAME=x"},
			check: func(t *testing.T, c *Config) {
				want := []string{
					"unrecognized environment variable ETCD_ANOTHER",
					"unrecognized environment variable ETCD_NO_SUCH_FLAG",
				}
				if diff := cmp.Diff(want, c.Warnings); diff != "" {
					t.Errorf("Warnings mismatch (-want +got):\n%s", diff)
				}
				if c.Name != "default" {
					t.Errorf("Name = %q, want default", c.Name)
				}
			},
		},
		{
			name:    "client-side variables are not warned about",
			environ: []string{"ETCD_UNSUPPORTED_ARCH=arm"},
			check: func(t *testing.T, c *Config) {
				if len(c.Warnings) != 0 {
					t.Errorf("Warnings = %q, want none", c.Warnings)
				}
			},
		},
		{
			// etcd refuses to take --version from the environment, where
			// build scripts commonly keep ETCD_VERSION for their own use: it
			// warns and starts (etcdmain.configFromCmdLine).
			name:    "ETCD_VERSION is ignored with a warning",
			environ: []string{"ETCD_VERSION=v3.5.0"},
			check: func(t *testing.T, c *Config) {
				if c.PrintVersion {
					t.Error("PrintVersion = true, want false")
				}
				if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "ETCD_VERSION") {
					t.Errorf("Warnings = %q, want one about ETCD_VERSION", c.Warnings)
				}
			},
		},
		{
			name:    "ETCD_VERSION=true does not turn a start into --version",
			environ: []string{"ETCD_VERSION=true"},
			check: func(t *testing.T, c *Config) {
				if c.PrintVersion {
					t.Error("PrintVersion = true, want false")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(t, tt.args, tt.environ)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

// TestEnvironmentShadowedByFlag checks etcd's rule that a variable
// duplicating a command-line flag is an error, with etcd's wording.
func TestEnvironmentShadowedByFlag(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		environ []string
		wantErr string
	}{
		{
			name:    "name",
			args:    []string{"--name=n1"},
			environ: []string{"ETCD_NAME=n2"},
			wantErr: `conflicting environment variable "ETCD_NAME" is shadowed by corresponding command-line flag (either unset environment variable or disable flag)`,
		},
		{
			name:    "even with the same value",
			args:    []string{"--data-dir=/d"},
			environ: []string{"ETCD_DATA_DIR=/d"},
			wantErr: `conflicting environment variable "ETCD_DATA_DIR" is shadowed by corresponding command-line flag (either unset environment variable or disable flag)`,
		},
		{
			name:    "Cairn's own flags",
			args:    []string{"--storage-engine=memory"},
			environ: []string{"ETCD_STORAGE_ENGINE=memory"},
			wantErr: `conflicting environment variable "ETCD_STORAGE_ENGINE" is shadowed by corresponding command-line flag (either unset environment variable or disable flag)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(t, tt.args, tt.environ)
			if err == nil {
				t.Fatalf("Parse = %+v, want error", c)
			}
			if err.Error() != tt.wantErr {
				t.Errorf("error = %q\nwant    %q", err, tt.wantErr)
			}
		})
	}
}

// TestInvalid checks that bad values stop the start with an error naming
// the problem.
func TestInvalid(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		environ []string
		wantErr string // a substring of the error
	}{
		{"unknown flag", []string{"--no-such-flag"}, nil, "flag provided but not defined"},
		{"positional argument", []string{"serve"}, nil, "is not a valid flag"},
		{"bad URL", []string{"--listen-client-urls=http://a b:1"}, nil, "--listen-client-urls"},
		{"URL without port", []string{"--listen-client-urls=http://localhost"}, nil, `URL address does not have the form "host:port": http://localhost`},
		{"URL with a path", []string{"--advertise-client-urls=http://localhost:2379/x"}, nil, "URL must not contain a path"},
		{"URL with a bad scheme", []string{"--listen-peer-urls=ftp://localhost:2380"}, nil, "URL scheme must be http, https, unix, or unixs"},
		{"second URL bad", []string{"--initial-advertise-peer-urls=http://h:1,http://h"}, nil, "--initial-advertise-peer-urls"},
		{"initial cluster entry without name", []string{"--initial-cluster=http://localhost:2380"}, nil, "--initial-cluster"},
		{"initial cluster URL without port", []string{"--initial-cluster=default=http://localhost"}, nil, "host:port"},
		{"unknown engine", []string{"--storage-engine=bolt"}, nil, `--storage-engine must be 'memory' or 'rocksdb', got "bolt"`},
		{"unknown engine from env", nil, []string{"ETCD_STORAGE_ENGINE=bolt"}, `got "bolt"`},
		{"initial cluster state", []string{"--initial-cluster-state=old"}, nil, `--initial-cluster-state must be 'new' or 'existing', got "old"`},
		{"election timeout below 5 heartbeats", []string{"--heartbeat-interval=100", "--election-timeout=499"}, nil, "should be at least"},
		{"zero heartbeat", []string{"--heartbeat-interval=0"}, nil, "--heartbeat-interval"},
		{"zero max request bytes", []string{"--max-request-bytes=0"}, nil, "--max-request-bytes"},
		{"zero max txn ops", []string{"--max-txn-ops=0"}, nil, "--max-txn-ops"},
		{"negative quota", []string{"--quota-backend-bytes=-1"}, nil, "--quota-backend-bytes"},
		{"name missing from initial cluster", []string{"--name=n3", "--initial-cluster=n1=http://h1:1,n2=http://h2:2"}, nil, `couldn't find local name "n3" in the initial cluster configuration`},
		{"env name missing from explicit cluster", []string{"--initial-cluster=n1=http://h1:1"}, []string{"ETCD_NAME=n2"}, `couldn't find local name "n2"`},
		{"non-numeric env value", nil, []string{"ETCD_SNAPSHOT_COUNT=many"}, `invalid value "many" for ETCD_SNAPSHOT_COUNT`},
		{"unknown feature gate", []string{"--feature-gates=NoSuchGate=true"}, nil, "unrecognized feature gate: NoSuchGate"},
		{"feature gate without value", []string{"--feature-gates=LeaseCheckpoint"}, nil, "missing bool value for LeaseCheckpoint"},
		{"feature gate not a bool", []string{"--feature-gates=LeaseCheckpoint=yes"}, nil, "invalid value of LeaseCheckpoint=yes"},
		{"checkpoint persist alone", []string{"--feature-gates=LeaseCheckpointPersist=true"}, nil, "enabling feature gate LeaseCheckpointPersist requires enabling feature gate LeaseCheckpoint"},
		{"both progress interval spellings", []string{"--watch-progress-notify-interval=1s", "--experimental-watch-progress-notify-interval=2s"}, nil, "cannot specify both"},
		{"zero checkpoint interval", []string{"--lease-checkpoint-interval=0s"}, nil, "--lease-checkpoint-interval must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(t, tt.args, tt.environ)
			if err == nil {
				t.Fatalf("Parse = %+v, want an error containing %q", c, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestValidEdges are values just inside the limits.
func TestValidEdges(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"election timeout exactly 5 heartbeats", []string{"--heartbeat-interval=100", "--election-timeout=500"}},
		{"existing cluster", []string{"--initial-cluster-state=existing"}},
		{"memory engine", []string{"--storage-engine=memory"}},
		{"unix URLs", []string{"--listen-client-urls=http://127.0.0.1:2379,unix://localhost:2379"}},
		{"trailing slash", []string{"--advertise-client-urls=http://localhost:2379/"}},
		{"spaces around URLs", []string{"--listen-client-urls=http://a:1, http://b:2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parse(t, tt.args, nil); err != nil {
				t.Errorf("Parse(%q) = %v, want no error", tt.args, err)
			}
		})
	}
}

// TestLeaseCheckpointAndOldSpellings: the feature gates and etcd 3.5's
// experimental spellings set the same configuration, from flags and from
// the environment.
func TestLeaseCheckpointAndOldSpellings(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		environ    []string
		checkpoint bool
		interval   time.Duration
		progress   time.Duration
	}{
		{"defaults", nil, nil, false, 5 * time.Minute, 10 * time.Minute},
		{"feature gates", []string{"--feature-gates=LeaseCheckpoint=true,LeaseCheckpointPersist=true", "--lease-checkpoint-interval=2s"}, nil, true, 2 * time.Second, 10 * time.Minute},
		{"gate set false", []string{"--feature-gates=LeaseCheckpoint=false,FastLeaseKeepAlive=true"}, nil, false, 5 * time.Minute, 10 * time.Minute},
		{"all alpha", []string{"--feature-gates=AllAlpha=true"}, nil, true, 5 * time.Minute, 10 * time.Minute},
		{"experimental flags", []string{"--experimental-enable-lease-checkpoint", "--experimental-lease-checkpoint-interval=3s", "--experimental-watch-progress-notify-interval=4s"}, nil, true, 3 * time.Second, 4 * time.Second},
		{"experimental variables", nil, []string{"ETCD_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT=true", "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL=5s"}, true, 5 * time.Minute, 5 * time.Second},
		{"gate variable", nil, []string{"ETCD_FEATURE_GATES=LeaseCheckpoint=true", "ETCD_WATCH_PROGRESS_NOTIFY_INTERVAL=6s"}, true, 5 * time.Minute, 6 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(t, tt.args, tt.environ)
			if err != nil {
				t.Fatal(err)
			}
			if c.LeaseCheckpoint != tt.checkpoint || c.LeaseCheckpointInterval != tt.interval || c.WatchProgressNotifyInterval != tt.progress {
				t.Errorf("checkpoint %v every %v, progress every %v; want %v, %v, %v",
					c.LeaseCheckpoint, c.LeaseCheckpointInterval, c.WatchProgressNotifyInterval, tt.checkpoint, tt.interval, tt.progress)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"alone", []string{"--version"}},
		// etcd prints the version before looking at anything else.
		{"with otherwise invalid flags", []string{"--version", "--storage-engine=bolt", "--listen-client-urls=x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(t, tt.args, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !c.PrintVersion {
				t.Error("PrintVersion = false, want true")
			}
		})
	}
	c, err := parse(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.PrintVersion {
		t.Error("PrintVersion = true without --version")
	}
}

func TestHelp(t *testing.T) {
	var errOut bytes.Buffer
	_, err := Parse([]string{"--help"}, nil, &errOut)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Parse(--help) error = %v, want flag.ErrHelp", err)
	}
	for _, f := range []string{"-name", "-data-dir", "-initial-cluster", "-storage-engine"} {
		if !strings.Contains(errOut.String(), f) {
			t.Errorf("usage does not mention %s:\n%s", f, errOut.String())
		}
	}
}

// TestFeatureGateErrors: a bad --feature-gates value is a command-line
// syntax error with the flag package's wording, as in etcd (which exits
// with status 2), while Persist without Checkpoint is a configuration
// error (status 1).
func TestFeatureGateErrors(t *testing.T) {
	_, err := parse(t, []string{"--feature-gates=NoSuchGate=true"}, nil)
	if !errors.Is(err, ErrFlagSyntax) {
		t.Errorf("unknown gate: %v, want a syntax error", err)
	}
	if want := `invalid value "NoSuchGate=true" for flag -feature-gates: unrecognized feature gate: NoSuchGate`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("unknown gate: %v, want %q", err, want)
	}
	_, err = parse(t, []string{"--feature-gates=LeaseCheckpointPersist=true"}, nil)
	if err == nil || errors.Is(err, ErrFlagSyntax) {
		t.Errorf("Persist without Checkpoint: %v, want a configuration error", err)
	}
}

// TestFeatureGatesAsEtcdSetsThem: a gate is on if set so; unset, it
// follows AllAlpha or AllBeta of its stage when that is set, and else its
// default (etcd's beta gates are on by default).
func TestFeatureGatesAsEtcdSetsThem(t *testing.T) {
	tests := []struct {
		gates string
		on    []string
	}{
		{"", []string{"FastLeaseKeepAlive", "TxnModeWriteWithSharedBuffer"}},
		{"AllBeta=false", nil},
		{"AllBeta=false,FastLeaseKeepAlive=true", []string{"FastLeaseKeepAlive"}},
		{"AllAlpha=true,LeaseCheckpointPersist=false,FastLeaseKeepAlive=false", []string{"AllAlpha", "CompactHashCheck", "InitialCorruptCheck",
			"LeaseCheckpoint", "PriorityRequest", "SetMemberLocalAddr", "StopGRPCServiceOnDefrag", "TxnModeWriteWithSharedBuffer"}},
	}
	for _, tc := range tests {
		c, err := parse(t, []string{"--feature-gates=" + tc.gates}, nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.gates, err)
		}
		var on []string
		for _, f := range c.Features {
			if f.Enabled {
				on = append(on, f.Name)
			}
		}
		if !slices.Equal(on, tc.on) || len(c.Features) != len(featureGates) {
			t.Errorf("%q: on %v of %d gates, want %v of %d", tc.gates, on, len(c.Features), tc.on, len(featureGates))
		}
	}
}

// etcdFlag is one line of testdata/etcd-3.7.3-flags.txt: a flag etcd's
// --help lists and the default it shows, if any.
type etcdFlag struct {
	name, def string
	showsDef  bool
}

func readEtcdFlags(t *testing.T) []etcdFlag {
	t.Helper()
	b, err := os.ReadFile("testdata/etcd-3.7.3-flags.txt")
	if err != nil {
		t.Fatal(err)
	}
	var out []etcdFlag
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, _ := strings.Cut(strings.TrimPrefix(line, "--"), " ")
		f := etcdFlag{name: name}
		if rest != "" {
			f.def, f.showsDef = strings.Trim(rest, "'"), true
		}
		out = append(out, f)
	}
	// etcd 3.7.3 lists 113 flags; fewer means the file was damaged.
	if len(out) < 113 {
		t.Fatalf("read %d flags from the testdata, want at least 113", len(out))
	}
	return out
}

// etcdDefaults are etcd 3.7.3's real defaults where its --help shows none,
// or shows something that is not a value of the flag.
var etcdDefaults = map[string]string{
	"data-dir":                             "default.etcd", // help: ${name}.etcd
	"max-concurrent-streams":               "4294967295",   // help: math.MaxUint32
	"backend-batch-interval":               "0s",           // help: '', which etcd refuses as a duration
	"compaction-batch-limit":               "0",            // help: 1000; etcd's flag defaults to 0
	"memory-mlock":                         "false",        // help shows no default
	"enable-grpc-gateway":                  "true",         // idem
	"bootstrap-defrag-threshold-megabytes": "0",            // idem
	"compaction-sleep-interval":            "0s",           // idem
	"downgrade-check-time":                 "5s",           // idem
	"snapshot-catchup-entries":             "5000",         // idem
}

func etcdDefault(f etcdFlag) string {
	if d, ok := etcdDefaults[f.name]; ok {
		return d
	}
	return f.def
}

// noEffectWarnings are the warnings about flags without effect (not
// etcd's deprecation warnings, which etcd logs whenever the flag is given).
func noEffectWarnings(ws []string) []string {
	var out []string
	for _, w := range ws {
		if strings.Contains(w, "has no effect") {
			out = append(out, w)
		}
	}
	return out
}

// TestEveryEtcdFlagAtDefault: every flag etcd 3.7.3's --help lists is
// accepted at etcd's default, as a flag and as its ETCD_ variable, without
// a refusal or a warning that it has no effect.
func TestEveryEtcdFlagAtDefault(t *testing.T) {
	for _, f := range readEtcdFlags(t) {
		if !f.showsDef {
			if _, ok := etcdDefaults[f.name]; !ok {
				t.Errorf("--%s: etcd's help shows no default; add its default to etcdDefaults", f.name)
				continue
			}
		}
		val := etcdDefault(f)
		env := envName(f.name)
		for _, in := range []struct {
			name    string
			args    []string
			environ []string
		}{
			{"flag", []string{"--" + f.name + "=" + val}, nil},
			{"variable", nil, []string{env + "=" + val}},
		} {
			t.Run(f.name+"/"+in.name, func(t *testing.T) {
				c, err := parse(t, in.args, in.environ)
				if err != nil {
					t.Fatalf("Parse(%q, %q) = %v, want no error", in.args, in.environ, err)
				}
				if ws := noEffectWarnings(c.Warnings); len(ws) != 0 {
					t.Errorf("warnings at the default value: %q", ws)
				}
				for _, w := range c.Warnings {
					if strings.Contains(w, "unrecognized environment variable") {
						t.Errorf("warning %q", w)
					}
				}
			})
		}
	}
}

// TestEveryEtcdBoolFlagForms: boolean flags take etcd's forms --flag,
// --flag=true and --flag=false (a refusal is fine; a syntax error is not).
func TestEveryEtcdBoolFlagForms(t *testing.T) {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	addInertFlags(fs)
	n := 0
	for _, f := range readEtcdFlags(t) {
		def := etcdDefault(f)
		if def != "true" && def != "false" {
			continue
		}
		n++
		for _, arg := range []string{"--" + f.name, "--" + f.name + "=true", "--" + f.name + "=false", "-" + f.name} {
			_, err := parse(t, []string{arg}, nil)
			if errors.Is(err, ErrFlagSyntax) {
				t.Errorf("Parse(%s) = %v, want no syntax error", arg, err)
			}
		}
	}
	if n < 15 {
		t.Errorf("found %d boolean flags, want at least 15", n)
	}
}

// TestRefusals: flags asking for protection Cairn cannot give stop the
// start with an error naming the flag (exit status 1, not 2), from the
// command line and from the environment.
func TestRefusals(t *testing.T) {
	type row struct {
		name    string
		args    []string
		environ []string
		wantErr string
	}
	tests := []row{
		{"unix peer URL", []string{"--listen-peer-urls=unix://localhost:2380"}, nil, "--listen-peer-urls: unix:// and unixs:// peer URLs"},
		{"unixs peer URL in the cluster", []string{"--initial-cluster=default=unixs://localhost:2380"}, nil, "--initial-cluster: unix:// and unixs:// peer URLs"},
		{"configuration file", []string{"--config-file=/etc/etcd.yaml"}, nil, "--config-file: configuration files are not supported yet"},
		{"configuration file variable", nil, []string{"ETCD_CONFIG_FILE=/etc/etcd.yaml"}, "--config-file: configuration files"},
		{"v3 discovery", []string{"--discovery-endpoints=http://d:2379", "--discovery-token=t"}, nil,
			"--discovery-endpoints: discovery is not supported yet (see docs/limitations.md); refusing to bootstrap a one-member cluster instead"},
		{"DNS discovery", []string{"--discovery-srv=example.com"}, nil, "--discovery-srv: discovery is not supported yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(t, tt.args, tt.environ)
			if err == nil {
				t.Fatalf("Parse = %+v, want an error containing %q", c, tt.wantErr)
			}
			if errors.Is(err, ErrFlagSyntax) {
				t.Errorf("error %q is a syntax error (exit status 2), want a configuration error (1)", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %q\nwant it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestNotRefusedAtDefaults: the refused flags given at their defaults, or
// empty, start, as do the TLS flags at theirs.
func TestNotRefusedAtDefaults(t *testing.T) {
	for _, args := range [][]string{
		{"--cert-file=", "--key-file=", "--trusted-ca-file=", "--client-cert-auth=false", "--auto-tls=false"},
		{"--peer-auto-tls=false", "--peer-client-cert-auth=false", "--peer-skip-client-san-verification=false"},
		{"--tls-min-version=TLS1.2", "--tls-max-version=", "--cipher-suites="},
		{"--auth-token=simple"},
		{"--config-file="},
		{"--discovery-endpoints=", "--discovery-srv="},
		{"--listen-client-http-urls=http://127.0.0.1:2381", "--listen-metrics-urls=http://127.0.0.1:2382"},
	} {
		if _, err := parse(t, args, nil); err != nil {
			t.Errorf("Parse(%q) = %v, want no error", args, err)
		}
	}
}

// TestBadValueOfEachType: a value of the wrong type is a syntax error
// (exit status 2) with etcd's message, as the flag package words it.
func TestBadValueOfEachType(t *testing.T) {
	tests := []struct {
		kind, arg, wantErr string
	}{
		{"duration", "--corrupt-check-time=1", `invalid value "1" for flag -corrupt-check-time: parse error`},
		{"duration (discovery)", "--discovery-dial-timeout=soon", `invalid value "soon" for flag -discovery-dial-timeout: parse error`},
		{"bool", "--memory-mlock=maybe", `invalid boolean value "maybe" for -memory-mlock: parse error`},
		{"bool (cluster)", "--pre-vote=yes", `invalid boolean value "yes" for -pre-vote: parse error`},
		{"int", "--max-learners=x", `invalid value "x" for flag -max-learners: parse error`},
		{"int (inert)", "--distributed-tracing-sampling-rate=x", `invalid value "x" for flag -distributed-tracing-sampling-rate: parse error`},
		{"int (compaction)", "--compaction-batch-limit=x", `invalid value "x" for flag -compaction-batch-limit: parse error`},
		{"uint", "--bcrypt-cost=-1", `invalid value "-1" for flag -bcrypt-cost: parse error`},
		{"uint64", "--snapshot-catchup-entries=-1", `invalid value "-1" for flag -snapshot-catchup-entries: parse error`},
		{"uint32", "--max-concurrent-streams=-1", `invalid value "-1" for flag -max-concurrent-streams: strconv.ParseUint: parsing "-1": invalid syntax`},
		{"uint32 overflow", "--max-concurrent-streams=4294967296", `invalid value "4294967296" for flag -max-concurrent-streams: strconv.ParseUint: parsing "4294967296": value out of range`},
		{"URLs", "--listen-metrics-urls=metrics", `invalid value "metrics" for flag -listen-metrics-urls: URL scheme must be http, https, unix, or unixs: metrics`},
		{"URLs without port", "--listen-client-http-urls=http://localhost", `invalid value "http://localhost" for flag -listen-client-http-urls: URL address does not have the form "host:port": http://localhost`},
		{"CORS origins", "--cors=", `invalid value "" for flag -cors: URL scheme must be http, https, unix, or unixs: `},
		{"choice", "--discovery-fallback=retry", `invalid value "retry" for flag -discovery-fallback: invalid value`},
		{"choices", "--v2-deprecation=not-yet", `invalid value "not-yet" for flag -v2-deprecation: invalid value "not-yet"`},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			var errOut bytes.Buffer
			_, err := Parse([]string{tt.arg}, nil, &errOut)
			if !errors.Is(err, ErrFlagSyntax) {
				t.Fatalf("Parse(%s) = %v, want a syntax error", tt.arg, err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(errOut.String(), tt.wantErr) {
				t.Errorf("error = %q, usage output %q\nwant both to contain %q", err, firstLine(errOut.String()), tt.wantErr)
			}
		})
	}
	// From the environment the same value is a configuration error, as in
	// etcd (exit status 1).
	_, err := parse(t, nil, []string{"ETCD_CORRUPT_CHECK_TIME=1"})
	if err == nil || errors.Is(err, ErrFlagSyntax) || !strings.Contains(err.Error(), `invalid value "1" for ETCD_CORRUPT_CHECK_TIME`) {
		t.Errorf("ETCD_CORRUPT_CHECK_TIME=1: %v, want etcd's configuration error", err)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// TestStartChecks: values of the right type that etcd refuses when it
// starts (exit status 1).
func TestStartChecks(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"compaction mode", []string{"--auto-compaction-mode=hourly"}, `unknown auto-compaction-mode "hourly"`},
		{"empty compaction mode", []string{"--auto-compaction-mode="}, "undefined auto-compaction-mode"},
		{"compaction retention", []string{"--auto-compaction-retention=a day"}, "error parsing CompactionRetention"},
		{"negative compaction retention", []string{"--auto-compaction-retention=-1"}, `error parsing CompactionRetention: time: missing unit in duration "-1"`},
		{"logger", []string{"--logger=capnslog"}, `unknown logger option "capnslog"`},
		{"log format", []string{"--log-format=xml"}, "unknown log format: xml, supported values json, console"},
		{"compact hash check time", []string{"--compact-hash-check-time=0s"}, "--compact-hash-check-time must be >0 (set to 0s)"},
		{"discovery token alone", []string{"--discovery-token=t"}, "both --discovery-token and --discovery-endpoints must be set"},
		{"discovery endpoints alone", []string{"--discovery-endpoints=http://d:2379"}, "both --discovery-token and --discovery-endpoints must be set"},
		{"discovery and initial cluster", []string{"--discovery-srv=example.com", "--initial-cluster=default=http://localhost:2380"}, "multiple discovery or bootstrap flags are set"},
		{"discovery fallback proxy", []string{"--discovery-fallback=proxy"}, `--discovery-fallback can't be configured as "proxy"`},
		{"auth token type", []string{"--auth-token=paseto"}, "--auth-token: auth: invalid auth options"},
		{"tracing rate", []string{"--enable-distributed-tracing", "--distributed-tracing-sampling-rate=-1"}, "tracing sampling rate must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(t, tt.args, nil)
			if err == nil {
				t.Fatalf("Parse = %+v, want an error containing %q", c, tt.wantErr)
			}
			if errors.Is(err, ErrFlagSyntax) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %q, want a configuration error containing %q", err, tt.wantErr)
			}
		})
	}
	for _, args := range [][]string{
		{"--auto-compaction-mode=revision", "--auto-compaction-retention=1000"},
		{"--auto-compaction-retention=90m"},
		{"--log-format=console"},
		{"--auth-token="},
		{"--discovery-fallback=exit"},
		{"--distributed-tracing-sampling-rate=-1"}, // only checked when tracing is on
	} {
		if _, err := parse(t, args, nil); err != nil {
			t.Errorf("Parse(%q) = %v, want no error", args, err)
		}
	}
}

// TestAutoCompactionFlags: --auto-compaction-retention is read as etcd
// 3.7.3 reads it: a bare number is hours in periodic mode and revisions in
// revision mode, anything else a duration (whose count of nanoseconds is
// the revisions in revision mode); empty and 0 disable.
func TestAutoCompactionFlags(t *testing.T) {
	tests := []struct {
		args     []string
		wantMode string
		want     time.Duration
	}{
		{nil, "periodic", 0},
		{[]string{"--auto-compaction-retention="}, "periodic", 0},
		{[]string{"--auto-compaction-retention=1"}, "periodic", time.Hour},
		{[]string{"--auto-compaction-retention=30m"}, "periodic", 30 * time.Minute},
		{[]string{"--auto-compaction-retention=2s"}, "periodic", 2 * time.Second},
		{[]string{"--auto-compaction-mode=revision", "--auto-compaction-retention=1000"}, "revision", 1000},
		{[]string{"--auto-compaction-mode=revision", "--auto-compaction-retention=1us"}, "revision", 1000},
	}
	for _, tt := range tests {
		c, err := parse(t, tt.args, nil)
		if err != nil {
			t.Errorf("Parse(%q) = %v", tt.args, err)
			continue
		}
		if c.AutoCompactionMode != tt.wantMode || c.AutoCompactionRetention != tt.want {
			t.Errorf("Parse(%q): mode %q retention %d, want %q %d", tt.args, c.AutoCompactionMode, c.AutoCompactionRetention, tt.wantMode, tt.want)
		}
	}
	c, err := parse(t, nil, []string{"ETCD_AUTO_COMPACTION_MODE=revision", "ETCD_AUTO_COMPACTION_RETENTION=10"})
	if err != nil || c.AutoCompactionMode != "revision" || c.AutoCompactionRetention != 10 {
		t.Errorf("from the environment: %+v, %v; want revision, 10", c, err)
	}
	// etcd takes a negative duration, then compacts without pause; Cairn
	// takes it too and warns that auto-compaction stays off.
	c, err = parse(t, []string{"--auto-compaction-retention=-1h"}, nil)
	if err != nil || c.AutoCompactionRetention != -time.Hour {
		t.Fatalf("Parse(-1h) = %+v, %v; want a retention of -1h", c, err)
	}
	want := "--auto-compaction-retention=-1h is negative: auto-compaction stays off in Cairn (see docs/limitations.md)"
	if !slices.Contains(c.Warnings, want) {
		t.Errorf("warnings %q, want %q", c.Warnings, want)
	}
}

// TestClusterFlagsLandInConfig: the cluster flags' values reach Config,
// from flags and variables, for the clustering work.
func TestClusterFlagsLandInConfig(t *testing.T) {
	c, err := parse(t, []string{
		"--strict-reconfig-check=false", "--initial-election-tick-advance=false", "--pre-vote=false",
		"--max-learners=3", "--snapshot-catchup-entries=100", "--max-snapshots=0", "--max-wals=7",
		"--force-new-cluster", "--unsafe-no-fsync=true",
		"--discovery-dial-timeout=3s", "--discovery-request-timeout=4s", "--discovery-keepalive-time=5s",
		"--discovery-keepalive-timeout=6s", "--discovery-insecure-transport=false", "--discovery-insecure-skip-tls-verify",
		"--discovery-cert=c.pem", "--discovery-key=k.pem", "--discovery-cacert=ca.pem", "--discovery-user=u",
		"--discovery-password=secret", "--discovery-srv-name=x",
	}, []string{"ETCD_HEARTBEAT_INTERVAL=50", "ETCD_ELECTION_TIMEOUT=500", "ETCD_INITIAL_CLUSTER_STATE=existing", "ETCD_INITIAL_CLUSTER_TOKEN=tok"})
	if err != nil {
		t.Fatal(err)
	}
	got := *c
	want := Config{
		StrictReconfigCheck: false, InitialElectionTickAdvance: false, PreVote: false,
		MaxLearners: 3, SnapshotCatchUpEntries: 100, MaxSnapshots: 0, MaxWALs: 7,
		ForceNewCluster: true, UnsafeNoFsync: true,
		HeartbeatInterval: 50 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond,
		InitialClusterState: "existing", InitialClusterToken: "tok",
		Discovery: Discovery{
			DialTimeout: 3 * time.Second, RequestTimeout: 4 * time.Second, KeepAliveTime: 5 * time.Second,
			KeepAliveTimeout: 6 * time.Second, InsecureTransport: false, InsecureSkipTLSVerify: true,
			Cert: "c.pem", Key: "k.pem", CACert: "ca.pem", User: "u", Password: "secret", SRVName: "x", Fallback: "exit",
		},
	}
	pick := func(c Config) Config {
		return Config{
			StrictReconfigCheck: c.StrictReconfigCheck, InitialElectionTickAdvance: c.InitialElectionTickAdvance, PreVote: c.PreVote,
			MaxLearners: c.MaxLearners, SnapshotCatchUpEntries: c.SnapshotCatchUpEntries, MaxSnapshots: c.MaxSnapshots, MaxWALs: c.MaxWALs,
			ForceNewCluster: c.ForceNewCluster, UnsafeNoFsync: c.UnsafeNoFsync,
			HeartbeatInterval: c.HeartbeatInterval, ElectionTimeout: c.ElectionTimeout,
			InitialClusterState: c.InitialClusterState, InitialClusterToken: c.InitialClusterToken,
			Discovery: c.Discovery,
		}
	}
	if diff := cmp.Diff(want, pick(got), cmpopts.IgnoreUnexported(auth.TokenConfig{})); diff != "" {
		t.Errorf("cluster settings mismatch (-want +got):\n%s", diff)
	}
	for _, w := range c.Warnings {
		if strings.Contains(w, "secret") {
			t.Errorf("warning %q shows the discovery password", w)
		}
	}
	// The variables set them too, and a bare boolean flag is true.
	c, err = parse(t, []string{"--strict-reconfig-check"}, []string{"ETCD_PRE_VOTE=false", "ETCD_MAX_LEARNERS=2", "ETCD_SNAPSHOT_CATCHUP_ENTRIES=7"})
	if err != nil {
		t.Fatal(err)
	}
	if !c.StrictReconfigCheck || c.PreVote || c.MaxLearners != 2 || c.SnapshotCatchUpEntries != 7 {
		t.Errorf("StrictReconfigCheck, PreVote, MaxLearners, SnapshotCatchUpEntries = %v, %v, %d, %d; want true, false, 2, 7",
			c.StrictReconfigCheck, c.PreVote, c.MaxLearners, c.SnapshotCatchUpEntries)
	}
	// etcd's conflict rule holds for the new flags as for the old.
	_, err = parse(t, []string{"--pre-vote=false"}, []string{"ETCD_PRE_VOTE=false"})
	if want := `conflicting environment variable "ETCD_PRE_VOTE" is shadowed by corresponding command-line flag`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("flag and variable: %v, want %q", err, want)
	}
}

// TestNoEffectWarnings: a flag Cairn accepts without acting on it is
// named in one warning when set away from its default, and only then.
func TestNoEffectWarnings(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"defaults", []string{"--auto-compaction-retention=0", "--log-outputs=default", "--cors=*", "--enable-grpc-gateway"}, nil},
		{"inert flags", []string{"--auto-compaction-retention=1h", "--listen-metrics-urls=http://127.0.0.1:2381", "--metrics=extensive", "--enable-log-rotation", "--memory-mlock"}, []string{
			"--memory-mlock has no effect in Cairn; it is accepted for compatibility with etcd (see docs/limitations.md)",
		}},
		{"cluster flags", []string{"--strict-reconfig-check=false", "--unsafe-no-fsync", "--force-new-cluster", "--max-wals=7"}, []string{
			"--max-wals has no effect in Cairn (Cairn keeps one raft log file, rewritten in place when compacted); it is accepted for compatibility with etcd (see docs/limitations.md)",
		}},
		{"deprecated flag at its default", []string{"--max-snapshots=5"}, []string{
			"--max-snapshots is deprecated by etcd 3.6 and goes away in 3.8",
		}},
		{"etcd 2 flag", []string{"--v"}, []string{
			"--v has no effect in Cairn; it is accepted for compatibility with etcd (see docs/limitations.md)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(t, tt.args, nil)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, c.Warnings); diff != "" {
				t.Errorf("Warnings mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestMetricsFlags: --metrics and --listen-metrics-urls act: their values
// reach Config, from the command line and the environment.
func TestMetricsFlags(t *testing.T) {
	c, err := parse(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Metrics != "basic" || c.ListenMetricsURLs != nil {
		t.Errorf("defaults: Metrics %q, ListenMetricsURLs %v; want basic, none", c.Metrics, c.ListenMetricsURLs)
	}
	c, err = parse(t, []string{"--metrics=extensive"}, []string{"ETCD_LISTEN_METRICS_URLS=http://127.0.0.1:2381,unix://m.sock"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range c.ListenMetricsURLs {
		got = append(got, u.String())
	}
	if want := []string{"http://127.0.0.1:2381", "unix://m.sock"}; c.Metrics != "extensive" || !slices.Equal(got, want) {
		t.Errorf("Metrics %q, ListenMetricsURLs %q; want extensive, %q", c.Metrics, got, want)
	}
	// As etcd, a secure metrics URL needs the client certificate.
	_, err = parse(t, []string{"--listen-metrics-urls=https://127.0.0.1:2381"}, nil)
	if want := "must be provided for metrics secure url"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("https metrics URL without a certificate: %v, want %q", err, want)
	}
	if _, err := parse(t, []string{"--listen-metrics-urls=https://127.0.0.1:2381", "--auto-tls"}, nil); err != nil {
		t.Errorf("https metrics URL with --auto-tls: %v", err)
	}
}

// TestAuthFlags: --bcrypt-cost and --auth-token-ttl act, from the command
// line and the environment, and no longer warn.
func TestAuthFlags(t *testing.T) {
	c, err := parse(t, []string{"--bcrypt-cost=4", "--auth-token=simple"}, []string{"ETCD_AUTH_TOKEN_TTL=7"})
	if err != nil {
		t.Fatal(err)
	}
	if c.BcryptCost != 4 || c.AuthTokenTTL != 7*time.Second || len(c.Warnings) != 0 {
		t.Errorf("BcryptCost %d, AuthTokenTTL %v, warnings %q; want 4, 7s, none", c.BcryptCost, c.AuthTokenTTL, c.Warnings)
	}
}

// TestAuthTokenFlag: --auth-token is parsed, and its JWT key files read,
// when the configuration is, with etcd's errors; unknown JWT options are
// warned about.
func TestAuthTokenFlag(t *testing.T) {
	dir := t.TempDir()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	priv, pub := filepath.Join(dir, "k.key"), filepath.Join(dir, "k.pub")
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{priv, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k)}, {pub, "PUBLIC KEY", der}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		args, environ []string
		kind          auth.TokenKind
		warning       string
	}{
		{nil, nil, auth.SimpleTokens, ""},
		{[]string{"--auth-token=simple,anything=goes"}, nil, auth.SimpleTokens, ""},
		{[]string{"--auth-token="}, nil, auth.NoTokens, ""},
		{[]string{"--auth-token=jwt,sign-method=RS256,priv-key=" + priv + ",pub-key=" + pub + ",ttl=1m"}, nil, auth.JWTTokens, ""},
		{nil, []string{"ETCD_AUTH_TOKEN=jwt,sign-method=PS512,pub-key=" + pub}, auth.JWTTokens, ""},
		{[]string{"--auth-token=jwt,sign-method=RS384,priv-key=" + priv + ",colour=blue"}, nil, auth.JWTTokens, "--auth-token: unknown JWT options colour are ignored"},
	} {
		c, err := parse(t, tt.args, tt.environ)
		if err != nil {
			t.Errorf("Parse(%q, %q) = %v", tt.args, tt.environ, err)
			continue
		}
		if c.AuthToken.Kind != tt.kind {
			t.Errorf("Parse(%q, %q): kind %v, want %v", tt.args, tt.environ, c.AuthToken.Kind, tt.kind)
		}
		if got := strings.Join(c.Warnings, "; "); got != tt.warning {
			t.Errorf("Parse(%q, %q): warnings %q, want %q", tt.args, tt.environ, got, tt.warning)
		}
	}
	for _, tt := range []struct{ value, wantErr string }{
		{"paseto", "--auth-token: auth: invalid auth options"},
		{"simple,novalue", "--auth-token: auth: invalid auth options"},
		{"jwt,sign-method=RS256,sign-method=RS256", "--auth-token: auth: invalid auth options"},
		{"jwt,sign-method=XX256,priv-key=" + priv, "--auth-token: auth: invalid auth options"},
		{"jwt,priv-key=" + priv, "--auth-token: auth: invalid auth options"},
		{"jwt,sign-method=RS256,priv-key=" + filepath.Join(dir, "missing"), "--auth-token: auth: invalid auth options"},
		{"jwt,sign-method=RS256,priv-key=" + priv + ",ttl=forever", "--auth-token: auth: invalid auth options"},
		{"jwt,sign-method=RS256", "--auth-token: auth: missing key data"},
		{"jwt,sign-method=ES256,priv-key=" + priv, "--auth-token: x509: failed to parse private key (use ParsePKCS1PrivateKey instead for this key format)"},
	} {
		if _, err := parse(t, []string{"--auth-token=" + tt.value}, nil); err == nil || errors.Is(err, ErrFlagSyntax) || err.Error() != tt.wantErr {
			t.Errorf("--auth-token=%s: error %v, want the configuration error %q", tt.value, err, tt.wantErr)
		}
	}
}

// TestTLSFlags: etcd's TLS flags land in the client and peer sides, from
// the command line and the environment, with the shared versions and
// cipher suites on both.
func TestTLSFlags(t *testing.T) {
	c, err := parse(t, []string{
		"--listen-client-urls=https://127.0.0.1:2379", "--advertise-client-urls=https://127.0.0.1:2379",
		"--listen-peer-urls=https://127.0.0.1:2380", "--initial-advertise-peer-urls=https://127.0.0.1:2380",
		"--cert-file=s.pem", "--key-file=s.key", "--client-cert-auth", "--trusted-ca-file=ca.pem",
		"--client-cert-file=c.pem", "--client-key-file=c.key", "--client-crl-file=c.crl",
		"--client-cert-allowed-hostname=b.example,a.example",
		"--peer-cert-file=p.pem", "--peer-key-file=p.key", "--peer-client-cert-auth",
		"--peer-client-cert-file=pc.pem", "--peer-client-key-file=pc.key", "--peer-crl-file=p.crl",
		"--peer-cert-allowed-cn=m2,m1", "--peer-skip-client-san-verification",
		"--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
		"--tls-max-version=TLS1.2", "--self-signed-cert-validity=0",
	}, []string{"ETCD_PEER_TRUSTED_CA_FILE=pca.pem", "ETCD_AUTO_TLS=true"})
	if err != nil {
		t.Fatal(err)
	}
	suites := []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	wantClient := tlsconfig.Info{
		CertFile: "s.pem", KeyFile: "s.key", ClientCertFile: "c.pem", ClientKeyFile: "c.key",
		TrustedCAFile: "ca.pem", ClientCertAuth: true, CRLFile: "c.crl",
		AllowedHostnames: []string{"a.example", "b.example"},
		CipherSuites:     suites, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12,
	}
	wantPeer := tlsconfig.Info{
		CertFile: "p.pem", KeyFile: "p.key", ClientCertFile: "pc.pem", ClientKeyFile: "pc.key",
		TrustedCAFile: "pca.pem", ClientCertAuth: true, CRLFile: "p.crl",
		AllowedCNs:   []string{"m1", "m2"},
		CipherSuites: suites, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12,
	}
	if diff := cmp.Diff(wantClient, c.ClientTLS); diff != "" {
		t.Errorf("ClientTLS (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantPeer, c.PeerTLS); diff != "" {
		t.Errorf("PeerTLS (-want +got):\n%s", diff)
	}
	if !c.ClientAutoTLS || c.PeerAutoTLS || c.SelfSignedCertValidity != 1 {
		t.Errorf("auto TLS: client %v, peer %v, validity %d; want true, false, 1 (etcd's for 0)", c.ClientAutoTLS, c.PeerAutoTLS, c.SelfSignedCertValidity)
	}

	// https:// with a generated certificate needs no files.
	if _, err := parse(t, []string{"--listen-client-urls=https://127.0.0.1:2379", "--auto-tls",
		"--listen-peer-urls=https://127.0.0.1:2380", "--peer-auto-tls"}, nil); err != nil {
		t.Errorf("https with auto TLS: %v", err)
	}
}

// TestTLSStartChecks: TLS settings etcd refuses when it starts (exit
// status 1), with etcd's messages.
func TestTLSStartChecks(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"unknown version", []string{"--tls-min-version=TLS1.1"}, `unexpected TLS version "TLS1.1" (must be one of: TLS1.2, TLS1.3)`},
		{"unknown max version", []string{"--tls-max-version=SSL3"}, `unexpected TLS version "SSL3" (must be one of: TLS1.2, TLS1.3)`},
		{"min above max", []string{"--tls-min-version=TLS1.3", "--tls-max-version=TLS1.2"}, "min version (TLS1.3) is greater than max version (TLS1.2)"},
		{"suites with TLS 1.3 only", []string{"--tls-min-version=TLS1.3", "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"},
			"cipher suites cannot be configured when only TLS1.3 is enabled"},
		{"unknown suite", []string{"--cipher-suites=TLS_NOPE"}, `unexpected TLS cipher suite "TLS_NOPE"`},
		{"https client URL without a certificate", []string{"--listen-client-urls=https://127.0.0.1:2379"},
			"TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme"},
		{"https peer URL without a certificate", []string{"--listen-peer-urls=https://127.0.0.1:2380", "--cert-file=s.pem", "--key-file=s.key"},
			"cannot listen on TLS for 127.0.0.1:2380: KeyFile and CertFile are not presented"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, tt.args, nil)
			if err == nil || errors.Is(err, ErrFlagSyntax) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Parse(%q) = %v, want a configuration error containing %q", tt.args, err, tt.wantErr)
			}
		})
	}
}

// TestCorruptionChecks: the corruption checks' gates and periods, from
// flags and from the environment, as etcd 3.7 reads them; etcd 3.7 no
// longer accepts --experimental-initial-corrupt-check.
func TestCorruptionChecks(t *testing.T) {
	tests := []struct {
		name             string
		args, environ    []string
		initial, compact bool
		period, compactT time.Duration
	}{
		{"defaults", nil, nil, false, false, 0, time.Minute},
		{"gates and periods", []string{"--feature-gates=InitialCorruptCheck=true,CompactHashCheck=true", "--corrupt-check-time=3s", "--compact-hash-check-time=2s"}, nil, true, true, 3 * time.Second, 2 * time.Second},
		{"all alpha", []string{"--feature-gates=AllAlpha=true"}, nil, true, true, 0, time.Minute},
		{"variables", nil, []string{"ETCD_FEATURE_GATES=CompactHashCheck=true", "ETCD_CORRUPT_CHECK_TIME=1m", "ETCD_COMPACT_HASH_CHECK_TIME=5s"}, false, true, time.Minute, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(t, tt.args, tt.environ)
			if err != nil {
				t.Fatal(err)
			}
			if c.InitialCorruptCheck != tt.initial || c.CompactHashCheck != tt.compact || c.CorruptCheckTime != tt.period || c.CompactHashCheckTime != tt.compactT {
				t.Errorf("initial %v, compact %v, period %v, compact period %v; want %v, %v, %v, %v",
					c.InitialCorruptCheck, c.CompactHashCheck, c.CorruptCheckTime, c.CompactHashCheckTime, tt.initial, tt.compact, tt.period, tt.compactT)
			}
			for _, w := range c.Warnings {
				if strings.Contains(w, "check-time") {
					t.Errorf("warning %q: the flag acts now", w)
				}
			}
		})
	}
	if _, err := parse(t, []string{"--experimental-initial-corrupt-check"}, nil); err == nil {
		t.Error("--experimental-initial-corrupt-check accepted; etcd 3.7 refuses it")
	}
}
