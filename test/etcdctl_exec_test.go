package test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"time"
)

// etcdctlAt runs etcdctl against endpoint (host:port) with stdin as its
// standard input, as `etcdctl txn` reads its compares and ops there. It
// returns the combined output and the exit code; an etcdctl that could not
// be run at all, or ran past its timeout, reports exit code -1.
func etcdctlAt(endpoint, stdin string, args ...string) (string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, etcdctlBin, append([]string{"--endpoints", endpoint}, args...)...)
	cmd.Env = append(cleanEnv(), "ETCDCTL_API=3")
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit) && ctx.Err() == nil:
		return string(out), exit.ExitCode()
	default:
		return string(out) + err.Error(), -1
	}
}

// etcdctlStdin runs etcdctl against the member with stdin as its input.
func (m *member) etcdctlStdin(stdin string, args ...string) (string, int) {
	return etcdctlAt(m.clientEP, stdin, args...)
}
