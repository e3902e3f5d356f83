#!/usr/bin/env bash
# A private moto S3 server (with Object Lock) for tests and demos, on 127.0.0.1 only.
#
#   tests/peers/moto.sh DIR [PORT] [--watch PID] [--cleanup]
#   tests/peers/moto.sh DIR --stop
#
# Starts `moto_server -H 127.0.0.1 -p PORT` in the background (PORT omitted
# or 0: a free port is picked), waits until it answers an S3 request, then
# prints `key=value` lines on stdout: url, pid, region, access_key_id,
# secret_access_key (moto accepts any credentials; these are fixed test
# values), log. Use path-style addressing. State is in memory only: a
# restart starts empty.
#
# moto_server is taken from $MOTO_SERVER, else the virtualenv that
# scripts/install-test-deps makes (/usr/local/lib/bastion-tests/moto), else PATH.
#
# --watch PID: a detached watchdog stops moto when PID exits (however it
# exits); with --cleanup it also removes DIR. Running the script again on
# the same DIR first stops the moto it started there before.
set -euo pipefail
PEER_NAME=moto
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/common.sh"

[ $# -ge 1 ] || die "usage: $0 DIR [PORT] [--watch PID] [--cleanup] | $0 DIR --stop"
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
shift

# moto (werkzeug) stops at once on TERM.
GRACE=20
if [ "${1:-}" = "--stop" ]; then
    kill_pidfile "$DIR/watchdog.pid" 0
    kill_pidfile "$DIR/moto.pid" "$GRACE"
    exit 0
fi
PORT=0
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then
    PORT=$1
    shift
fi
WATCH=""
CLEANUP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --watch) WATCH=$2; shift 2 ;;
        --cleanup) CLEANUP=1; shift ;;
        *) die "unknown option $1" ;;
    esac
done

MOTO=${MOTO_SERVER:-}
if [ -z "$MOTO" ]; then
    if [ -x /usr/local/lib/bastion-tests/moto/bin/moto_server ]; then
        MOTO=/usr/local/lib/bastion-tests/moto/bin/moto_server
    elif command -v moto_server >/dev/null 2>&1; then
        MOTO=$(command -v moto_server)
    else
        die "'moto_server' is not installed (run scripts/install-test-deps, or set MOTO_SERVER)"
    fi
fi
need curl

kill_pidfile "$DIR/watchdog.pid" 0
kill_pidfile "$DIR/moto.pid" "$GRACE"

# A free port from the kernel. Another process could take it before moto
# binds it; moto then exits at once, which the wait below reports.
if [ "$PORT" = 0 ]; then
    PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
URL="http://127.0.0.1:$PORT"

start=$(date +%s.%N)
setsid "$MOTO" -H 127.0.0.1 -p "$PORT" </dev/null >"$DIR/moto.log" 2>&1 &
MOTO_PID=$!
echo "$MOTO_PID" >"$DIR/moto.pid"
if [ -n "$WATCH" ]; then
    start_watchdog "$DIR" "$WATCH" "$DIR/moto.pid" "$CLEANUP" "$GRACE"
fi

# Ready when ListBuckets answers; gives up early if moto died (port taken,
# broken install). 30 s: the first start after an install compiles .pyc files.
ready=""
for _ in $(seq 1 300); do
    if curl -sf -o /dev/null --max-time 2 "$URL/"; then
        ready=$(date +%s.%N)
        break
    fi
    kill -0 "$MOTO_PID" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$ready" ]; then
    tail -n 30 "$DIR/moto.log" >&2 || true
    kill_pidfile "$DIR/moto.pid" "$GRACE"
    die "moto_server did not answer on $URL"
fi

log "moto pid $MOTO_PID answers on $URL after $(awk "BEGIN{printf \"%.2f\", $ready - $start}") s"
cat <<EOF
url=$URL
pid=$MOTO_PID
region=us-east-1
access_key_id=testing
secret_access_key=testing
log=$DIR/moto.log
EOF
