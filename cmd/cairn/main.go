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
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/cairn-kv/cairn/internal/config"
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
	lg, err := newLogger(cfg.LogLevel)
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
	srv, err := server.Start(cfg, lg)
	if err != nil {
		lg.Error("failed to start", zap.Error(err))
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	s := <-sig
	lg.Info("received signal; shutting down", zap.String("signal", s.String()))
	srv.Stop()
	lg.Info("stopped")
	return 0
}

// newLogger builds a JSON logger with etcd's field layout.
func newLogger(level string) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.Sampling = nil
	zc.EncoderConfig.TimeKey = "ts"
	zc.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	zc.EncoderConfig.EncodeDuration = zapcore.StringDurationEncoder
	return zc.Build()
}
