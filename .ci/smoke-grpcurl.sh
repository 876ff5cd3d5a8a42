#!/usr/bin/env bash
# Smoke test of a real parleyd with grpcurl and curl, as a newcomer would use it:
#   (a) reflection lists parley.v1.ChatService;
#   (b) bob and alice each hold a Join stream fed from stdin; alice joins lobby
#       and sends; bob sees her presence join and her message; alice's reply
#       carries a seq;
#   (c) a message POSTed over REST arrives live on bob's grpcurl stream;
#   (d) GET /v1/rooms lists lobby;
#   (e) when alice closes her stream, bob sees her leave;
#   (f) on SIGTERM parleyd ends bob's stream and exits 0.
# Needs go, curl and grpcurl (on PATH, or in GOBIN / GOPATH/bin). Run from anywhere.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

STEP_TIMEOUT=${SMOKE_TIMEOUT:-20}     # seconds for each wait and each client call
BUILD_TIMEOUT=${SMOKE_BUILD_TIMEOUT:-900}
SHUTDOWN_TIMEOUT=5                   # passed to parleyd --shutdown-timeout

tmp=$(mktemp -d "${TMPDIR:-/tmp}/parley-smoke.XXXXXX")
server_pid="" bob_pid="" alice_pid=""
addr="" checks=0

# alive PID: the process exists and is not a zombie waiting to be reaped
# (kill -0 succeeds on zombies, so it cannot tell that a child has exited).
alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != Z ]]
}

# stop_wait SECONDS PID...: wait for each PID to exit, SIGKILL whatever is
# still running after SECONDS, reap them all; returns the first PID's status.
stop_wait() {
	local secs=$1 pid rc=0 first=1
	shift
	local deadline=$((SECONDS + secs))
	for pid in "$@"; do
		while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		if ((first)); then
			wait "$pid" 2>/dev/null || rc=$?
			first=0
		else
			wait "$pid" 2>/dev/null || true
		fi
	done
	return "$rc"
}

cleanup() {
	local rc=$?
	{ exec 3>&- 4>&-; } 2>/dev/null || true
	local pid pids=()
	for pid in "$alice_pid" "$bob_pid" "$server_pid"; do
		[[ -z $pid ]] || pids+=("$pid")
	done
	if ((${#pids[@]})); then
		kill "${pids[@]}" 2>/dev/null || true
		stop_wait 10 "${pids[@]}" || true # parleyd's graceful shutdown first
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { printf 'smoke: %s\n' "$*"; }

show() { # show FILE...: print files for a failure report
	local f
	for f in "$@"; do
		printf '\n----- %s -----\n' "${f#"$tmp"/}"
		cat "$f" 2>/dev/null || echo "(missing)"
	done
}

fail() {
	printf '\nsmoke: FAIL: %s\n' "$1" >&2
	shift
	show "$@" >&2
	show "$tmp/server.log" >&2
	exit 1
}

pass() {
	checks=$((checks + 1))
	say "ok: $*"
}

# flat FILE: the file's JSON without whitespace, so patterns need not follow
# grpcurl's indentation. Message bodies in this script contain no whitespace.
flat() { [[ ! -e $1 ]] || tr -d ' \t\r\n' <"$1"; }

# wait_for DESCRIPTION FILE ERE [FILE...]: poll until the flattened FILE
# matches ERE, or fail after STEP_TIMEOUT seconds showing the given files.
wait_for() {
	local what=$1 file=$2 re=$3
	shift 3
	local deadline=$((SECONDS + STEP_TIMEOUT))
	until flat "$file" | grep -Eq -- "$re"; do
		if ((SECONDS >= deadline)); then
			fail "$what (no match for /$re/ in ${file#"$tmp"/} after ${STEP_TIMEOUT}s)" "$file" "$@"
		fi
		sleep 0.1
	done
}

find_grpcurl() {
	local d
	if command -v grpcurl; then
		return
	fi
	for d in "$(go env GOBIN)" "$(go env GOPATH)/bin"; do
		if [[ -n $d && -x $d/grpcurl ]]; then
			echo "$d/grpcurl"
			return
		fi
	done
	return 1
}
grpcurl=$(find_grpcurl) ||
	fail "grpcurl not found on PATH, in GOBIN or GOPATH/bin: go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4"

say "building parleyd"
timeout "$BUILD_TIMEOUT" go build -o "$tmp/parleyd" ./cmd/parleyd

say "starting parleyd --dev on a free loopback port"
mkdir "$tmp/data"
# Port 0: the kernel picks a free port (no race with other tests); parleyd logs
# the address it really listens on.
"$tmp/parleyd" --dev --listen 127.0.0.1:0 --data-dir "$tmp/data" --log-format json \
	--shutdown-timeout "${SHUTDOWN_TIMEOUT}s" >"$tmp/server.log" 2>&1 &
server_pid=$!

deadline=$((SECONDS + STEP_TIMEOUT))
until [[ -n $addr ]] && timeout 2 curl -fsS "http://$addr/healthz" >/dev/null 2>&1; do
	alive "$server_pid" || fail "parleyd exited during start-up"
	((SECONDS < deadline)) || fail "parleyd not healthy within ${STEP_TIMEOUT}s (addr '${addr}')"
	if [[ -z $addr ]]; then
		addr=$(grep -o '"msg":"parleyd listening"[^}]*"addr":"[^"]*"' "$tmp/server.log" |
			sed -E 's/.*"addr":"([^"]*)".*/\1/' | head -n1) || true
	fi
	sleep 0.1
done
say "parleyd is healthy at $addr"

token() { timeout "$STEP_TIMEOUT" "$tmp/parleyd" token --data-dir "$tmp/data" "$1"; }
alice=$(token alice) || fail "parleyd token alice failed"
bob=$(token bob) || fail "parleyd token bob failed"
[[ $alice == *.*.* && $bob == *.*.* ]] || fail "parleyd token did not print JWTs: '$alice' '$bob'"
pass "parleyd token minted tokens for alice and bob"

# (a) reflection
timeout "$STEP_TIMEOUT" "$grpcurl" -plaintext "$addr" list >"$tmp/list.out" 2>&1 ||
	fail "grpcurl list failed" "$tmp/list.out"
grep -qx 'parley.v1.ChatService' "$tmp/list.out" ||
	fail "grpcurl list does not show parley.v1.ChatService" "$tmp/list.out"
pass "(a) grpcurl list shows parley.v1.ChatService through reflection"

# (b) two Join streams fed from fifos, held open by fds 3 (bob) and 4 (alice).
# grpcurl starts directly under `timeout` (no wrapping function) so that $! is
# the process to stop; its open of the fifo completes when we open fd 3/4.
mkfifo "$tmp/bob.in" "$tmp/alice.in"
touch "$tmp/bob.out" "$tmp/alice.out"
timeout 120 "$grpcurl" -plaintext -H "authorization: Bearer $bob" -d @ \
	"$addr" parley.v1.ChatService/Join <"$tmp/bob.in" >"$tmp/bob.out" 2>&1 &
bob_pid=$!
exec 3>"$tmp/bob.in"
echo '{"ref":"1","join":{"room":"lobby"}}' >&3
wait_for "bob's Join gets a joined frame for lobby" "$tmp/bob.out" '"joined":\{"room":"lobby"'
pass "(b) bob joined lobby over a grpcurl Join stream"

timeout 120 "$grpcurl" -plaintext -H "authorization: Bearer $alice" -d @ \
	"$addr" parley.v1.ChatService/Join <"$tmp/alice.in" >"$tmp/alice.out" 2>&1 &
alice_pid=$!
exec 4>"$tmp/alice.in"
body="hello-from-alice-$$"
echo '{"ref":"1","join":{"room":"lobby"}}' >&4
echo '{"ref":"2","send":{"room":"lobby","body":"'"$body"'","client_msg_id":"smoke-1"}}' >&4

wait_for "alice's send gets a reply on ref 2 with seq >= 1" "$tmp/alice.out" \
	'"reply":\{"ref":"2"[^{}]*"message":\{[^{}]*"seq":"[1-9][0-9]*"' "$tmp/bob.out"
pass "(b) alice's send was acknowledged with a seq >= 1"
wait_for "bob sees alice's presence join" "$tmp/bob.out" \
	'"presenceDiff":\{[^{}]*"joins":\[\{[^{}]*"user":"alice"' "$tmp/alice.out"
pass "(b) bob received a presenceDiff join for alice"
wait_for "bob receives alice's message" "$tmp/bob.out" \
	"\"message\":\\{[^{}]*\"sender\":\"alice\"[^{}]*\"body\":\"$body\"" "$tmp/alice.out"
pass "(b) bob received alice's message '$body'"

# (c) REST send, seen live on bob's gRPC stream.
rest_body="hello-from-rest-$$"
timeout "$STEP_TIMEOUT" curl -sS -o "$tmp/post.out" -w '%{http_code}' \
	-H "authorization: Bearer $alice" -H 'content-type: application/json' \
	-d '{"body":"'"$rest_body"'","clientMsgId":"smoke-rest-1"}' \
	"http://$addr/v1/rooms/lobby/messages" >"$tmp/post.code" 2>&1 ||
	fail "curl POST /v1/rooms/lobby/messages failed" "$tmp/post.code" "$tmp/post.out"
[[ $(cat "$tmp/post.code") == 200 ]] ||
	fail "POST /v1/rooms/lobby/messages: HTTP $(cat "$tmp/post.code"), want 200" "$tmp/post.out"
flat "$tmp/post.out" | grep -Eq '"seq":"[1-9][0-9]*"' ||
	fail "POST /v1/rooms/lobby/messages: no seq in the response" "$tmp/post.out"
pass "(c) curl POST /v1/rooms/lobby/messages stored the message"
wait_for "bob's grpcurl stream receives the REST message" "$tmp/bob.out" \
	"\"message\":\\{[^{}]*\"body\":\"$rest_body\"" "$tmp/post.out"
pass "(c) bob's grpcurl stream received the REST message '$rest_body'"

# (d) room listing over REST.
timeout "$STEP_TIMEOUT" curl -sS -o "$tmp/rooms.out" -w '%{http_code}' \
	-H "authorization: Bearer $bob" "http://$addr/v1/rooms" >"$tmp/rooms.code" 2>&1 ||
	fail "curl GET /v1/rooms failed" "$tmp/rooms.code" "$tmp/rooms.out"
[[ $(cat "$tmp/rooms.code") == 200 ]] ||
	fail "GET /v1/rooms: HTTP $(cat "$tmp/rooms.code"), want 200" "$tmp/rooms.out"
flat "$tmp/rooms.out" | grep -Eq '"rooms":\[[^]]*"name":"lobby"' ||
	fail "GET /v1/rooms does not list lobby" "$tmp/rooms.out"
pass "(d) curl GET /v1/rooms lists lobby"

# (e) alice closes her stream: grpcurl ends cleanly and bob sees her leave.
exec 4>&-
rc=0
stop_wait "$STEP_TIMEOUT" "$alice_pid" || rc=$?
alice_pid=""
((rc == 0)) || fail "alice's grpcurl exited with status $rc after closing stdin" "$tmp/alice.out"
wait_for "bob sees alice's presence leave" "$tmp/bob.out" \
	'"presenceDiff":\{[^{}]*"leaves":\[\{[^{}]*"user":"alice"'
pass "(e) alice's stream ended cleanly and bob received a presenceDiff leave for alice"

# (f) graceful shutdown: SIGTERM ends bob's open stream with UNAVAILABLE and
# parleyd exits 0 within its --shutdown-timeout. grpcurl prints a bidi
# stream's final status only once its stdin ends, so bob's stdin is closed
# after the server has gone.
kill -TERM "$server_pid"
rc=0 t0=$SECONDS
stop_wait $((SHUTDOWN_TIMEOUT + 5)) "$server_pid" || rc=$?
server_pid=""
((rc == 0)) || fail "parleyd exited with status $rc after SIGTERM (137: still running $((SHUTDOWN_TIMEOUT + 5))s later)"
took=$((SECONDS - t0))
exec 3>&-
stop_wait "$STEP_TIMEOUT" "$bob_pid" || true
bob_pid=""
wait_for "bob's stream ends with UNAVAILABLE" "$tmp/bob.out" 'Code:Unavailable'
pass "(f) SIGTERM: bob's stream ended with UNAVAILABLE; parleyd exited 0 after ~${took}s (limit ${SHUTDOWN_TIMEOUT}s)"

say "PASS: $checks checks"
