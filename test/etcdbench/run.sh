#!/usr/bin/env bash
# run.sh runs etcd's own benchmark tool (go.etcd.io/etcd/v3/tools/benchmark,
# etcd's root module v3.7.0 from the module proxy) against a reference etcd
# v3.7.3 and against Cairn on both engines, prints Cairn/etcd ratios of
# throughput, server CPU per operation and p99 latency, and writes them to
# docs/performance.md ("## etcd's benchmark tool (`make bench-etcd`)").
#
#   test/etcdbench/run.sh [--scale F] [--rounds N] [--rows LIST]
#                         [--targets LIST] [--report FILE | --no-report]
#                         [--cairn-bin PATH] [--profile SECS]
#
# --scale F multiplies every row's request total (default $SCALE or 1; the
#   totals at 1 make a whole run take about 10 minutes on 2 cores).
# --rounds N rounds per row (default $ROUNDS or 3); medians are taken.
# --rows LIST comma-separated rows to run (default $ROWS or all): put-1,
#   put-64, range-l, range-s, txn-put, watch-1key, watch-100keys,
#   watch-latency, lease-keepalive, put-cluster (a 3-member cluster, the
#   benchmark given every member's URL), rss-100k (the servers' resident
#   memory after 100 000 keys of 256 B, read 2 s after the last put).
# --targets LIST comma-separated subset of etcd,cairn-rocksdb,cairn-memory
#   (default all three; the ratios need etcd).
# --report FILE the Markdown file whose section is replaced (default
#   docs/performance.md); --no-report only prints the table.
# --cairn-bin PATH the Cairn binary (default bin/cairn; make build).
# --profile SECS starts every server with --enable-pprof and, for each run
#   and member, takes a CPU profile of the first SECS seconds of the load
#   and the allocation profile before and after it (raw/ROW.TARGET.ROUND.mN
#   .cpu.prof, .allocs0.prof, .allocs1.prof; `go tool pprof -base` of the
#   two allocation profiles gives the load's allocations). Profiling costs
#   the servers CPU, so a profiled run writes no report (as --no-report).
#
# Each run (one row, one round, one target) gets a fresh single-member server
# (three members for put-cluster), each member in its own process: new data
# directory under $TMPDIR (default /tmp), client
# and peer URLs on free loopback ports, default flags otherwise (fsync on, the
# default --quota-backend-bytes), and for Cairn --storage-engine rocksdb or
# memory. The script waits for "ready to serve client requests" in the
# server's log, reads the server's utime+stime from /proc/PID/stat before and
# after the benchmark, stops the server and removes its data. Within a round
# the three targets run one after another; the first target rotates from
# round to round. The RSS of every run is recorded after it. cmd/benchtable parses the tool's summaries and writes the
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
profile=''
while [ $# -gt 0 ]; do
	case $1 in
	--scale) scale=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--rows) rows=$2; shift 2 ;;
	--targets) targets_arg=$2; shift 2 ;;
	--report) report=$2; shift 2 ;;
	--no-report) report=''; shift ;;
	--cairn-bin) cairn_bin=$2; shift 2 ;;
	--profile) profile=$2; report=''; shift 2 ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
	*) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
case $report in ''|/*) ;; *) report=$PWD/$report ;; esac
case $cairn_bin in /*) ;; *) cairn_bin=$PWD/$cairn_bin ;; esac
IFS=, read -r -a targets <<<"$targets_arg"
all_rows=(put-1 put-64 range-l range-s txn-put watch-1key watch-100keys watch-latency lease-keepalive put-cluster rss-100k)
if [ "$rows" = all ]; then sel_rows=("${all_rows[@]}"); else IFS=, read -r -a sel_rows <<<"$rows"; fi

out=$here/out
bin=$out/bin
raw=$out/raw
mkdir -p "$bin" "$raw"
cd "$here"

# n TOTAL prints TOTAL × scale, rounded, at least 1.
n() { awk -v s="$scale" -v n="$1" 'BEGIN { v = int(n * s + 0.5); if (v < 1) v = 1; print v }'; }

# row sets label, a row's name in the table, args, the benchmark tool's
# arguments after --endpoints, and members, the cluster size, for row $1.
row() {
	members=1
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
	put-cluster) label="put, 3-member cluster, 64 clients / 8 conns over all members"
		members=3
		args="--conns=8 --clients=64 put --key-size=8 --sequential-keys --total=$(n 50000) --val-size=256" ;;
	rss-100k) label="memory: 100 000 keys of 256 B put by 64 clients"
		args="--conns=8 --clients=64 put --key-size=8 --sequential-keys --key-space-size=100000 --total=100000 --val-size=256" ;;
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

# free_port prints a loopback TCP port nobody uses (10000-19999: below the
# kernel's ephemeral ports, 32768 and up by default, which a connection
# made between the check and the server's listen could take; the etcd
# suite of test/etcdsuite uses 20000 and up).
used_ports=' '
free_port() {
	local p
	while :; do
		p=$((10000 + RANDOM % 10000))
		[[ $used_ports != *" $p "* ]] || continue
		if [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ]; then
			used_ports+="$p "
			echo "$p"
			return
		fi
	done
}

srv_pids=()
srv_dir=''
stop_server() {
	local pid
	for pid in "${srv_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${srv_pids[@]}"; do
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	srv_pids=()
	if [ -n "$srv_dir" ]; then rm -rf "$srv_dir"; srv_dir=''; fi
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# start_server TARGET N starts a fresh cluster of N members (one process
# each) and sets srv_pids, srv_dir and ep (the client URLs, comma-separated).
start_server() {
	local target=$1 n=$2 i exe cluster='' log
	local cports=() pports=()
	srv_dir=$(mktemp -d "${TMPDIR:-/tmp}/etcdbench.XXXXXX")
	for i in $(seq "$n"); do
		cports+=("$(free_port)")
		pports+=("$(free_port)")
		cluster+="m$i=http://127.0.0.1:${pports[i - 1]},"
	done
	cluster=${cluster%,}
	case $target in
	etcd) exe=$bin/etcd ;;
	cairn-rocksdb | cairn-memory) exe=$bin/cairn ;;
	*) echo "run.sh: unknown target $target" >&2; exit 2 ;;
	esac
	ep=''
	for i in $(seq "$n"); do
		local cu=http://127.0.0.1:${cports[i - 1]} pu=http://127.0.0.1:${pports[i - 1]}
		local args=(--name "m$i" --data-dir "$srv_dir/m$i"
			--listen-client-urls "$cu" --advertise-client-urls "$cu"
			--listen-peer-urls "$pu" --initial-advertise-peer-urls "$pu"
			--initial-cluster "$cluster" --initial-cluster-token etcdbench)
		[ "$target" = etcd ] || args+=(--storage-engine "${target#cairn-}")
		[ -z "$profile" ] || args+=(--enable-pprof)
		"$exe" "${args[@]}" > "$srv_dir/m$i.log" 2>&1 &
		srv_pids+=($!)
		ep+=",$cu"
	done
	ep=${ep#,}
	for i in $(seq "$n"); do
		log=$srv_dir/m$i.log
		for _ in $(seq 600); do
			if grep -q "ready to serve client requests" "$log"; then continue 2; fi
			if ! kill -0 "${srv_pids[i - 1]}" 2>/dev/null; then break; fi
			sleep 0.1
		done
		echo "run.sh: $target member m$i did not become ready; its log:" >&2
		tail -n 30 "$log" >&2
		exit 1
	done
}

# cpu_ticks prints utime+stime of the server processes in clock ticks
# (fields 14 and 15 of /proc/PID/stat, counted after the parenthesised
# command name).
cpu_ticks() {
	local pid n=0
	for pid in "${srv_pids[@]}"; do n=$((n + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }'))); done
	echo "$n"
}

# rss_kb prints the resident set size of the server processes in KiB.
rss_kb() {
	local pid n=0
	for pid in "${srv_pids[@]}"; do n=$((n + $(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"))); done
	echo "$n"
}

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
echo "# row	label	round	target	exit	server-cpu-ticks	clk-tck	raw	args	machine-busy-ticks	tool-cpu-seconds	wall-seconds	server-rss-kib" > "$results"
value=$(head -c 256 /dev/zero | tr '\0' x)
start=$(date +%s)
for row in "${sel_rows[@]}"; do
	row "$row"
	for round in $(seq "$rounds"); do
		k=${#targets[@]}
		for i in $(seq 0 $((k - 1))); do
			target=${targets[$(((i + round - 1) % k))]}
			start_server "$target" "$members"
			if [[ $row == range-* ]]; then
				"$bin/etcdctl" --endpoints "$ep" put foo "$value" > /dev/null
			fi
			f=$row.$target.$round
			t0=$(cpu_ticks)
			b0=$(busy_ticks)
			times > "$times_file"
			c0=$(child_cpu)
			prof_pids=()
			if [ -n "$profile" ]; then
				IFS=, read -r -a urls <<<"$ep"
				for i in "${!urls[@]}"; do
					curl -s "${urls[i]}/debug/pprof/allocs" > "$raw/$f.m$((i + 1)).allocs0.prof"
					curl -s "${urls[i]}/debug/pprof/profile?seconds=$profile" > "$raw/$f.m$((i + 1)).cpu.prof" &
					prof_pids+=($!)
				done
			fi
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
			t1=$(cpu_ticks)
			if [ -n "$profile" ]; then
				for i in "${!urls[@]}"; do
					curl -s "${urls[i]}/debug/pprof/allocs" > "$raw/$f.m$((i + 1)).allocs1.prof"
				done
				wait "${prof_pids[@]}"
			fi
			# The memory rows read the RSS once the server has settled.
			[[ $row != rss-* ]] || sleep 2
			rss=$(rss_kb)
			for i in $(seq "$members"); do tail -n 50 "$srv_dir/m$i.log"; done > "$raw/$f.server.log"
			stop_server
			rps=$(grep -a 'Requests/sec' "$raw/$f.out" | tail -n 1 | awk '{ print $2 }')
			printf '  %-16s round %d  %-14s rc=%d  req/s %-10s server CPU %.2fs  RSS %d MiB\n' "$row" "$round" "$target" "$rc" "${rps:-?}" "$(awk -v t=$((t1 - t0)) -v h="$hz" 'BEGIN { print t / h }')" $((rss / 1024))
			printf '%s\t%s\t%d\t%s\t%d\t%d\t%s\t%s\t%s\t%d\t%s\t%s\t%d\n' "$row" "$label" "$round" "$target" "$rc" $((t1 - t0)) "$hz" "raw/$f.out" "$args" \
				$((b1 - b0)) "$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')" "$(awk -v a="$w0" -v b="$w1" 'BEGIN { print b - a }')" "$rss" >> "$results"
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
