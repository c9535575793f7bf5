#!/usr/bin/env bash
# Start a throw-away SLURM cluster (with accounting) under DIR: one node, or several
# virtual nodes on this host (STUDYSPEC_SLURM_NODES, for multi-node jobs).
#
#   start.sh [DIR]        DIR defaults to /tmp/studyspec-slurm
#
# Needs root and Debian/Ubuntu (apt). Installs the packages if missing, then
# starts munged, MariaDB, slurmdbd, slurmctld and slurmd by hand (no systemd);
# every config, state, spool, log and pid file lives under DIR. Safe to run
# again: daemons that are already up are left alone.
# Stop with stop.sh [DIR] [--purge]. Use with:  source DIR/env.sh
#
# Environment knobs (optional):
#   STUDYSPEC_SLURM_CLUSTER    cluster name              [studyspec]
#   STUDYSPEC_SLURM_PORT_BASE  slurmctld port; slurmd and slurmdbd use +1, +2 [6817]
#   STUDYSPEC_SLURM_NODES      virtual nodes n1..nN (CPUs split between them; their
#                              slurmd ports +1, +3, +4, ...); 1 = node localhost [1]
#   STUDYSPEC_SLURM_TIMEOUT    seconds to wait for each daemon [60]
set -euo pipefail

DIR="${1:-/tmp/studyspec-slurm}"
case "$DIR" in -h|--help) sed -n '2,18p' "$0"; exit 0 ;; esac
[ "$(id -u)" = 0 ] || { echo "start.sh: error: must run as root (the daemons and slurmd need it)" >&2; exit 1; }
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd -P)"
CLUSTER="${STUDYSPEC_SLURM_CLUSTER:-studyspec}"
PORT_BASE="${STUDYSPEC_SLURM_PORT_BASE:-6817}"
CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
TIMEOUT="${STUDYSPEC_SLURM_TIMEOUT:-60}"
NODES="${STUDYSPEC_SLURM_NODES:-1}"
case "$NODES" in ''|*[!0-9]*|0) echo "start.sh: error: STUDYSPEC_SLURM_NODES must be a positive integer, not '$NODES'" >&2; exit 1 ;; esac
# node names, and the slurmd pid file and port of each (node k > 1 listens on PORT_BASE + 1 + k)
if [ "$NODES" = 1 ]; then
    NODE_NAMES=(localhost)
    SLURMD_PID=("$DIR/run/slurmd.pid")
    SLURMD_PORTS=("$SLURMD_PORT")
else
    NODE_NAMES=() SLURMD_PID=() SLURMD_PORTS=()
    for k in $(seq 1 "$NODES"); do
        NODE_NAMES+=("n$k")
        SLURMD_PID+=("$DIR/run/slurmd-n$k.pid")
        SLURMD_PORTS+=($(( k == 1 ? SLURMD_PORT : PORT_BASE + 1 + k )))
    done
fi
MUNGE_SOCKET=/run/munge/munge.socket.2

T_START=$(date +%s%N)
log() { printf '[start.sh %5.1fs] %s\n' "$(awk -v a="$T_START" -v b="$(date +%s%N)" 'BEGIN {print (b - a) / 1e9}')" "$*"; }
die() { echo "start.sh: error: $*" >&2; exit 1; }

# --- helpers -----------------------------------------------------------------
pid_alive() {  # pid_alive PIDFILE COMM -> 0 if the process in PIDFILE runs and is COMM
    local f=$1 comm=$2 pid
    [ -s "$f" ] || return 1
    pid=$(tr -dc '0-9' < "$f")
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]
}
wait_for() {  # wait_for DESCRIPTION LOGFILE COMMAND... -> retry until COMMAND succeeds
    local what=$1 logf=$2; shift 2
    local deadline=$(( $(date +%s) + TIMEOUT ))
    until "$@" >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "start.sh: timed out after ${TIMEOUT}s waiting for $what; last lines of $logf:" >&2
            tail -n 20 "$logf" >&2 2>/dev/null || true
            exit 1
        fi
        sleep 0.2
    done
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }  # something listens
check_port_free() {  # refuse to start a daemon whose port is taken by someone else
    if port_busy "$1"; then
        die "port $1 ($2) is already in use, probably by a cluster in another DIR. Stop it first (stop.sh OTHER_DIR) or set STUDYSPEC_SLURM_PORT_BASE."
    fi
}

# --- 1. packages ---------------------------------------------------------------
need_install=0
for b in slurmctld slurmd slurmdbd sbatch sacct sacctmgr munged mariadbd mariadb-install-db mariadb; do
    command -v "$b" >/dev/null 2>&1 || need_install=1
done
if [ "$need_install" = 1 ]; then
    log "installing Debian packages (slurm, munge, mariadb) ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge slurmdbd mariadb-server >"$DIR/apt-install.log" 2>&1 \
        || { tail -n 30 "$DIR/apt-install.log" >&2; die "apt-get install failed (log: $DIR/apt-install.log)"; }
    log "packages installed"
fi

# Refuse early, before writing or starting anything, if DIR holds a cluster of another
# shape or another cluster holds our ports.
OLD_CONF="$DIR/etc/slurm.conf"
if [ -f "$OLD_CONF" ] && [ "$(grep -c '^NodeName=' "$OLD_CONF")" != "$NODES" ]; then
    die "$DIR holds a cluster of $(grep -c '^NodeName=' "$OLD_CONF") node(s), not STUDYSPEC_SLURM_NODES=$NODES: stop and remove it first (stop.sh $DIR --purge) or use another DIR"
fi
pid_alive "$DIR/run/slurmdbd.pid" slurmdbd  || check_port_free "$DBD_PORT" slurmdbd
pid_alive "$DIR/run/slurmctld.pid" slurmctld || check_port_free "$CTLD_PORT" slurmctld
for i in "${!NODE_NAMES[@]}"; do
    pid_alive "${SLURMD_PID[$i]}" slurmd || check_port_free "${SLURMD_PORTS[$i]}" "slurmd of node ${NODE_NAMES[$i]}"
done

# --- 2. layout and configuration -------------------------------------------------
mkdir -p "$DIR"/{etc,log,run,state,spool,mysql,tmp}
touch "$DIR/.studyspec-slurm"   # marker: stop.sh --purge only removes marked dirs
CONF="$DIR/etc/slurm.conf"
DBD_CONF="$DIR/etc/slurmdbd.conf"
export SLURM_CONF="$CONF"

NCPU=$(nproc)
MEM_MB=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n1)
[ -n "$MEM_MB" ] || MEM_MB=$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)
REAL_MEM=$(( MEM_MB * 9 / 10 ))
# several virtual nodes share the host: each gets its part of the CPUs and memory
NODE_CPUS=$(( NCPU / NODES > 0 ? NCPU / NODES : 1 ))
NODE_MEM=$(( REAL_MEM / NODES ))
if [ "$NODES" = 1 ]; then
    SLURMD_FILES="SlurmdSpoolDir=$DIR/spool
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmdLogFile=$DIR/log/slurmd.log"
    NODE_LINES="NodeName=localhost NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$REAL_MEM State=UNKNOWN"
else
    SLURMD_FILES="SlurmdSpoolDir=$DIR/spool/%n
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmdLogFile=$DIR/log/slurmd-%n.log"
    NODE_LINES=""
    for i in "${!NODE_NAMES[@]}"; do
        NODE_LINES+="NodeName=${NODE_NAMES[$i]} NodeHostname=localhost NodeAddr=127.0.0.1 Port=${SLURMD_PORTS[$i]} CPUs=$NODE_CPUS RealMemory=$NODE_MEM State=UNKNOWN
"
    done
    NODE_LINES="${NODE_LINES%$'\n'}"
fi

if [ ! -f "$CONF" ]; then
    cat >"$CONF" <<EOF
# Generated by studyspec/local_slurm/start.sh -- throw-away cluster ($NODES node(s)).
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job may start again only after the job credential expires
# (default 120 s); keep that short on a throw-away cluster.
AuthInfo=cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SwitchType=switch/none
ReturnToService=2
MailProg=/bin/true
# scheduling: share the node between jobs (DefMemPerCPU, else a job takes all
# memory), start array tasks without delay, and look at the queue every 2 s so a
# requeued job restarts soon after it becomes eligible again (default 60 s).
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2
MinJobAge=300
# accounting through slurmdbd (sacct)
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
JobCompType=jobcomp/none
# everything under $DIR
StateSaveLocation=$DIR/state
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
$SLURMD_FILES
SlurmctldDebug=info
SlurmdDebug=info
# the node(s) and the partition
$NODE_LINES
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
fi

DB_PASS_FILE="$DIR/etc/db.pass"
if [ ! -s "$DB_PASS_FILE" ]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$DB_PASS_FILE")
fi
DB_PASS=$(cat "$DB_PASS_FILE")
MYSQL_SOCK="$DIR/run/mysqld.sock"

if [ ! -f "$DBD_CONF" ]; then
    (umask 077; cat >"$DBD_CONF" <<EOF
# Generated by studyspec/local_slurm/start.sh
AuthType=auth/munge
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
DebugLevel=info
StorageType=accounting_storage/mysql
# "localhost" makes the client library use the unix socket given by
# MYSQL_UNIX_PORT (set when start.sh launches slurmdbd); no TCP port is opened.
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    )
fi
chmod 600 "$DBD_CONF"

cat >"$DIR/env.sh" <<EOF
# source this file to use the local SLURM cluster started by start.sh
export SLURM_CONF="$CONF"
EOF

started=()
already=()

# --- 3. munged -------------------------------------------------------------------
munge_ok() { munge -n -S "$MUNGE_SOCKET" 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; }
mkdir -p "$DIR/munge"
chown munge:munge "$DIR/munge"; chmod 700 "$DIR/munge"
if pid_alive "$DIR/munge/munged.pid" munged; then
    already+=("munged")
elif munge_ok; then
    already+=("munged (not ours: socket $MUNGE_SOCKET already served; stop.sh leaves it)")
else
    mkdir -p /run/munge
    chown munge:munge /run/munge; chmod 755 /run/munge
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    runuser -u munge -- munged --socket="$MUNGE_SOCKET" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
        --seed-file="$DIR/munge/munged.seed"
    wait_for munged "$DIR/munge/munged.log" munge_ok
    started+=("munged")
    log "munged up"
fi

# --- 4. MariaDB (own datadir, unix socket only) -------------------------------------
# shellcheck disable=SC2120  # arguments come through wait_for
mysql_q() { mariadb --no-defaults --socket="$MYSQL_SOCK" -uroot "$@"; }
if pid_alive "$DIR/run/mariadb.pid" mariadbd; then
    already+=("mariadb")
else
    if [ ! -d "$DIR/mysql/mysql" ]; then
        mariadb-install-db --no-defaults --user=root --datadir="$DIR/mysql" \
            --auth-root-authentication-method=socket --skip-test-db \
            >"$DIR/log/mariadb-install.log" 2>&1 \
            || { tail -n 20 "$DIR/log/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    fi
    rm -f "$MYSQL_SOCK"
    # Throw-away data: no fsync per commit, no doublewrite buffer.
    setsid mariadbd --no-defaults --user=root --datadir="$DIR/mysql" \
        --socket="$MYSQL_SOCK" --pid-file="$DIR/run/mariadb.pid" \
        --log-error="$DIR/log/mariadb.log" --tmpdir="$DIR/tmp" \
        --skip-networking --skip-log-bin --innodb-buffer-pool-size=64M \
        --innodb-log-file-size=16M --innodb-lock-wait-timeout=900 \
        --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 \
        </dev/null >>"$DIR/log/mariadb.log" 2>&1 &
    wait_for "mariadb" "$DIR/log/mariadb.log" mysql_q -e 'SELECT 1'
    started+=("mariadb")
    log "mariadb up"
fi
mysql_q <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF

# --- 5. slurmdbd --------------------------------------------------------------------
if pid_alive "$DIR/run/slurmdbd.pid" slurmdbd; then
    already+=("slurmdbd")
else
    MYSQL_UNIX_PORT="$MYSQL_SOCK" slurmdbd
    wait_for "slurmdbd" "$DIR/log/slurmdbd.log" sacctmgr -n list cluster
    started+=("slurmdbd")
    log "slurmdbd up"
fi
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
    log "accounting: cluster '$CLUSTER' added"
fi

# --- 6. slurmctld and slurmd ----------------------------------------------------------
if pid_alive "$DIR/run/slurmctld.pid" slurmctld; then
    already+=("slurmctld")
else
    slurmctld
    wait_for "slurmctld" "$DIR/log/slurmctld.log" scontrol ping
    started+=("slurmctld")
    log "slurmctld up"
fi
for i in "${!NODE_NAMES[@]}"; do
    name=${NODE_NAMES[$i]}
    if pid_alive "${SLURMD_PID[$i]}" slurmd; then
        already+=("slurmd $name")
    else
        [ "$NODES" = 1 ] || mkdir -p "$DIR/spool/$name"
        slurmd -N "$name"
        started+=("slurmd $name")
    fi
done

node_idle() { sinfo -h -N -n "$1" -o '%T' | grep -Eq '^(idle|mixed|allocated)'; }
for name in "${NODE_NAMES[@]}"; do
    logf="$DIR/log/slurmd.log"; [ "$NODES" = 1 ] || logf="$DIR/log/slurmd-$name.log"
    wait_for "node $name to become idle" "$logf" node_idle "$name"
done
wait_for "sacct" "$DIR/log/slurmdbd.log" sacct -n -X -a -S now
log "node(s) up: $(sinfo -h -N -o '%N %T cpus=%c mem=%mMB partition=%P' | paste -sd ';')"

# --- 7. report ----------------------------------------------------------------------------
if [ ${#started[@]} -eq 0 ]; then
    echo "Local SLURM cluster '$CLUSTER' in $DIR is already up (${already[*]}); nothing to do."
else
    echo "Local SLURM cluster '$CLUSTER' is up in $DIR"
    echo "  started:      ${started[*]}"
    [ ${#already[@]} -eq 0 ] || echo "  already up:   ${already[*]}"
fi
cat <<EOF
  config:       $CONF  (slurmdbd.conf beside it)
  logs:         $DIR/log/  $DIR/munge/munged.log
  node(s):      $(IFS=,; echo "${NODE_NAMES[*]}"), $([ "$NODES" = 1 ] && echo "$NCPU CPUs, RealMemory=${REAL_MEM}MB" || echo "$NODE_CPUS CPU(s), RealMemory=${NODE_MEM}MB each"), partition 'debug' (default)
Use it:
  source $DIR/env.sh
  sbatch --wrap 'hostname'; squeue; sacct
Stop it:
  $(cd "$(dirname "$0")" && pwd)/stop.sh $DIR [--purge]
EOF
