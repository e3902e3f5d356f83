# Shared helpers for the test-peer scripts (sourced, not run).
#
# Everything binds to loopback only. Functions print progress to stderr so
# that a caller can keep stdout for machine-readable output.

log() { printf '[%s] %s\n' "${PEER_NAME:-peer}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

need() {
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || die "'$c' is not installed (see tests/peers/APT_PACKAGES)"
    done
}

# pid_alive PIDFILE: true when the file names a live process.
pid_alive() {
    [ -s "$1" ] || return 1
    local pid
    pid=$(head -n1 "$1" 2>/dev/null | tr -dc 0-9)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# kill_pidfile PIDFILE [TENTHS]: TERM the process it names, wait up to
# TENTHS tenths of a second (default 50), then KILL. 0 kills at once.
kill_pidfile() {
    [ -s "$1" ] || return 0
    local pid i
    pid=$(head -n1 "$1" 2>/dev/null | tr -dc 0-9)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 "${2:-50}"); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$1"
}

# make_certs DIR: a throw-away CA and a server certificate for 127.0.0.1 and
# localhost (ECDSA P-256, SHA-256, 10 days). Files: DIR/ca.pem, DIR/server.pem,
# DIR/server.key (mode 0600). Kept when already there.
make_certs() {
    local d="$1"
    mkdir -p "$d"
    if [ -s "$d/ca.pem" ] && [ -s "$d/server.pem" ] && [ -s "$d/server.key" ]; then
        return 0
    fi
    (
        set -e
        cd "$d"
        umask 077
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -sha256 -nodes -days 10 \
            -keyout ca.key -out ca.pem -subj "/CN=bastion test CA $$" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -sha256 -nodes -keyout server.key -out server.csr \
            -subj "/CN=localhost" 2>/dev/null
        printf '%s\n' \
            "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature" \
            "extendedKeyUsage=serverAuth" \
            "subjectAltName=IP:127.0.0.1,DNS:localhost" >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -days 10 -sha256 -extfile server.ext -out server.pem 2>/dev/null
        chmod 0600 server.key ca.key
        chmod 0644 ca.pem server.pem
        rm -f server.csr server.ext
    ) || die "certificate generation failed"
}

# start_watchdog DIR WATCH_PID TARGET_PIDFILE [REMOVE_DIR [TENTHS]]: a detached loop
# that stops the server named by TARGET_PIDFILE once WATCH_PID (the test
# process) has gone, however it ended (even SIGKILL), and removes DIR when
# REMOVE_DIR is 1 (TENTHS: as for kill_pidfile). Its own pid goes to DIR/watchdog.pid; an older watchdog
# of the same DIR is replaced.
start_watchdog() {
    local d="$1" watch="$2" target="$3" remove="${4:-0}" grace="${5:-50}"
    kill_pidfile "$d/watchdog.pid" 0
    setsid bash -c '
        watch=$1; target=$2; dir=$3; remove=$4; grace=$5
        while kill -0 "$watch" 2>/dev/null; do sleep 0.5; done
        if [ -s "$target" ]; then
            pid=$(head -n1 "$target" | tr -dc 0-9)
            if [ -n "$pid" ]; then
                kill -TERM "$pid" 2>/dev/null
                for i in $(seq 1 "$grace"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
                kill -KILL "$pid" 2>/dev/null
            fi
            rm -f "$target"
        fi
        rm -f "$dir/watchdog.pid"
        if [ "$remove" = 1 ]; then rm -rf "$dir"; fi
    ' bastion-peer-watchdog "$watch" "$target" "$d" "$remove" "$grace" </dev/null >/dev/null 2>&1 &
    echo $! >"$d/watchdog.pid"
}

# wait_ldaps URL CAFILE SECONDS: until the server answers a root DSE read over TLS.
wait_ldaps() {
    local url="$1" ca="$2" secs="$3" i
    for i in $(seq 1 $((secs * 10))); do
        if LDAPTLS_CACERT="$ca" LDAPTLS_REQCERT=demand ldapsearch -H "$url" -x -LLL \
            -o nettimeout=2 -s base -b '' namingContexts >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}
