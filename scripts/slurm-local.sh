#!/usr/bin/env bash
# A real single-node Slurm (with job accounting) on localhost, for CI and developers; no systemd.
#
#   bash scripts/slurm-local.sh install start   # then: sinfo, sbatch, sacct, submitit
#   bash scripts/slurm-local.sh status          # exit 0 when the node answers
#   bash scripts/slurm-local.sh stop
#
# Subcommands run in the order given. Root, no stdin, Debian bookworm (slurm 22.05, munge 0.5.15,
# mariadb 10.11). Config in /etc/slurm (clients need no SLURM_CONF); state, spool, database and
# logs under $DISTLAW_SLURM_DIR (default /var/tmp/distlaw-slurm).
#
# Timings on a 2-core Debian bookworm VM (apt lists present):
#   install (fresh)             11-19 s    install (already installed)   0.2 s
#   start (first: creates db)    4-10 s    start (already running)       0.5 s
#   start (after stop)            2-3 s    start (slurm.conf changed)    3 s (restarts Slurm daemons)
#   stop                            3 s    status                        0.1 s
# Submit to running: ~0.5-1 s (sbatch or submitit); the test file passes in ~3 s.
set -euo pipefail

S=${DISTLAW_SLURM_DIR:-/var/tmp/distlaw-slurm}
CLUSTER=ci
HOST=$(hostname -s)
DB_PORT=${DISTLAW_SLURM_DB_PORT:-3306}
DB_PASS=distlaw-slurm # a local database bound to 127.0.0.1, for tests only
DB_SOCK=$S/mysql/mysqld.sock
PKGS=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)

say() { echo "slurm-local: $*"; }
die() { echo "slurm-local: error: $*" >&2; exit 1; }

# A pid is alive if it exists and is not a zombie (pid 1 here may not reap daemons).
alive() {
    local pid=$1
    [[ -n $pid && -r /proc/$pid/stat ]] || return 1
    local st
    st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ $st != Z && $st != X ]]
}
pid_of() { { tr -dc 0-9 <"$1"; } 2>/dev/null || true; } # a daemon may remove its pid file any time
wait_gone() { # pidfile seconds
    local pid i
    pid=$(pid_of "$1")
    for ((i = 0; i < $2 * 10; i++)); do alive "$pid" || return 0; sleep 0.1; done
    return 1
}
stop_pidfile() { # name pidfile
    local pid
    pid=$(pid_of "$2")
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_gone "$2" 20 || { say "$1 did not stop in 20 s, killing it"; kill -KILL "$pid" 2>/dev/null || true; }
        say "$1 stopped"
    fi
    rm -f "$2"
}
wait_for() { # description seconds command...
    local what=$1 secs=$2 i
    shift 2
    for ((i = 0; i < secs * 5; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    die "$what not ready after ${secs} s (logs in $S/log)"
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
db_ok() { mariadb-admin --no-defaults --socket="$DB_SOCK" -uroot ping >/dev/null 2>&1; }
dbd_ok() { alive "$(pid_of "$S/slurmdbd.pid")" && sacctmgr -n -P show cluster format=cluster >/dev/null 2>&1; }
ctld_ok() { alive "$(pid_of "$S/slurmctld.pid")" && scontrol ping 2>/dev/null | grep -q 'is UP'; }
slurmd_ok() { alive "$(pid_of "$S/slurmd.pid")"; }
node_state() { { sinfo -h -o %t 2>/dev/null || true; } | head -n1; }
node_idle() { [[ $(node_state) == idle ]]; }
node_up() { [[ $(node_state) =~ ^(idle|mix|alloc|comp)$ ]]; }

cmd_install() {
    local missing=() p
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then say "packages already installed"; return 0; fi
    [[ $(id -u) == 0 ]] || die "install needs root"
    export DEBIAN_FRONTEND=noninteractive
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        say "apt-get update"
        apt-get update -qq </dev/null
    fi
    # No service may start at install time (no systemd/init here): the start subcommand does it.
    local own_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    say "apt-get install ${missing[*]}"
    local rc=0
    apt-get install -y -qq --no-install-recommends "${PKGS[@]}" </dev/null >"/tmp/distlaw-slurm-apt.log" 2>&1 || rc=$?
    if ((rc != 0)); then # stale lists: update once and retry
        say "install failed (rc $rc), apt-get update and retry"
        apt-get update -qq </dev/null
        rc=0
        apt-get install -y -qq --no-install-recommends "${PKGS[@]}" </dev/null >"/tmp/distlaw-slurm-apt.log" 2>&1 || rc=$?
    fi
    ((own_policy)) && rm -f /usr/sbin/policy-rc.d
    ((rc == 0)) || { tail -n 20 /tmp/distlaw-slurm-apt.log >&2; die "apt-get install failed (log /tmp/distlaw-slurm-apt.log)"; }
    say "installed: slurm $(dpkg-query -W -f='${Version}' slurmctld), munge $(dpkg-query -W -f='${Version}' munge), mariadb $(dpkg-query -W -f='${Version}' mariadb-server)"
}

write_conf() { # -> 0 when /etc/slurm/slurm.conf or slurmdbd.conf changed
    local cpus mem tmp changed=1
    cpus=$(nproc)
    # 90 % of total memory: stable from one start to the next (MemAvailable is not), and below what
    # slurmd measures, so the node is never drained for "Low RealMemory".
    mem=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    mkdir -p /etc/slurm
    tmp=$(mktemp)
    cat >"$tmp" <<EOF
# Written by scripts/slurm-local.sh (distlaw): a single-node cluster for tests.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=5,bf_interval=5
DependencyParameters=kill_invalid_depend
EnforcePartLimits=ALL
MinJobAge=300
KillWait=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    if ! cmp -s "$tmp" /etc/slurm/slurm.conf; then
        install -m 644 "$tmp" /etc/slurm/slurm.conf
        changed=0
    fi
    cat >"$tmp" <<EOF
# Written by scripts/slurm-local.sh (distlaw).
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$S/slurmdbd.pid
LogFile=$S/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    if ! cmp -s "$tmp" /etc/slurm/slurmdbd.conf; then
        install -m 600 "$tmp" /etc/slurm/slurmdbd.conf
        changed=0
    fi
    rm -f "$tmp"
    return $changed
}

start_munge() {
    if munge_ok; then return 0; fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge /etc/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        say "creating /etc/munge/munge.key"
        runuser -u munge -- /usr/sbin/mungekey --create --keyfile=/etc/munge/munge.key
    fi
    # A stale socket or pid file of a dead munged makes the new one refuse to start.
    if ! alive "$(pid_of /run/munge/munged.pid)"; then rm -f /run/munge/munged.pid /run/munge/munge.socket.2*; fi
    runuser -u munge -- /usr/sbin/munged </dev/null
    wait_for munge 10 munge_ok
    say "munge up"
}

start_db() {
    if db_ok; then return 0; fi
    install -d -o mysql -g mysql -m 0750 "$S/mysql"
    if [[ ! -d $S/mysql/data/mysql ]]; then
        say "creating the accounting database"
        mariadb-install-db --no-defaults --user=mysql --datadir="$S/mysql/data" \
            --auth-root-authentication-method=socket --skip-test-db >"$S/log/mariadb-install.log" 2>&1 \
            || { tail -n 20 "$S/log/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    fi
    rm -f "$DB_SOCK" "$S/mysql/mysqld.pid"
    setsid mariadbd --no-defaults --user=mysql --datadir="$S/mysql/data" --socket="$DB_SOCK" \
        --pid-file="$S/mysql/mysqld.pid" --log-error="$S/mysql/mysqld.err" \
        --bind-address=127.0.0.1 --port="$DB_PORT" --skip-name-resolve \
        </dev/null >/dev/null 2>&1 &
    disown
    wait_for mariadb 60 db_ok
    mariadb --no-defaults --socket="$DB_SOCK" -uroot <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
    say "mariadb up (127.0.0.1:$DB_PORT)"
}

start_dbd() {
    if ! dbd_ok; then
        rm -f "$S/slurmdbd.pid"
        slurmdbd </dev/null
        wait_for slurmdbd 30 dbd_ok
        say "slurmdbd up"
    fi
    if ! sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
        say "cluster $CLUSTER registered in accounting"
    fi
}

start_slurm() {
    if ! ctld_ok; then
        # -i: ignore unreadable state; no -c, so job ids keep counting up across restarts (sacct
        # would otherwise show an old job under a reused id).
        slurmctld -i </dev/null
        wait_for slurmctld 30 ctld_ok
        say "slurmctld up"
    fi
    if ! slurmd_ok; then
        slurmd </dev/null
        wait_for slurmd 30 slurmd_ok
        say "slurmd up"
    fi
    local i
    for ((i = 0; i < 300; i++)); do node_up && break; sleep 0.2; done
    if ! node_up; then
        # A node left DOWN/DRAIN by an earlier run (say a crash): resume it once.
        scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
        for ((i = 0; i < 100; i++)); do node_up && break; sleep 0.2; done
    fi
    node_up || die "node $HOST is '$(node_state)', not idle (logs in $S/log)"
}

cmd_start() {
    [[ $(id -u) == 0 ]] || die "start needs root"
    command -v slurmctld >/dev/null || die "Slurm is not installed (bash $0 install)"
    mkdir -p "$S/state" "$S/spool" "$S/log"
    if write_conf && { ctld_ok || slurmd_ok || dbd_ok; }; then
        say "configuration changed: restarting the Slurm daemons"
        stop_slurm
    fi
    start_munge
    start_db
    start_dbd
    start_slurm
    say "up: partition debug, node $HOST $(sinfo -h -o '%t, %c CPUs, %m MB')"
}

stop_slurm() {
    if ctld_ok; then # stops slurmctld and slurmd
        scontrol shutdown >/dev/null 2>&1 || true
        wait_gone "$S/slurmctld.pid" 20 || true
        wait_gone "$S/slurmd.pid" 20 || true
        say "slurmctld and slurmd stopped"
    fi
    stop_pidfile slurmctld "$S/slurmctld.pid"
    stop_pidfile slurmd "$S/slurmd.pid"
    stop_pidfile slurmdbd "$S/slurmdbd.pid"
}

cmd_stop() {
    stop_slurm
    if db_ok; then
        mariadb-admin --no-defaults --socket="$DB_SOCK" -uroot shutdown >/dev/null 2>&1 || true
        wait_gone "$S/mysql/mysqld.pid" 30 || true
        say "mariadb stopped"
    fi
    stop_pidfile mariadb "$S/mysql/mysqld.pid"
    stop_pidfile munge /run/munge/munged.pid
    say "down"
}

cmd_status() {
    local ok=0
    munge_ok && say "munge: up" || { say "munge: down"; ok=1; }
    db_ok && say "mariadb: up" || say "mariadb: down"
    dbd_ok && say "slurmdbd: up" || say "slurmdbd: down"
    ctld_ok && say "slurmctld: up" || { say "slurmctld: down"; ok=1; }
    slurmd_ok && say "slurmd: up" || { say "slurmd: down"; ok=1; }
    if ((ok == 0)); then # sinfo retries for ~10 s when slurmctld is down
        local st
        st=$(node_state)
        say "node $HOST: ${st:-unknown}"
        [[ $st =~ ^(idle|mix|alloc|comp)$ ]] || ok=1
    fi
    ((ok == 0)) && say "up" || say "not up"
    return $ok
}

(($# > 0)) || { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
for c in "$@"; do
    case $c in
        install) cmd_install ;;
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        *) die "unknown subcommand '$c' (install, start, stop, status)" ;;
    esac
done
