#!/usr/bin/env bash
# A real one-node SLURM cluster with job accounting on this machine, from
# Debian's packages: munge, MariaDB, slurmdbd, slurmctld and slurmd. Run as root.
#
#   bash scripts/start-slurm.sh          install what is missing, write /etc/slurm, start
#   bash scripts/start-slurm.sh --stop   stop the SLURM daemons, munge and MariaDB
#
# Idempotent: a second run changes nothing and returns in a second or two when
# the cluster is up; a changed configuration restarts the SLURM daemons.
# Needs neither systemd nor cgroups (process tracking through /proc).
# The cluster is "xpipe" with one partition "main" (this machine's cores and
# memory, as `slurmd -C` reports them) and an account "xpipe" that root
# belongs to: the names profiles/slurm submits with.
# Logs: /var/log/slurm/{slurmdbd,slurmctld,slurmd}.log.
set -euo pipefail

CLUSTER=xpipe
PARTITION=main
ACCOUNT=xpipe
CONF=/etc/slurm
LOGS=/var/log/slurm
STATE=/var/lib/slurm
DB=slurm_acct_db
DB_USER=slurm
TIMEOUT=${SLURM_START_TIMEOUT:-60}   # seconds to wait for each daemon
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
DAEMONS=(slurmdbd slurmctld slurmd)   # start order; stopped in reverse

say() { echo "start-slurm: $*"; }
die() {
    echo "start-slurm: error: $*" >&2
    exit 1
}

pidfile() { echo "/run/$1.pid"; }

# The pid of a running daemon (its pid file, else the exact program name), or nothing.
daemon_pid() {
    local name=$1 pid=""
    if [ -s "$(pidfile "$name")" ]; then
        pid=$(tr -dc 0-9 <"$(pidfile "$name")")
        if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
            echo "$pid"
            return
        fi
    fi
    pidof -s "$name" 2>/dev/null || true
}

stop_daemon() {
    local name=$1 pid i
    pid=$(daemon_pid "$name")
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "$name (pid $pid) did not stop in 20 s: killing it"
            kill -9 "$pid" 2>/dev/null || true
        fi
        say "stopped $name"
    fi
    # the daemons run as user slurm and cannot remove their pid files in /run;
    # a stale one confuses a later start or `apt-get purge`
    rm -f "$(pidfile "$name")"
}

stop_slurm() {
    local i
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        stop_daemon "${DAEMONS[i]}"
    done
}

if [ "$(id -u)" != 0 ]; then
    die "run as root (it installs packages and starts system daemons)"
fi

if [ "${1:-}" = "--stop" ]; then
    stop_slurm
    if command -v munge >/dev/null && munge -n >/dev/null 2>&1; then
        service munge stop >/dev/null && say "stopped munge"
    fi
    if command -v mariadb-admin >/dev/null && mariadb-admin ping >/dev/null 2>&1; then
        service mariadb stop >/dev/null && say "stopped mariadb"
    fi
    exit 0
elif [ $# -gt 0 ]; then
    die "usage: bash scripts/start-slurm.sh [--stop]"
fi

# Wait until "$@" succeeds and its output matches the pattern $2 (ERE), at most
# $TIMEOUT seconds; $1 names what is awaited for the error message.
wait_for() {
    local what=$1 pattern=$2 start=$SECONDS out
    shift 2
    while true; do
        if out=$("$@" 2>&1) && grep -Eq "$pattern" <<<"$out"; then
            return 0
        fi
        if ((SECONDS - start >= TIMEOUT)); then
            echo "start-slurm: error: $what: no answer within $TIMEOUT s." >&2
            echo "  \`$*\` said: ${out:-nothing}" >&2
            return 1
        fi
        sleep 0.5
    done
}

fail_with_log() {
    local log=$1
    echo "  last lines of $log:" >&2
    tail -n 15 "$log" 2>/dev/null | sed 's/^/    /' >&2 || true
    exit 1
}

# 1. packages ------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "apt-get not found: this script needs Debian's packages"
    say "installing ${missing[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. munge and MariaDB (Debian's init scripts; apt does not start them everywhere)
if [ ! -s /etc/munge/munge.key ]; then
    say "creating the munge key"
    mungekey --create --keyfile /etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
fi
if munge -n >/dev/null 2>&1; then
    say "munge already running"
else
    say "starting munge"
    service munge start >/dev/null
    wait_for "munged" . munge -n || exit 1
fi
if mariadb-admin ping >/dev/null 2>&1; then
    say "mariadb already running"
else
    say "starting mariadb"
    service mariadb start >/dev/null
    wait_for "mariadb" alive mariadb-admin ping || exit 1
fi

# 3. configuration ---------------------------------------------------------------
# The accounting database's password: kept from an earlier run, else a new one.
password=""
if [ -f "$CONF/slurmdbd.conf" ]; then
    password=$(sed -n 's/^StoragePass=//p' "$CONF/slurmdbd.conf")
fi
if [ -z "$password" ]; then
    password=$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')
fi
mariadb <<SQL
CREATE DATABASE IF NOT EXISTS $DB;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$password';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON $DB.* TO '$DB_USER'@'localhost';
SQL

install -d -o slurm -g slurm -m 755 "$LOGS" "$STATE" "$STATE/slurmctld"
install -d -m 755 "$CONF" "$STATE/slurmd"

host=$(hostname -s)
node=$(slurmd -C | head -n 1)   # NodeName=HOST CPUs=... RealMemory=...
case $node in
    "NodeName=$host "*) ;;
    *) die "\`slurmd -C\` said '$node', expected a line for this host '$host'" ;;
esac

changed=0
# Install the text on stdin as file $1 (mode $2, owner $3) if it differs.
put() {
    local file=$1 mode=$2 owner=$3 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [ -f "$file" ] && cmp -s "$tmp" "$file" && [ "$(stat -c '%a %U' "$file")" = "$mode ${owner%%:*}" ]; then
        rm -f "$tmp"
        return
    fi
    install -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" "$tmp" "$file"
    rm -f "$tmp"
    say "wrote $file"
    changed=1
}

put "$CONF/slurm.conf" 644 root:root <<EOF
# Written by scripts/start-slurm.sh: a one-node cluster with accounting.
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$(pidfile slurmctld)
SlurmdPidFile=$(pidfile slurmd)
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# no cgroups needed: processes tracked through /proc, no task confinement
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# accounting: every job in slurmdbd (sacct), with its comment (the rule's name)
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=2
JobCompType=jobcomp/none
$node State=UNKNOWN
# a job that asks for no memory gets 1 GiB per CPU, not the whole node
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=1024
EOF

put "$CONF/slurmdbd.conf" 600 slurm:slurm <<EOF
# Written by scripts/start-slurm.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
LogFile=$LOGS/slurmdbd.log
PidFile=$(pidfile slurmdbd)
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$DB_USER
StoragePass=$password
StorageLoc=$DB
EOF

if [ "$changed" = 1 ]; then
    for d in "${DAEMONS[@]}"; do
        if [ -n "$(daemon_pid "$d")" ]; then
            say "configuration changed: restarting the SLURM daemons"
            stop_slurm
            break
        fi
    done
fi

# 4. the SLURM daemons, each waited for before the next ------------------------
start_daemon() {
    local name=$1
    if [ -n "$(daemon_pid "$name")" ]; then
        say "$name already running"
        return
    fi
    rm -f "$(pidfile "$name")"
    say "starting $name"
    "$name" </dev/null >>"$LOGS/$name.out" 2>&1 || {
        echo "start-slurm: error: $name did not start" >&2
        fail_with_log "$LOGS/$name.log"
    }
}

start_daemon slurmdbd
wait_for "slurmdbd (sacctmgr -n show cluster)" '' sacctmgr -n show cluster ||
    fail_with_log "$LOGS/slurmdbd.log"

start_daemon slurmctld
wait_for "slurmctld (scontrol ping)" 'is UP' scontrol ping ||
    fail_with_log "$LOGS/slurmctld.log"
# slurmctld registers the cluster (and root) in slurmdbd by itself
wait_for "cluster $CLUSTER in slurmdbd" "^$CLUSTER\$" sacctmgr -n -P show cluster format=cluster ||
    fail_with_log "$LOGS/slurmctld.log"

if [ -z "$(sacctmgr -n -P show account "$ACCOUNT" format=account)" ]; then
    say "adding account $ACCOUNT"
    sacctmgr -i -Q add account "$ACCOUNT" Cluster="$CLUSTER" Description="xpipe workflow jobs" Organization=xpipe >/dev/null
fi
for user in root ${SUDO_USER:-}; do
    if [ -z "$(sacctmgr -n -P show assoc where cluster="$CLUSTER" account="$ACCOUNT" user="$user" format=user)" ]; then
        say "adding user $user to account $ACCOUNT"
        sacctmgr -i -Q add user "$user" Cluster="$CLUSTER" Account="$ACCOUNT" >/dev/null
    fi
done

start_daemon slurmd
wait_for "slurmd (sinfo)" '^(idle|mix|alloc|comp|down|drain|drng)' sinfo -h -N -n "$host" -o %t ||
    fail_with_log "$LOGS/slurmd.log"
state=$(sinfo -h -N -n "$host" -o %t)
case $state in
    down* | drain* | drng*)
        say "node $host is $state ($(sinfo -h -N -n "$host" -o %E)): resuming it"
        scontrol update NodeName="$host" State=RESUME
        wait_for "node $host back up (sinfo)" '^(idle|mix|alloc|comp)' sinfo -h -N -n "$host" -o %t ||
            fail_with_log "$LOGS/slurmd.log"
        ;;
esac

say "cluster $CLUSTER is up: $(sinfo -h -o '%P %D node(s) %c CPUs %m MB %T')"
