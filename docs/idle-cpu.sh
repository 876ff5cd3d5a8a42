#!/usr/bin/env bash
# Server CPU spent on idle streams (keepalive pings and timers), as
# docs/performance.md reports it.
#
#   docs/idle-cpu.sh STREAMS STREAMS_PER_CONN SECONDS [more parleyd flags, e.g. --keepalive-time 1m]
#
# Builds parleyd and parley, starts parleyd on a loopback port (durable
# SQLite in a temporary directory, --dev), and has `parley bench --senders 0`
# open STREAMS idle streams, each in a room of its own, STREAMS_PER_CONN to
# an HTTP/2 connection. Once every stream is open (and 5 s more), the
# server's CPU time (utime+stime from /proc/PID/stat) is read over SECONDS
# and printed as ms of CPU per second and per 1,000 connections.
set -euo pipefail

n=${1:?streams}
spc=${2:?streams per connection}
secs=${3:?seconds to measure}
shift 3
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; kill "$bench" 2>/dev/null || true; rm -rf "$work"' EXIT

(cd "$root" && go build -o "$work/parleyd" ./cmd/parleyd && go build -o "$work/parley" ./cmd/parley)
port=$((20000 + RANDOM % 5000))
"$work/parleyd" --dev --listen "127.0.0.1:$port" --data-dir "$work/data" --send-rate -1 \
	--max-join-streams-per-user 100000 --log-level warn "$@" >"$work/parleyd.log" 2>&1 &
server=$!
for _ in $(seq 100); do
	curl -sf "http://127.0.0.1:$port/metrics" >/dev/null && break
	sleep 0.1 # polling for the server to listen
done
metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v k="$1" '$1 == k { printf "%d", $2 }'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$server/stat"; }

"$work/parley" --addr "127.0.0.1:$port" bench --senders 0 --receivers "$n" --rooms "$n" \
	--streams-per-conn "$spc" --warmup 1s --duration $((secs + 300))s --quiet >"$work/bench.out" 2>&1 &
bench=$!
for _ in $(seq 300); do
	sleep 1 # polling for every stream to be open
	[ "$(metric parley_streams)" -ge "$n" ] && break
done
[ "$(metric parley_streams)" -ge "$n" ] || { echo "only $(metric parley_streams) of $n streams opened" >&2; exit 1; }
sleep 5 # let the joins' garbage be collected before measuring
t0=$(cpu_ticks)
sleep "$secs" # the measured window
t1=$(cpu_ticks)
g=$(metric go_goroutines)
open=$(metric parley_streams)
hz=$(getconf CLK_TCK)
conns=$(( (n + spc - 1) / spc ))
awk -v t0="$t0" -v t1="$t1" -v hz="$hz" -v s="$secs" -v n="$n" -v c="$conns" -v g="$g" -v open="$open" -v flags="$*" 'BEGIN {
	ms = (t1 - t0) * 1000 / hz / s
	printf "%d idle streams on %d connections (%s): server CPU %.1f ms/s (%.2f%% of a core), %.2f ms/s per 1,000 connections; %d goroutines, %d streams still open\n", n, c, (flags == "" ? "defaults" : flags), ms, ms / 10, ms / c * 1000, g, open
}'
