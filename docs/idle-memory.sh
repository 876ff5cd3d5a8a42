#!/usr/bin/env bash
# Idle memory per stream, as docs/performance.md reports it.
#
#   docs/idle-memory.sh STREAMS STREAMS_PER_CONN [more parley bench flags, e.g. --subscribe]
#
# Builds parleyd and parley, starts parleyd on a loopback port (durable
# SQLite in a temporary directory, --dev, profiles on a second loopback
# port), and reads its /metrics. Then `parley bench --senders 0` opens
# STREAMS idle streams, each in a room of its own, STREAMS_PER_CONN to an
# HTTP/2 connection. Once the server's goroutine count has settled, four
# forced GCs (/debug/pprof/heap?gc=1) let it return what the handshakes and
# joins left behind; /metrics is read again and the differences are printed
# per stream: RSS, goroutines, goroutine stacks, heap in use.
#
# STREAMS above ~1,000 with one stream per connection need `ulimit -n`
# raised in the calling shell (both processes hold one descriptor each).
set -euo pipefail

n=${1:?streams}
spc=${2:?streams per connection}
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

(cd "$root" && go build -o "$work/parleyd" ./cmd/parleyd && go build -o "$work/parley" ./cmd/parley)
port=$((20000 + RANDOM % 5000))
"$work/parleyd" --dev --listen "127.0.0.1:$port" --data-dir "$work/data" --send-rate -1 \
	--max-join-streams-per-user 100000 --log-level warn --pprof-listen "127.0.0.1:$((port + 1))" \
	>"$work/parleyd.log" 2>&1 &
server=$!
for _ in $(seq 100); do
	curl -sf "http://127.0.0.1:$port/metrics" >/dev/null && break
	sleep 0.1 # polling for the server to listen
done

metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v k="$1" '$1 == k { printf "%d", $2 }'; }
snapshot() {
	echo "$(metric process_resident_memory_bytes) $(metric go_goroutines)" \
		"$(metric go_memstats_stack_inuse_bytes) $(metric go_memstats_heap_inuse_bytes)"
}
before=$(snapshot)

"$work/parley" --addr "127.0.0.1:$port" bench --senders 0 --receivers "$n" --rooms "$n" \
	--streams-per-conn "$spc" --warmup 1s --duration 30s --quiet "$@" >"$work/bench.out" 2>&1 &
bench=$!
last=-1
for _ in $(seq 120); do
	sleep 1 # polling for the goroutine count to settle
	g=$(metric go_goroutines)
	if [ "$g" = "$last" ] && [ "$g" -gt "$n" ]; then break; fi
	last=$g
done
for _ in 1 2 3 4; do curl -s "http://127.0.0.1:$((port + 1))/debug/pprof/heap?gc=1" >/dev/null; done
after=$(snapshot)
wait "$bench" || { cat "$work/bench.out"; exit 1; }

read -r rss0 g0 st0 heap0 <<<"$before"
read -r rss1 g1 st1 heap1 <<<"$after"
awk -v n="$n" -v spc="$spc" -v r0="$rss0" -v r1="$rss1" -v g0="$g0" -v g1="$g1" \
	-v s0="$st0" -v s1="$st1" -v h0="$heap0" -v h1="$heap1" 'BEGIN {
	printf "%d idle streams, %d per connection: RSS %.1f KiB/stream (%.1f MiB before, %.1f MiB with them), ", n, spc, (r1-r0)/n/1024, r0/1048576, r1/1048576
	printf "goroutines %.2f/stream, stacks %.1f KiB/stream, heap in use %.1f KiB/stream\n", (g1-g0)/n, (s1-s0)/n/1024, (h1-h0)/n/1024
}'
