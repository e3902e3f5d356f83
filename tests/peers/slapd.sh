#!/usr/bin/env bash
# A private OpenLDAP slapd for tests and demos, on 127.0.0.1 only.
#
#   tests/peers/slapd.sh DIR PORT_LDAP PORT_LDAPS [--watch PID] [--cleanup]
#   tests/peers/slapd.sh DIR --stop
#
# Makes a CA and a server certificate (SAN IP:127.0.0.1, DNS:localhost), a
# slapd.conf (mdb, memberof, ppolicy with pwdLockout, simple binds refused
# below SSF 128, i.e. only over LDAPS or StartTLS), starts slapd with -d 0
# in the background, waits until LDAPS answers, then seeds:
#
#   dc=corp,dc=test
#     ou=services  cn=svc-bastion            (service account, may read everything)
#     ou=people    uid=alice  (sshPublicKey)  ∈ sre ∈ k8s-ops   (nested)
#                  uid=bob                    (no group)
#                  uid=carol                  (locked by ppolicy after 3 failed binds)
#                  uid=grace                  ∈ cyc-a ∈ cyc-b ∈ cyc-a (a cycle)
#     ou=groups    cn=sre, cn=k8s-ops, cn=cyc-a, cn=cyc-b (groupOfNames)
#     ou=policies  cn=default (pwdPolicy)
#
# Passwords are in the PASSWORDS section below; the service password is also
# written to DIR/svc-bastion.pw. Prints `key=value` lines on stdout (url,
# starttls_url, ca_file, bind_dn, bind_password_file, base_dn, pid).
#
# --watch PID: a detached watchdog stops slapd when PID exits (however it
# exits); with --cleanup it also removes DIR. Running the script again on
# the same DIR first stops the slapd it started there before.
set -euo pipefail
PEER_NAME=slapd
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/common.sh"

[ $# -ge 2 ] || die "usage: $0 DIR PORT_LDAP PORT_LDAPS [--watch PID] [--cleanup] | $0 DIR --stop"
mkdir -p "$1"
DIR=$(cd "$1" && pwd)

# slapd takes about 1.6 s to stop on TERM; a throw-away test server is
# given 0.3 s, then killed (mdb is crash-safe, and the data is disposable).
GRACE=3
if [ "$2" = "--stop" ]; then
    kill_pidfile "$DIR/watchdog.pid" 0
    kill_pidfile "$DIR/slapd.pid" "$GRACE"
    exit 0
fi
[ $# -ge 3 ] || die "usage: $0 DIR PORT_LDAP PORT_LDAPS [--watch PID] [--cleanup]"
PORT_LDAP=$2
PORT_LDAPS=$3
shift 3
WATCH=""
CLEANUP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --watch) WATCH=$2; shift 2 ;;
        --cleanup) CLEANUP=1; shift ;;
        *) die "unknown option $1" ;;
    esac
done

need slapd ldapadd ldapsearch ldapwhoami openssl

# --- PASSWORDS (test only) ---
ADMIN_PW='Admin-Passw0rd!'
SVC_PW='Svc-Bastion-Passw0rd!'
ALICE_PW='Alice-Passw0rd!'
BOB_PW='Bob-Passw0rd!'
CAROL_PW='Carol-Passw0rd!'
GRACE_PW='Grace-Passw0rd!'
ALICE_KEY='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMptlwWmSavNGueQGHeAIbZUhGSG/tSYns28JF2eBDWz alice@corp.test'

BASE='dc=corp,dc=test'
ROOTDN="cn=admin,$BASE"
SVC_DN="cn=svc-bastion,ou=services,$BASE"

# A slapd started before in this DIR goes first (a previous run that was killed).
kill_pidfile "$DIR/watchdog.pid" 0
kill_pidfile "$DIR/slapd.pid" "$GRACE"
rm -rf "$DIR/db"
mkdir -p "$DIR/db"

make_certs "$DIR"
umask 077
printf '%s' "$SVC_PW" >"$DIR/svc-bastion.pw"

# A tiny schema of our own for the OpenSSH public key attribute (the
# openssh-lpk schema is not shipped by Debian); same OIDs, so entries made
# for openssh-lpk read the same.
cat >"$DIR/ssh-key.schema" <<'EOF'
attributetype ( 1.3.6.1.4.1.24552.500.1.1.1.13 NAME 'sshPublicKey'
    DESC 'OpenSSH public key line'
    EQUALITY octetStringMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 )
objectclass ( 1.3.6.1.4.1.24552.500.1.1.2.0 NAME 'ldapPublicKey'
    DESC 'Holder of OpenSSH public keys' SUP top AUXILIARY
    MAY ( sshPublicKey $ uid ) )
EOF

cat >"$DIR/slapd.conf" <<EOF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
include $DIR/ssh-key.schema

pidfile $DIR/slapd.pid
argsfile $DIR/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
moduleload ppolicy

TLSCACertificateFile $DIR/ca.pem
TLSCertificateFile $DIR/server.pem
TLSCertificateKeyFile $DIR/server.key

# Like AD: no simple bind unless the connection is protected (LDAPS/StartTLS).
security simple_bind=128

database mdb
maxsize 67108864
suffix "$BASE"
rootdn "$ROOTDN"
rootpw $ADMIN_PW
directory $DIR/db

overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE

overlay ppolicy
ppolicy_default "cn=default,ou=policies,$BASE"
ppolicy_hash_cleartext
ppolicy_use_lockout

access to attrs=userPassword
    by anonymous auth
    by * none
access to *
    by dn.exact="$SVC_DN" read
    by self read
    by * none
EOF

URL_LDAP="ldap://127.0.0.1:$PORT_LDAP/"
URL_LDAPS="ldaps://127.0.0.1:$PORT_LDAPS/"
# 127.0.0.2 (also loopback) serves LDAPS too: its address is not in the
# certificate, for hostname-verification tests.
URL_LDAPS2="ldaps://127.0.0.2:$PORT_LDAPS/"

start=$(date +%s.%N)
setsid slapd -f "$DIR/slapd.conf" -h "$URL_LDAP $URL_LDAPS $URL_LDAPS2" -d 0 \
    </dev/null >"$DIR/slapd.log" 2>&1 &
SLAPD_PID=$!
echo "$SLAPD_PID" >"$DIR/slapd.pid"
if [ -n "$WATCH" ]; then
    start_watchdog "$DIR" "$WATCH" "$DIR/slapd.pid" "$CLEANUP" "$GRACE"
fi

if ! wait_ldaps "$URL_LDAPS" "$DIR/ca.pem" 15; then
    tail -n 30 "$DIR/slapd.log" >&2 || true
    kill_pidfile "$DIR/slapd.pid" "$GRACE"
    die "slapd did not answer on $URL_LDAPS"
fi
ready=$(date +%s.%N)

export LDAPTLS_CACERT="$DIR/ca.pem" LDAPTLS_REQCERT=demand
ADD=(ldapadd -H "$URL_LDAPS" -x -D "$ROOTDN" -w "$ADMIN_PW" -o nettimeout=5)
P="ou=people,$BASE"
G="ou=groups,$BASE"

"${ADD[@]}" >/dev/null <<EOF
dn: $BASE
objectClass: dcObject
objectClass: organization
dc: corp
o: corp.test

dn: ou=services,$BASE
objectClass: organizationalUnit
ou: services

dn: ou=people,$BASE
objectClass: organizationalUnit
ou: people

dn: ou=groups,$BASE
objectClass: organizationalUnit
ou: groups

dn: ou=policies,$BASE
objectClass: organizationalUnit
ou: policies

dn: cn=default,ou=policies,$BASE
objectClass: device
objectClass: pwdPolicy
cn: default
pwdAttribute: userPassword
pwdLockout: TRUE
pwdMaxFailure: 3
pwdLockoutDuration: 0
pwdFailureCountInterval: 0

dn: $SVC_DN
objectClass: person
objectClass: simpleSecurityObject
cn: svc-bastion
sn: svc-bastion
userPassword: $SVC_PW

dn: uid=alice,$P
objectClass: inetOrgPerson
objectClass: ldapPublicKey
uid: alice
cn: Alice Example
sn: Example
mail: alice@corp.test
userPassword: $ALICE_PW
sshPublicKey: $ALICE_KEY
sshPublicKey: not-a-key

dn: uid=bob,$P
objectClass: inetOrgPerson
uid: bob
cn: Bob Example
sn: Example
userPassword: $BOB_PW

dn: uid=carol,$P
objectClass: inetOrgPerson
uid: carol
cn: Carol Example
sn: Example
userPassword: $CAROL_PW

dn: uid=grace,$P
objectClass: inetOrgPerson
uid: grace
cn: Grace Example
sn: Example
userPassword: $GRACE_PW

dn: cn=sre,$G
objectClass: groupOfNames
cn: sre
member: uid=alice,$P

dn: cn=k8s-ops,$G
objectClass: groupOfNames
cn: k8s-ops
member: cn=sre,$G

dn: cn=cyc-a,$G
objectClass: groupOfNames
cn: cyc-a
member: uid=grace,$P

dn: cn=cyc-b,$G
objectClass: groupOfNames
cn: cyc-b
member: cn=cyc-a,$G
EOF

# Close the cycle: cyc-a ∈ cyc-b ∈ cyc-a.
ldapmodify -H "$URL_LDAPS" -x -D "$ROOTDN" -w "$ADMIN_PW" -o nettimeout=5 >/dev/null <<EOF
dn: cn=cyc-a,$G
changetype: modify
add: member
member: cn=cyc-b,$G
EOF

# Lock carol the way it happens in life: pwdMaxFailure (3) wrong passwords.
for _ in 1 2 3; do
    ldapwhoami -H "$URL_LDAPS" -x -D "uid=carol,$P" -w 'wrong password' >/dev/null 2>&1 || true
done
if ! ldapsearch -H "$URL_LDAPS" -x -D "$ROOTDN" -w "$ADMIN_PW" -LLL -b "uid=carol,$P" -s base \
    pwdAccountLockedTime | grep -q '^pwdAccountLockedTime:'; then
    die "ppolicy did not lock carol after 3 failed binds"
fi
seeded=$(date +%s.%N)

log "slapd pid $SLAPD_PID answers LDAPS after $(awk "BEGIN{printf \"%.2f\", $ready - $start}") s, seeded in $(awk "BEGIN{printf \"%.2f\", $seeded - $ready}") s"
cat <<EOF
url=ldaps://127.0.0.1:$PORT_LDAPS
starttls_url=ldap://127.0.0.1:$PORT_LDAP
ca_file=$DIR/ca.pem
bind_dn=$SVC_DN
bind_password_file=$DIR/svc-bastion.pw
base_dn=$BASE
pid=$SLAPD_PID
EOF
