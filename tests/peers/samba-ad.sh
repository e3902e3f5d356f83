#!/usr/bin/env bash
# A private Samba AD DC (a real Active Directory) for tests and demos.
#
#   tests/peers/samba-ad.sh DIR [--watch PID]
#   tests/peers/samba-ad.sh DIR --stop
#
# Realm CORP.TEST (dc=corp,dc=test), NetBIOS domain CORP, host dc1, bound to
# 127.0.0.1 only, its own CA and server certificate (SAN IP:127.0.0.1,
# DNS:localhost) for LDAPS 636 and StartTLS on 389. Seeds:
#
#   svc-bastion  service account (the bastion's search bind)
#   alice        ∈ sre ∈ k8s-ops (nested), altSecurityIdentities SSHKey:…
#   bob          in no group of ours
#   dave         disabled            (samba-tool user disable)
#   erin         account expired     (accountExpires in the past)
#   frank        must change password at next logon (pwdLastSet = 0)
#
# AD's ports (389, 636, 3268, 3269, 88, 464) cannot be moved, so there is
# one DC per machine, and this script is idempotent: a DC that an earlier
# run started from the same DIR and that answers is reused; a DIR that was
# provisioned and seeded before is started again without provisioning (a
# fresh provision takes 10-30 s). Anything else listening on those ports is
# stopped if it is a slapd or a samba (a system daemon or a leftover test
# peer); any other listener is reported as a conflict.
#
# --watch PID: a detached watchdog stops samba when PID exits (however it
# exits). DIR itself is kept for the next run.
#
# Prints `key=value` lines on stdout (url, starttls_url, ca_file, bind_dn,
# bind_password_file, base_dn, pid).
set -euo pipefail
PEER_NAME=samba-ad
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/common.sh"

[ $# -ge 1 ] || die "usage: $0 DIR [--watch PID] | $0 DIR --stop"
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
shift
WATCH=""
while [ $# -gt 0 ]; do
    case "$1" in
        --stop)
            kill_pidfile "$DIR/watchdog.pid" 0
            kill_pidfile "$DIR/samba.pid"
            exit 0
            ;;
        --watch) WATCH=$2; shift 2 ;;
        *) die "unknown option $1" ;;
    esac
done

need samba samba-tool ldapsearch ldapmodify openssl ss

# --- PASSWORDS (test only; AD wants complex ones) ---
ADMIN_PW='Adm1n-Passw0rd!x'
SVC_PW='Svc-Bastion-Passw0rd!1'
ALICE_PW='Alice-Passw0rd!1'
BOB_PW='Bob-Passw0rd!1'
DAVE_PW='Dave-Passw0rd!1'
ERIN_PW='Erin-Passw0rd!1'
FRANK_PW='Frank-Passw0rd!1'
ALICE_KEY='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHnRfIIKW24QhbfgObsoD3l5kHQw74LOu3pLbRXKn+6G alice-ad'

BASE='DC=corp,DC=test'
USERS="CN=Users,$BASE"
SVC_DN="CN=svc-bastion,$USERS"
ADMIN_DN="CN=Administrator,$USERS"
CONF="$DIR/etc/smb.conf"
URL="ldaps://127.0.0.1:636"
# Bumped when the seed changes, so that an old DIR is provisioned again.
SEED_VERSION=1

print_info() {
    cat <<EOF
url=$URL
starttls_url=ldap://127.0.0.1:389
ca_file=$DIR/tls/ca.pem
bind_dn=$SVC_DN
bind_password_file=$DIR/svc-bastion.pw
base_dn=$BASE
pid=$(head -n1 "$DIR/samba.pid")
EOF
}

certs_fresh() {
    [ -s "$DIR/tls/server.pem" ] && openssl x509 -in "$DIR/tls/server.pem" -noout -checkend 86400 >/dev/null 2>&1
}

seeded() {
    [ "$(cat "$DIR/seeded" 2>/dev/null)" = "$SEED_VERSION" ] && [ -s "$CONF" ] && certs_fresh
}

# Reuse a DC of ours that is up.
if seeded && pid_alive "$DIR/samba.pid" && wait_ldaps "$URL" "$DIR/tls/ca.pem" 2; then
    [ -n "$WATCH" ] && start_watchdog "$DIR" "$WATCH" "$DIR/samba.pid" 0
    log "reusing the running DC (pid $(head -n1 "$DIR/samba.pid"))"
    print_info
    exit 0
fi
kill_pidfile "$DIR/watchdog.pid" 0
kill_pidfile "$DIR/samba.pid"

# Free AD's fixed ports: a system slapd (Debian's postinst may start one on
# 389) or a samba that is not ours would take them.
free_ports() {
    local port line pid comm
    for port in 389 636 3268 3269 88 464; do
        for pid in $(ss -ltnpH "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u || true); do
                comm=$(cat "/proc/$pid/comm" 2>/dev/null || echo '?')
                case "$comm" in
                    slapd)
                        log "stopping slapd (pid $pid) that holds port $port"
                        if command -v systemctl >/dev/null 2>&1; then
                            systemctl stop slapd >/dev/null 2>&1 || true
                        fi
                        kill -TERM "$pid" 2>/dev/null || true
                        ;;
                    samba)
                        log "stopping a samba that is not ours (pid $pid) on port $port"
                        kill -TERM "$pid" 2>/dev/null || true
                        ;;
                    *)
                        die "port $port is held by '$comm' (pid $pid): cannot run the AD DC"
                        ;;
                esac
        done
    done
    for _ in $(seq 1 50); do
        if ! ss -ltnH '( sport = :389 or sport = :636 or sport = :88 )' 2>/dev/null | grep -q .; then
            return 0
        fi
        sleep 0.1
    done
    die "AD ports still busy: $(ss -ltnpH '( sport = :389 or sport = :636 or sport = :88 )' | tr '\n' ' ')"
}
free_ports

t0=$(date +%s.%N)
if ! seeded; then
    log "provisioning CORP.TEST in $DIR"
    # Keep nothing of an older, partial provision.
    rm -rf "$DIR/etc" "$DIR/private" "$DIR/state" "$DIR/cache" "$DIR/run" "$DIR/log" \
        "$DIR/bind-dns" "$DIR/tls" "$DIR/seeded"
    mkdir -p "$DIR/run" "$DIR/log"
    make_certs "$DIR/tls"
    umask 077
    printf '%s' "$SVC_PW" >"$DIR/svc-bastion.pw"
    samba-tool domain provision --targetdir="$DIR" --realm=CORP.TEST --domain=CORP \
        --server-role=dc --dns-backend=NONE --use-rfc2307 --adminpass="$ADMIN_PW" \
        --host-name=dc1 --host-ip=127.0.0.1 \
        --option="netbios name = DC1" \
        --option="interfaces = 127.0.0.1" \
        --option="bind interfaces only = yes" \
        --option="server services = ldap, cldap, kdc, rpc" \
        --option="pid directory = $DIR/run" \
        --option="ncalrpc dir = $DIR/run/ncalrpc" \
        --option="winbindd socket directory = $DIR/run/winbindd" \
        --option="log file = $DIR/log/samba.log" \
        --option="tls enabled = yes" \
        --option="tls keyfile = $DIR/tls/server.key" \
        --option="tls certfile = $DIR/tls/server.pem" \
        --option="tls cafile = $DIR/tls/ca.pem" \
        >"$DIR/log/provision.log" 2>&1 || { tail -n 30 "$DIR/log/provision.log" >&2; die "provision failed"; }
    t1=$(date +%s.%N)
    log "provisioned in $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s; seeding"

    st() { samba-tool "$@" -s "$CONF" >/dev/null; }
    # Test passwords never expire by age (the DIR may be reused for days), and
    # wrong-password tests never lock anyone out.
    st domain passwordsettings set --max-pwd-age=0 --min-pwd-age=0 --account-lockout-threshold=0
    st user create svc-bastion "$SVC_PW" --use-username-as-cn
    st user create alice "$ALICE_PW" --use-username-as-cn \
        --given-name=Alice --surname=Example --mail-address=alice@corp.test
    st user create bob "$BOB_PW" --use-username-as-cn
    st user create dave "$DAVE_PW" --use-username-as-cn
    st user create erin "$ERIN_PW" --use-username-as-cn
    st user create frank "$FRANK_PW" --use-username-as-cn --must-change-at-next-login
    st group add sre
    st group add k8s-ops
    st group addmembers sre alice
    st group addmembers k8s-ops sre
    st user disable dave
    t2=$(date +%s.%N)
    log "seeded (samba-tool) in $(awk "BEGIN{printf \"%.1f\", $t2 - $t1}") s"
    NEED_LDAP_SEED=1
else
    NEED_LDAP_SEED=0
fi

t3=$(date +%s.%N)
setsid samba -s "$CONF" -i -M single </dev/null >"$DIR/log/samba.stdout" 2>&1 &
echo $! >"$DIR/samba.pid"
[ -n "$WATCH" ] && start_watchdog "$DIR" "$WATCH" "$DIR/samba.pid" 0
if ! wait_ldaps "$URL" "$DIR/tls/ca.pem" 60; then
    tail -n 40 "$DIR/log/samba.stdout" >&2 || true
    kill_pidfile "$DIR/samba.pid"
    die "samba did not answer on $URL"
fi
t4=$(date +%s.%N)
log "samba pid $(head -n1 "$DIR/samba.pid") answers LDAPS after $(awk "BEGIN{printf \"%.1f\", $t4 - $t3}") s"

if [ "$NEED_LDAP_SEED" = 1 ]; then
    export LDAPTLS_CACERT="$DIR/tls/ca.pem" LDAPTLS_REQCERT=demand
    # erin: an account end date in the past (1 Jan 2020 as a Windows FILETIME).
    # alice: an SSH key in altSecurityIdentities, as some sites store it.
    ldapmodify -H "$URL" -x -D "$ADMIN_DN" -w "$ADMIN_PW" -o nettimeout=10 >/dev/null <<EOF
dn: CN=erin,$USERS
changetype: modify
replace: accountExpires
accountExpires: 132223104000000000

dn: CN=alice,$USERS
changetype: modify
add: altSecurityIdentities
altSecurityIdentities: SSHKey:$ALICE_KEY
EOF
    echo "$SEED_VERSION" >"$DIR/seeded"
    log "seeded (LDAP) in $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t4}") s"
fi

print_info
