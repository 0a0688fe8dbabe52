package test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"time"
)

// etcdctlAt runs etcdctl against endpoint (host:port) with stdin as its
// standard input, as `etcdctl txn` reads its compares and ops there. It
// returns standard output and standard error apart, and the exit code; an
// etcdctl that could not be run at all, or ran past its timeout, reports
// exit code -1. ETCDCTL_API is left unset: etcdctl 3.7 speaks only v3 and
// warns about the variable.
func etcdctlAt(endpoint, stdin string, args ...string) (stdout, stderr string, exit int) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, etcdctlBin, append([]string{"--endpoints", endpoint}, args...)...)
	cmd.Env = cleanEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errOut.String(), 0
	case errors.As(err, &exitErr) && ctx.Err() == nil:
		return out.String(), errOut.String(), exitErr.ExitCode()
	default:
		return out.String(), errOut.String() + err.Error(), -1
	}
}

// etcdctlStdin runs etcdctl against the member with stdin as its input
// and returns its combined output and exit code.
func (m *member) etcdctlStdin(stdin string, args ...string) (string, int) {
	stdout, stderr, exit := etcdctlAt(m.clientEP, stdin, args...)
	return stdout + stderr, exit
}
