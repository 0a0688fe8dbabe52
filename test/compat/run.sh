#!/usr/bin/env bash
# run.sh checks that etcd v3 endpoints behave as etcd 3.7 does, through the
# official clientv3 SDK (see conformance/main.go for the cases).
#
#   test/compat/run.sh [--endpoints HOST:PORT,...] [--report FILE] [--run REGEXP] [--title TEXT]
#
# It prints PASS/FAIL per case and "N passed, M failed", writes a Markdown
# report with --report, and exits non-zero when a case fails. Point it at a
# cluster with no other users: one case compacts the key space and one
# turns auth on for a moment.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
exec go run ./test/compat/conformance "$@"
