#!/usr/bin/env bash
# run.sh runs etcd's own benchmark tool (go.etcd.io/etcd/v3/tools/benchmark,
# etcd's root module v3.7.0 from the module proxy) against a reference etcd
# v3.7.3 and against Cairn on both engines, prints Cairn/etcd ratios of
# throughput, server CPU per operation and p99 latency, and writes them to
# docs/performance.md ("## etcd's benchmark tool (`make bench-etcd`)").
#
#   test/etcdbench/run.sh [--scale F] [--rounds N] [--rows LIST]
#                         [--targets LIST] [--report FILE | --no-report]
#                         [--cairn-bin PATH]
#
# --scale F multiplies every row's request total (default $SCALE or 1; the
#   totals at 1 make a whole run take about 10 minutes on 2 cores).
# --rounds N rounds per row (default $ROUNDS or 3); medians are taken.
# --rows LIST comma-separated rows to run (default $ROWS or all): put-1,
#   put-64, range-l, range-s, txn-put, watch-1key, watch-100keys,
#   watch-latency, lease-keepalive.
# --targets LIST comma-separated subset of etcd,cairn-rocksdb,cairn-memory
#   (default all three; the ratios need etcd).
# --report FILE the Markdown file whose section is replaced (default
#   docs/performance.md); --no-report only prints the table.
# --cairn-bin PATH the Cairn binary (default bin/cairn; make build).
#
# Each run (one row, one round, one target) gets a fresh single-member server
# in its own process: new data directory under $TMPDIR (default /tmp), client
# and peer URLs on free loopback ports, default flags otherwise (fsync on, the
# default --quota-backend-bytes), and for Cairn --storage-engine rocksdb or
# memory. The script waits for "ready to serve client requests" in the
# server's log, reads the server's utime+stime from /proc/PID/stat before and
# after the benchmark, stops the server and removes its data. Within a round
# the three targets run one after another; the first target rotates from
# round to round. cmd/benchtable parses the tool's summaries and writes the
# table.
#
# Everything built or recorded stays in test/etcdbench/out/ (ignored by git):
# bin/ (benchmark, etcd, etcdctl, benchtable), etcdmain/ (the reference etcd's
# main, written here so that no file of the repository imports etcd's
# server), raw/ (each run's output and server log tail) and results.tsv.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
GO=${GO:-go}

scale=${SCALE:-1}
rounds=${ROUNDS:-3}
rows=${ROWS:-all}
targets_arg=${TARGETS:-etcd,cairn-rocksdb,cairn-memory}
report=$root/docs/performance.md
cairn_bin=$root/bin/cairn
while [ $# -gt 0 ]; do
	case $1 in
	--scale) scale=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--rows) rows=$2; shift 2 ;;
	--targets) targets_arg=$2; shift 2 ;;
	--report) report=$2; shift 2 ;;
	--no-report) report=''; shift ;;
	--cairn-bin) cairn_bin=$2; shift 2 ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
	*) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
case $report in ''|/*) ;; *) report=$PWD/$report ;; esac
case $cairn_bin in /*) ;; *) cairn_bin=$PWD/$cairn_bin ;; esac
IFS=, read -r -a targets <<<"$targets_arg"
all_rows=(put-1 put-64 range-l range-s txn-put watch-1key watch-100keys watch-latency lease-keepalive)
if [ "$rows" = all ]; then sel_rows=("${all_rows[@]}"); else IFS=, read -r -a sel_rows <<<"$rows"; fi

out=$here/out
bin=$out/bin
raw=$out/raw
mkdir -p "$bin" "$raw"
cd "$here"

# n TOTAL prints TOTAL × scale, rounded, at least 1.
n() { awk -v s="$scale" -v n="$1" 'BEGIN { v = int(n * s + 0.5); if (v < 1) v = 1; print v }'; }

# row sets label, a row's name in the table, and args, the benchmark tool's
# arguments after --endpoints, for row $1.
row() {
	case $1 in
	put-1) label="put, 1 client"
		args="--conns=1 --clients=1 put --key-size=8 --sequential-keys --total=$(n 8000) --val-size=256" ;;
	put-64) label="put, 64 clients / 8 conns"
		args="--conns=8 --clients=64 put --key-size=8 --sequential-keys --total=$(n 50000) --val-size=256" ;;
	range-l) label="range linearizable, 64 clients"
		args="--conns=8 --clients=64 range foo --consistency=l --total=$(n 100000)" ;;
	range-s) label="range serializable, 64 clients"
		args="--conns=8 --clients=64 range foo --consistency=s --total=$(n 100000)" ;;
	txn-put) label="txn-put, 16 clients"
		args="--conns=4 --clients=16 txn-put --key-size=8 --val-size=256 --total=$(n 25000)" ;;
	watch-1key) label="watch: 1000 watchers on 1 key (events/s)"
		args="--clients=8 --conns=8 watch --streams=10 --watch-per-stream=100 --watched-key-total=1 --put-total=$(n 4000) --key-size=8" ;;
	watch-100keys) label="watch: 6400 watchers over 100 keys (events/s)"
		args="--clients=8 --conns=8 watch --streams=64 --watch-per-stream=100 --watched-key-total=100 --key-space-size=100 --sequential-keys --put-total=$(n 10000) --key-size=8" ;;
	watch-latency) label="watch-latency: 100 watchers, 100 puts/s"
		args="watch-latency --put-total=$(n 1000) --put-rate=100" ;;
	lease-keepalive) label="lease keep-alive, 1 client"
		args="lease-keepalive --total=$(n 20000)" ;;
	*) echo "run.sh: unknown row $1" >&2; exit 2 ;;
	esac
}

echo "building etcd's benchmark tool (go.etcd.io/etcd/v3 v3.7.0), etcdctl and benchtable into $bin"
$GO build -o "$bin/benchmark" go.etcd.io/etcd/v3/tools/benchmark
$GO build -o "$bin/etcdctl" go.etcd.io/etcd/etcdctl/v3
$GO build -o "$bin/benchtable" ./cmd/benchtable
if [[ " ${targets[*]} " == *" etcd "* ]]; then
	echo "building reference etcd v3.7.3 into $bin"
	GO=$GO "$root/test/build-reference-etcd.sh" "$here" "$bin/etcd"
fi
if [[ " ${targets[*]} " == *" cairn-"* ]]; then
	if [ ! -x "$cairn_bin" ]; then
		echo "run.sh: $cairn_bin is missing; run make build first" >&2
		exit 1
	fi
	# A copy: other work may rebuild bin/cairn during the run.
	cp "$cairn_bin" "$bin/cairn"
fi

versions=''
[[ " ${targets[*]} " != *" etcd "* ]] || versions+="etcd: $("$bin/etcd" --version | tr '\n' ' ' | sed 's/ *$//')"$'\n'
[[ " ${targets[*]} " != *" cairn-"* ]] || versions+="Cairn: $("$bin/cairn" --version 2>&1 | tr '\n' ' ' | sed 's/ *$//')"$'\n'
versions+="benchmark: go.etcd.io/etcd/v3/tools/benchmark v3.7.0 with $(grep -E '^\s*go.etcd.io/etcd/client/v3 ' go.mod | awk '{print $1, $2}')"$'\n'
printf '%s' "$versions"

hz=$(getconf CLK_TCK)

# free_port prints a loopback TCP port nobody listens on (40000-59999; the
# etcd suite of test/etcdsuite uses 20000 and up).
used_ports=' '
free_port() {
	local p
	while :; do
		p=$((40000 + RANDOM % 20000))
		[[ $used_ports != *" $p "* ]] || continue
		if [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ]; then
			used_ports+="$p "
			echo "$p"
			return
		fi
	done
}

srv_pid=''
srv_dir=''
stop_server() {
	if [ -n "$srv_pid" ]; then
		kill -TERM "$srv_pid" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$srv_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$srv_pid" 2>/dev/null || true
		wait "$srv_pid" 2>/dev/null || true
		srv_pid=''
	fi
	if [ -n "$srv_dir" ]; then rm -rf "$srv_dir"; srv_dir=''; fi
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# start_server TARGET starts a fresh single member and sets srv_pid, srv_dir
# and ep (its client URL).
start_server() {
	local target=$1 cport pport exe
	cport=$(free_port)
	pport=$(free_port)
	srv_dir=$(mktemp -d "${TMPDIR:-/tmp}/etcdbench.XXXXXX")
	ep=http://127.0.0.1:$cport
	local args=(--name default --data-dir "$srv_dir/data"
		--listen-client-urls "$ep" --advertise-client-urls "$ep"
		--listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport"
		--initial-cluster "default=http://127.0.0.1:$pport")
	case $target in
	etcd) exe=$bin/etcd ;;
	cairn-rocksdb) exe=$bin/cairn; args+=(--storage-engine rocksdb) ;;
	cairn-memory) exe=$bin/cairn; args+=(--storage-engine memory) ;;
	*) echo "run.sh: unknown target $target" >&2; exit 2 ;;
	esac
	"$exe" "${args[@]}" > "$srv_dir/server.log" 2>&1 &
	srv_pid=$!
	for _ in $(seq 600); do
		if grep -q "ready to serve client requests" "$srv_dir/server.log"; then
			return 0
		fi
		if ! kill -0 "$srv_pid" 2>/dev/null; then break; fi
		sleep 0.1
	done
	echo "run.sh: $target did not become ready; its log:" >&2
	tail -n 30 "$srv_dir/server.log" >&2
	exit 1
}

# cpu_ticks PID prints utime+stime of PID in clock ticks (fields 14 and 15
# of /proc/PID/stat, counted after the parenthesised command name).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

# busy_ticks prints the clock ticks all CPUs of the machine spent busy (user,
# nice, system, irq, softirq, steal of /proc/stat).
busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }

# child_cpu prints the user+system seconds of this shell's waited-for
# children, from the second line of the times builtin. times must run in
# this shell (a command substitution's subshell starts from zero), so
# callers write it to $times_file first: times > "$times_file".
times_file=$out/times.txt
child_cpu() { awk 'NR == 2 { n = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); n += a[1] * 60 + a[2] } print n }' "$times_file"; }

results=$out/results.tsv
echo "# row	label	round	target	exit	server-cpu-ticks	clk-tck	raw	args	machine-busy-ticks	tool-cpu-seconds	wall-seconds" > "$results"
value=$(head -c 256 /dev/zero | tr '\0' x)
start=$(date +%s)
for row in "${sel_rows[@]}"; do
	row "$row"
	for round in $(seq "$rounds"); do
		k=${#targets[@]}
		for i in $(seq 0 $((k - 1))); do
			target=${targets[$(((i + round - 1) % k))]}
			start_server "$target"
			if [[ $row == range-* ]]; then
				"$bin/etcdctl" --endpoints "$ep" put foo "$value" > /dev/null
			fi
			f=$row.$target.$round
			t0=$(cpu_ticks "$srv_pid")
			b0=$(busy_ticks)
			times > "$times_file"
			c0=$(child_cpu)
			w0=$(date +%s.%N)
			set +e
			# shellcheck disable=SC2086 # args is a word list
			timeout 600 "$bin/benchmark" --endpoints="$ep" --precise $args > "$raw/$f.out" 2> "$raw/$f.err"
			rc=$?
			set -e
			w1=$(date +%s.%N)
			times > "$times_file"
			c1=$(child_cpu)
			b1=$(busy_ticks)
			t1=$(cpu_ticks "$srv_pid")
			tail -n 50 "$srv_dir/server.log" > "$raw/$f.server.log"
			stop_server
			rps=$(grep -a 'Requests/sec' "$raw/$f.out" | tail -n 1 | awk '{ print $2 }')
			printf '  %-16s round %d  %-14s rc=%d  req/s %-10s server CPU %.2fs\n' "$row" "$round" "$target" "$rc" "${rps:-?}" "$(awk -v t=$((t1 - t0)) -v h="$hz" 'BEGIN { print t / h }')"
			printf '%s\t%s\t%d\t%s\t%d\t%d\t%s\t%s\t%s\t%d\t%s\t%s\n' "$row" "$label" "$round" "$target" "$rc" $((t1 - t0)) "$hz" "raw/$f.out" "$args" \
				$((b1 - b0)) "$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')" "$(awk -v a="$w0" -v b="$w1" 'BEGIN { print b - a }')" >> "$results"
		done
	done
done
echo "ran ${#sel_rows[@]} rows × $rounds rounds × ${#targets[@]} targets in $(( $(date +%s) - start ))s"

shown="make bench-etcd SCALE=$scale ROUNDS=$rounds"
[ "$rows" = all ] || shown="$shown ROWS=$rows"
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
# Changes to the documentation and to this directory do not change what is
# measured; others do.
if ! git -C "$root" diff --quiet HEAD -- . ':!docs' ':!*.md' ':!test/etcdbench' ':!Makefile' 2>/dev/null; then
	commit="$commit (with uncommitted changes)"
fi
echo
"$bin/benchtable" -in "$results" -doc "$report" -commit "$commit" -command "$shown" \
	-versions "$versions" -scale "$scale" -rounds "$rounds" -note "${BENCH_NOTE:-}"
