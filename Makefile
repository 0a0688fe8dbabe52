# Cairn: an etcd v3 compatible key-value server.
#
#   make run    installs what is missing, builds bin/cairn and starts one member
#   make test   installs what is missing and runs the whole suite on both engines
#   make cover  runs the unit and integration suites and writes per-package
#               statement coverage to coverage/coverage.txt (make test does too)

GO       ?= go
ENGINE   ?= rocksdb
DATA_DIR ?= data
GIT_SHA  := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X main.gitSHA=$(GIT_SHA)

export CGO_ENABLED := 1

.PHONY: run cluster build deps test unit integration cover lint bench bench-cluster bench-cost bench-etcd fuzz clean test-faults test-etcd test-etcd-ci

# deps installs the RocksDB headers and library when they are missing; it is
# quick and idempotent when they are present.
deps:
	@if ! dpkg -s librocksdb-dev >/dev/null 2>&1; then \
		echo "installing librocksdb-dev"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq librocksdb-dev; \
	fi

build: deps
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/cairn ./cmd/cairn
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/cairnutl ./cmd/cairnutl
	$(GO) build -o bin/etcdctl go.etcd.io/etcd/etcdctl/v3
	$(GO) build -o bin/etcdutl go.etcd.io/etcd/etcdutl/v3

run: build
	./bin/cairn --name default --data-dir $(DATA_DIR) --storage-engine $(ENGINE) \
		--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
		--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
		--initial-cluster default=http://127.0.0.1:2380 --http-listen-addr 127.0.0.1:8080

# cluster starts a local three-member cluster on ENGINE for trying it by
# hand: members c1, c2, c3 with client URLs 127.0.0.1:12379, :22379, :32379,
# peer URLs :12380, :22380, :32380, REST on :18080, :28080, :38080, data and
# logs under $(DATA_DIR)/cluster. Ctrl-C stops all three.
cluster: build
	@mkdir -p $(DATA_DIR)/cluster; \
	ic=c1=http://127.0.0.1:12380,c2=http://127.0.0.1:22380,c3=http://127.0.0.1:32380; \
	trap 'kill 0' INT TERM; \
	for i in 1 2 3; do \
		./bin/cairn --name c$$i --data-dir $(DATA_DIR)/cluster/c$$i --storage-engine $(ENGINE) \
			--initial-cluster $$ic --initial-cluster-token cairn-local \
			--listen-peer-urls http://127.0.0.1:$${i}2380 --initial-advertise-peer-urls http://127.0.0.1:$${i}2380 \
			--listen-client-urls http://127.0.0.1:$${i}2379 --advertise-client-urls http://127.0.0.1:$${i}2379 \
			--http-listen-addr 127.0.0.1:$${i}8080 > $(DATA_DIR)/cluster/c$$i.log 2>&1 & \
	done; \
	echo "cluster of 3 ($(ENGINE)) starting; logs in $(DATA_DIR)/cluster/c*.log; try:"; \
	echo "  bin/etcdctl --endpoints 127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379 endpoint status -w table"; \
	wait

lint: deps
	@test -z "$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go'))" || (gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go'); echo "gofmt: files above need formatting"; exit 1)
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# unit and integration also record statement coverage of Cairn's packages
# (COVER_PKGS) in COVER_DIR: unit's -race run writes unit.out; integration's
# members, built with -cover by test/harness_test.go's TestMain when
# GOCOVERDIR is set, write theirs when they exit (not when killed with
# SIGKILL), converted to integration.out.
COVER_DIR  := coverage
COVER_PKGS := ./internal/...,./pkg/...,./cmd/...

unit: deps
	@mkdir -p $(COVER_DIR)
	$(GO) test -race -count=1 -timeout 10m -coverpkg=$(COVER_PKGS) -coverprofile=$(COVER_DIR)/unit.out ./internal/... ./pkg/... ./cmd/...

# integration starts real members (both engines) and an embedded etcd for
# differential tests; it builds bin/cairn and bin/etcdctl first.
integration: build
	@rm -rf $(COVER_DIR)/integration && mkdir -p $(COVER_DIR)/integration
	GOCOVERDIR=$(CURDIR)/$(COVER_DIR)/integration $(GO) test -count=1 -timeout 15m ./test/...
	$(GO) tool covdata textfmt -i=$(COVER_DIR)/integration -o $(COVER_DIR)/integration.out

# cover runs unit and integration, then prints statement coverage per
# package, unit, integration and both together, and writes the table to
# coverage/coverage.txt. It fails when a key package (COVER_KEY) is below
# COVER_MIN percent with both runs counted; make test enforces this gate.
COVER_MIN ?= 80
COVER_KEY := internal/mvcc,internal/store,internal/raftnode,internal/raftlog,internal/raftlog/filelog,internal/raftlog/enginelog,internal/raftlog/internal/memlog,internal/storage,internal/storage/memory,internal/storage/rocksdb,internal/lease,internal/watch,internal/auth,pkg/etcdcompat,pkg/httpapi

cover: unit integration
	$(GO) run ./test/cover -min $(COVER_MIN) -module github.com/cairn-kv/cairn -key $(COVER_KEY) -o $(COVER_DIR)/coverage.txt \
		unit=$(COVER_DIR)/unit.out integration=$(COVER_DIR)/integration.out

test: lint cover test-etcd-ci

# test-faults runs the fault test (kill -9, SIGSTOP of leader and followers
# under concurrent clients, checked for linearizability with porcupine) for
# FAULT_DURATION of load per engine instead of make test's short pass.
FAULT_DURATION ?= 60s

test-faults: build
	CAIRN_FAULT_DURATION=$(FAULT_DURATION) $(GO) test -count=1 -run TestClusterFaultsLinearizable -timeout 30m -v ./test/

# test-etcd runs etcd v3.7.3's own tests/common suite (e2e mode, from the
# module proxy) with bin/cairn as the etcd binary and the real etcdctl and
# etcdutl, and writes the per-test report to docs/compatibility.md. make test
# runs part of it (test-etcd-ci, below). TARGET=etcd runs the suite against a reference etcd built
# from etcdmain instead (report in test/etcdsuite/out/etcd.md), which later
# Cairn reports use as their baseline. ETCD_SUITE_RUN is a go test -run
# pattern; ETCD_SUITE_FLAGS passes more flags to test/etcdsuite/run.sh, such
# as --minimal or --timeout 5m.
TARGET           ?= cairn
ETCD_SUITE_RUN   ?=
ETCD_SUITE_FLAGS ?=

test-etcd: $(if $(filter cairn,$(TARGET)),build)
	test/etcdsuite/run.sh --target $(TARGET) $(if $(value ETCD_SUITE_RUN),--run '$(value ETCD_SUITE_RUN)') $(ETCD_SUITE_FLAGS) \
		--report $(if $(filter cairn,$(TARGET)),docs/compatibility.md,test/etcdsuite/out/etcd.md)

# test-etcd-ci runs the part of etcd's tests/common suite that make test
# (CI) has time for: the tests in ETCD_SUITE_CI, each on one member without
# TLS and on three members with peer and client TLS (--minimal), about 90 s
# in all. It fails when one of them fails; the report goes to
# bin/etcd-suite-ci.md and the raw results to test/etcdsuite/out/ci.*,
# leaving a full run's alone.
ETCD_SUITE_CI := ^(TestKVPut|TestKVGet|TestKVDelete|TestKVGetStream|TestAuthTxn|TestAuthPrefixPerm|TestLeaseGrantKeepAliveOnce|TestUserAdd_Simple|TestTxnSucc|TestTxnFail|TestLeaseGrantRevoke|TestLeaseGrantTimeToLive|TestWatch|TestMemberList|TestStatus|TestEndpointHealth|TestEndpointHashKV|TestAlarm|TestAuthEnable|TestAuthWriteKey|TestAuthJWTOnly|TestRoleGrantRevokePermission|TestUserChangePassword|TestCompact|TestDefragOnline|TestWaitLeader)$$

test-etcd-ci: build
	@mkdir -p bin
	test/etcdsuite/run.sh --target cairn --minimal --timeout 3m --run '$(ETCD_SUITE_CI)' --raw ci --report bin/etcd-suite-ci.md

# bench-cost runs the cost guards, the BenchmarkCost benchmarks that time
# one path at sizes n, 10n and 100n, and prints how their cost per item grows
# with the size; test/bench/costreport flags a guard that grows faster than
# linearly. Each runs three times and the fastest run counts, which keeps
# the report steady on a busy machine. The raw output stays in
# bin/cost-bench.txt, for benchstat.
bench-cost: deps
	@mkdir -p bin
	$(GO) test -run '^$$' -bench '^BenchmarkCost' -benchtime 100ms -count 3 -timeout 10m ./internal/mvcc/ ./internal/watch/ > bin/cost-bench.txt || { cat bin/cost-bench.txt; exit 1; }
	$(GO) run ./test/bench/costreport < bin/cost-bench.txt

bench: bench-cost build
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./test/bench/...

# bench-cluster runs BenchmarkCompare's kv rows with every target a cluster
# of three members, each its own process: etcd, and Cairn on each engine,
# the load spread over the three members (docs/performance.md, "Method").
bench-cluster: deps
	$(GO) test -run '^$$' -bench Compare -benchtime 1x -timeout 30m ./test/bench/ -compare.members 3

# bench-etcd runs etcd's own benchmark tool (tools/benchmark of etcd's root
# module v3.7.0, from the module proxy) against a reference etcd 3.7.3 and
# against Cairn on both engines, each a fresh single member (a 3-member
# cluster for the cluster row) in its own processes, for ROUNDS rounds with
# the targets taking turns, and prints and writes to docs/performance.md the
# medians, Cairn/etcd ratios, server CPU per operation (from /proc), p99 and
# the memory row's RSS (test/etcdbench/README.md). SCALE multiplies the
# request totals: 1 takes about 15 minutes with 3 rounds on 2 cores.
# ROWS narrows the run, e.g. ROWS=put-1,range-s.
SCALE  ?= 1
ROUNDS ?= 3
ROWS   ?= all

bench-etcd: build
	test/etcdbench/run.sh --scale $(SCALE) --rounds $(ROUNDS) --rows $(ROWS)

# fuzz runs every fuzz target (func FuzzXxx(*testing.F)) of internal/ and
# pkg/ for FUZZTIME each, one target at a time as go test requires. Their
# seed corpora (testdata/fuzz/) also run in every plain go test.
FUZZTIME ?= 30s

fuzz: deps
	@set -e; for dir in $$($(GO) list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.Dir}}{{end}}' ./internal/... ./pkg/...); do \
		for target in $$(cd $$dir && $(GO) test -list '^Fuzz' . | grep '^Fuzz' || true); do \
			echo "== $$target in $$dir"; \
			(cd $$dir && $(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) .); \
		done; \
	done

clean:
	rm -rf bin $(COVER_DIR)
