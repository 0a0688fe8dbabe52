package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
	"gopkg.in/natefinch/lumberjack.v2"
)

// errRotationOutputs is etcd's refusal of --enable-log-rotation without
// exactly one file among the log outputs.
var errRotationOutputs = errors.New("--log-outputs requires a single file path when --log-rotate-config-json is defined")

// rotationSettings is the rotation the "rotate" sink gives the file it
// opens: --log-rotation-config-json as the last logger made read it.
var rotationSettings atomic.Pointer[lumberjack.Logger]

var registerRotation = sync.OnceValue(func() error {
	return zap.RegisterSink("rotate", func(u *url.URL) (zap.Sink, error) {
		l := *rotationSettings.Load()
		l.Filename = u.Path[1:]
		return rotatingFile{&l}, nil
	})
})

// logRotationConfig is --log-rotation-config-json: lumberjack's settings.
type logRotationConfig struct{ *lumberjack.Logger }

// rotatingFile is a log file that lumberjack rotates: a zap sink, whose
// writes lumberjack does not buffer, so Sync has nothing to do.
type rotatingFile struct{ *lumberjack.Logger }

func (rotatingFile) Sync() error { return nil }

// rotatedPaths checks --enable-log-rotation's outputs and settings as etcd
// does (one file among the outputs; lumberjack's JSON settings) and
// returns paths with the file's path going through the rotating sink.
func rotatedPaths(outputs, paths []string, configJSON string) ([]string, error) {
	files := 0
	for _, o := range outputs {
		switch o {
		case "default", "stderr", "stdout":
		default:
			files++
		}
	}
	if len(outputs) == 1 && files == 0 || files > 1 {
		return nil, errRotationOutputs
	}
	// Decoded through a type of etcd's name, so that an error names the
	// field as etcd's does ("logRotationConfig.Logger.maxsize").
	var settings logRotationConfig
	if err := json.Unmarshal([]byte(configJSON), &settings); err != nil {
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syntax):
			return nil, fmt.Errorf("improperly formatted log rotation config: %w", err)
		case errors.As(err, &typ):
			return nil, fmt.Errorf("invalid log rotation config: %w", err)
		}
		return nil, fmt.Errorf("fail to unmarshal log rotation config: %w", err)
	}
	if settings.Logger == nil {
		settings.Logger = new(lumberjack.Logger)
	}
	rotationSettings.Store(settings.Logger)
	if err := registerRotation(); err != nil {
		return nil, err
	}
	out := make([]string, len(paths))
	for i, p := range paths {
		switch p {
		case "stderr", "stdout", "/dev/null":
			out[i] = p
		default:
			// The sink takes the URL's path without its first slash, so
			// an absolute path keeps its own, escaped.
			if rest, abs := strings.CutPrefix(p, "/"); abs {
				p = "%2F" + rest
			}
			out[i] = "rotate:/" + p
		}
	}
	return out, nil
}
