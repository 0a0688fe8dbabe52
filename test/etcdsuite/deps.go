// Package etcdsuite runs etcd's own tests/common suite (e2e mode) against a
// bin directory holding either Cairn or a reference etcd as `etcd`, next to
// the real etcdctl and etcdutl (see run.sh and README.md). This file keeps
// the suite's packages required by the module; the tools are go.mod tool
// directives, and run.sh writes the reference etcd's main into out/ when it
// builds it, so no file of the repository imports etcd's server.
package etcdsuite

import (
	_ "go.etcd.io/etcd/tests/v3/common"
	_ "go.etcd.io/etcd/tests/v3/framework"
	_ "go.etcd.io/etcd/tests/v3/framework/e2e"
)
