// Command cairn runs a Cairn member: an etcd v3 compatible key-value server.
// It takes etcd's flags and ETCD_* environment variables.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/cairn-kv/cairn/internal/config"
	"github.com/cairn-kv/cairn/internal/heapgoal"
	"github.com/cairn-kv/cairn/internal/server"
	"github.com/cairn-kv/cairn/internal/store"
)

// cairnVersion is Cairn's own release; store.Version is the etcd API
// version it serves.
const cairnVersion = "0.1.0"

// gitSHA is set at build time with -ldflags "-X main.gitSHA=...".
var gitSHA = "Not provided (use make build instead of go build)"

func main() {
	os.Exit(run(os.Args[1:], os.Environ()))
}

func run(args, environ []string) int {
	cfg, err := config.Parse(args, environ, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, config.ErrFlagSyntax):
		// The flag package has already printed the problem and the usage.
		return 2
	case err != nil:
		// etcd exits 1 for every other configuration error.
		fmt.Fprintf(os.Stderr, "cairn: %v\n", err)
		return 1
	}
	if cfg.PrintVersion {
		fmt.Printf("etcd Version: %s\nGit SHA: %s\nGo Version: %s\nGo OS/Arch: %s/%s\nCairn Version: %s\n",
			store.Version, gitSHA, runtime.Version(), runtime.GOOS, runtime.GOARCH, cairnVersion)
		return 0
	}
	lg, err := newLogger(cfg.LogLevel, cfg.LogFormat, cfg.LogOutputs, rotation{cfg.EnableLogRotation, cfg.LogRotationConfigJSON})
	if err != nil {
		fmt.Fprintf(os.Stderr, "cairn: %v\n", err)
		return 1
	}
	defer func() { _ = lg.Sync() }()
	for _, w := range cfg.Warnings {
		lg.Warn(w)
	}
	lg.Info("starting Cairn", zap.String("etcd-version", store.Version), zap.String("cairn-version", cairnVersion),
		zap.String("name", cfg.Name), zap.String("data-dir", cfg.DataDir), zap.String("storage-engine", cfg.StorageEngine))
	if heapgoal.Configured(environ) {
		lg.Info("garbage collector configured by the environment; heap headroom tuning off")
	} else {
		stopTuner := make(chan struct{})
		defer close(stopTuner)
		heapgoal.Start(lg, stopTuner)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	// A member may wait long for a quorum before it is ready; a signal then
	// ends the process at once, which loses nothing acknowledged (as a
	// kill -9 loses nothing).
	type started struct {
		srv *server.Server
		err error
	}
	ready := make(chan started, 1)
	go func() {
		srv, err := server.Start(cfg, lg)
		ready <- started{srv, err}
	}()
	var srv *server.Server
	select {
	case r := <-ready:
		if r.err != nil {
			lg.Error("failed to start", zap.Error(r.err))
			return 1
		}
		srv = r.srv
	case s := <-sig:
		// The readiness line is logged just before Start returns, and
		// etcd's test framework signals right after it: give Start a moment
		// to finish, then stop cleanly.
		select {
		case r := <-ready:
			if r.err != nil {
				lg.Error("failed to start", zap.Error(r.err))
				return 1
			}
			lg.Info("received signal; shutting down", zap.String("signal", s.String()))
			r.srv.Stop()
			lg.Info("stopped")
			return 0
		case <-time.After(2 * time.Second):
			lg.Info("received signal before ready; exiting", zap.String("signal", s.String()))
			return 1
		}
	}
	select {
	case s := <-sig:
		lg.Info("received signal; shutting down", zap.String("signal", s.String()))
	case <-srv.Removed():
		lg.Info("the member has been permanently removed from the cluster; its data directory must be removed before it is added again")
	}
	srv.Stop()
	lg.Info("stopped")
	return 0
}

// newLogger builds a JSON logger with etcd's field layout.
func newLogger(level, format string, outputs []string, rot rotation) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	paths, err := logPaths(outputs)
	if err != nil {
		return nil, err
	}
	if rot.enabled {
		if paths, err = rotatedPaths(outputs, paths, rot.configJSON); err != nil {
			return nil, err
		}
	}
	zc := zap.NewProductionConfig()
	zc.OutputPaths, zc.ErrorOutputPaths = paths, paths
	if format == "console" {
		zc.Encoding = "console"
	}
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.Sampling = nil
	zc.EncoderConfig.TimeKey = "ts"
	zc.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	zc.EncoderConfig.EncodeDuration = zapcore.StringDurationEncoder
	return zc.Build()
}

// rotation is --enable-log-rotation and --log-rotation-config-json.
type rotation struct {
	enabled    bool
	configJSON string
}

// logPaths turns --log-outputs into zap's output paths as etcd does:
// "default" and "stderr" are stderr, "stdout" stdout, anything else a
// file; duplicates count once, and /dev/null among them silences the rest.
// Cairn has no journald writer: "systemd/journal" logs to stderr, which
// journald collects from a systemd unit, and as in etcd it must be the
// only output.
func logPaths(outputs []string) ([]string, error) {
	var paths []string
	for _, o := range outputs {
		switch o {
		case "default", "systemd/journal":
			o = "stderr"
		}
		if o == "/dev/null" {
			return []string{o}, nil
		}
		if !slices.Contains(paths, o) {
			paths = append(paths, o)
		}
	}
	if slices.Contains(outputs, "systemd/journal") && len(outputs) > 1 {
		return nil, fmt.Errorf("running with systemd/journal but other '--log-outputs' values (%q) are configured with 'default'; override 'default' value with something else", outputs)
	}
	return paths, nil
}
