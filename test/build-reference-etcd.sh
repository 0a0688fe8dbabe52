#!/usr/bin/env bash
# build-reference-etcd.sh builds the reference etcd server, etcd's etcdmain
# at the version the calling module pins, into OUTPUT.
#
#   test/build-reference-etcd.sh MODULE_DIR OUTPUT
#
# MODULE_DIR is a module of its own that requires go.etcd.io/etcd/server/v3
# (test/etcdsuite, test/etcdbench). The program's main is written into
# MODULE_DIR/out/etcdmain, which git ignores, so that no file of the
# repository imports etcd's server. GO names the go command (default go).
set -euo pipefail
dir=$1
output=$2
mkdir -p "$dir/out/etcdmain"
cat > "$dir/out/etcdmain/main.go" <<'GO'
// Command etcd is the reference etcd server, built from etcdmain.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
(cd "$dir" && ${GO:-go} build -o "$output" ./out/etcdmain)
