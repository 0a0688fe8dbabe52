package config

import (
	"bytes"
	"errors"
	"flag"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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
		HTTPListenAddr:           "127.0.0.1:8080",
	}
	want.WatchProgressNotifyInterval = 10 * time.Minute
	want.LeaseCheckpointInterval = 5 * time.Minute
	if diff := cmp.Diff(want, c); diff != "" {
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
		{"https and unix URLs", []string{"--listen-client-urls=https://127.0.0.1:2379,unix://localhost:2379"}},
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
