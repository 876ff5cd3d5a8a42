#!/usr/bin/env bash
# A join storm, as docs/performance.md reports it (issue 21).
#
#   docs/join-storm.sh PARLEYD PARLEY STREAMS ROOMS USERS [more parleyd flags]
#
# Starts the PARLEYD binary on a loopback port (durable SQLite in a
# temporary directory, --dev, no send-rate or per-user stream limits,
# profiles on the next port), and runs the PARLEY binary's bench: STREAMS
# Join streams, a connection each, over ROOMS rooms, spread over USERS
# users (0: a user per stream), and one sender (the bench needs one).
# Prints the bench's connect time (every stream joined) and, for the window
# from the server's first stream to its last (parley_streams, sampled
# every 50 ms), the server's CPU seconds (/proc/PID/stat) and the bytes
# through loopback (/proc/net/dev, the whole machine's). With PROFILE=file
# it also writes a CPU profile of the server from its first stream on,
# PROFSECS long (default 3); BENCH_FLAGS adds flags to the bench (e.g.
# --subscribe: streams that are not in presence).
#
# STREAMS above ~1,000 need `ulimit -n` raised in the calling shell.
set -euo pipefail

parleyd=${1:?parleyd binary}
parley=${2:?parley binary}
streams=${3:?streams}
rooms=${4:?rooms}
users=${5:?users}
shift 5
work=$(mktemp -d)
trap 'kill "$server" "$poller" 2>/dev/null || true; rm -rf "$work"' EXIT

port=$((20000 + RANDOM % 5000))
"$parleyd" --dev --listen "127.0.0.1:$port" --pprof-listen "127.0.0.1:$((port + 1))" --data-dir "$work/data" \
	--log-level warn --send-rate -1 --room-create-rate -1 --max-join-streams-per-user 100000 "$@" >"$work/parleyd.log" 2>&1 &
server=$!
for _ in $(seq 100); do
	curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
	sleep 0.1 # polling for the server to listen
done

# Samples: time, server CPU seconds, streams open, loopback bytes sent.
python3 - "$server" "$port" "$work/samples" "${PROFILE:-}" "${PROFSECS:-3}" <<'EOF' &
import subprocess, sys, time, urllib.request
pid, port, out, profile, secs = sys.argv[1:]
started = False
with open(out, "w") as f:
    while True:
        try:
            st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            break
        try:
            m = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
            streams = next(float(l.split()[1]) for l in m.splitlines() if l.startswith("parley_streams "))
        except Exception:
            streams = -1
        lo = next(int(l.split()[9]) for l in open("/proc/net/dev") if l.strip().startswith("lo:"))
        if profile and not started and streams >= 1:
            started = True
            subprocess.Popen(["curl", "-s", "-o", profile, f"http://127.0.0.1:{int(port) + 1}/debug/pprof/profile?seconds={secs}"])
        f.write(f"{time.time():.3f} {(int(st[11]) + int(st[12])) / 100:.2f} {streams:.0f} {lo}\n")
        f.flush()
        time.sleep(0.05)
EOF
poller=$!

"$parley" --addr "127.0.0.1:$port" bench --receivers "$streams" --rooms "$rooms" --users "$users" \
	--senders 1 --rate 10 --warmup 0s --duration 1s --drain 2s --json --quiet ${BENCH_FLAGS:-} >"$work/report.json"
[ -n "${PROFILE:-}" ] && sleep "${PROFSECS:-3}"
kill "$poller"
python3 - "$work/report.json" "$work/samples" "$streams" <<'EOF'
import json, sys
rep, samples, streams = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
rows = [tuple(map(float, l.split())) for l in open(samples) if len(l.split()) == 4]
first = next(i for i, r in enumerate(rows) if r[2] >= 1)
last = next(r for r in rows if r[2] >= streams + 1)
start = rows[max(first - 1, 0)]
print(f"joined in {rep['connect']['seconds']:.2f} s (per stream p50 {rep['connect']['per_stream']['p50_ms']:.0f} ms); "
      f"server CPU {last[1] - start[1]:.2f} s, loopback {(last[3] - start[3]) / 2**20:.0f} MiB while joining; ok {rep['ok']}")
EOF
