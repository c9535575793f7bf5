#!/usr/bin/env bash
# Stop the throw-away SLURM cluster that start.sh started under DIR.
#
#   stop.sh [DIR] [--purge]     DIR defaults to /tmp/studyspec-slurm
#
# Cancels the cluster's jobs, then stops slurmd, slurmctld, slurmdbd, MariaDB and
# munged, each by the pid file it wrote under DIR, and waits for them to exit.
# DIR is kept so the logs can be read; --purge removes it. A munged that start.sh
# did not start (no pid file under DIR) is left running.
set -euo pipefail

DIR=/tmp/studyspec-slurm
PURGE=0
for a in "$@"; do
    case "$a" in
        --purge) PURGE=1 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        -*) echo "stop.sh: unknown option $a" >&2; exit 2 ;;
        *) DIR=$a ;;
    esac
done
if [ ! -d "$DIR" ]; then
    echo "stop.sh: $DIR does not exist; nothing to stop."
    exit 0
fi
DIR="$(cd "$DIR" && pwd -P)"
TIMEOUT="${STUDYSPEC_SLURM_TIMEOUT:-60}"

pid_of() {  # pid_of PIDFILE -> prints the pid if that process is running
    local f=$1 pid
    [ -s "$f" ] || return 1
    pid=$(tr -dc '0-9' < "$f")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# Cancel the jobs first so no slurmstepd outlives slurmd.
export SLURM_CONF="$DIR/etc/slurm.conf"
if pid_of "$DIR/run/slurmctld.pid" >/dev/null && [ -f "$SLURM_CONF" ]; then
    # %F: the array's job id (the job's own id when not an array)
    mapfile -t jobs < <(squeue -h -o '%F' 2>/dev/null | sort -u || true)
    if [ ${#jobs[@]} -gt 0 ]; then
        echo "cancelling jobs: ${jobs[*]}"
        scancel --full "${jobs[@]}" 2>/dev/null || true
        for _ in $(seq 1 50); do
            [ -z "$(squeue -h -o '%i' 2>/dev/null || true)" ] && break
            sleep 0.2
        done
    fi
fi

stop_one() {  # stop_one NAME PIDFILE EXPECTED_COMM
    local name=$1 f=$2 comm=$3 pid deadline
    if ! pid=$(pid_of "$f"); then
        echo "  $name: not running"
        return 0
    fi
    # Guard against a stale pid file whose pid was reused by another program.
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$comm" ]; then
        echo "  $name: pid $pid from $f is '$(cat "/proc/$pid/comm" 2>/dev/null)', not $comm; left alone"
        return 0
    fi
    kill -TERM "$pid"
    deadline=$(( $(date +%s) + TIMEOUT ))
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "  $name: pid $pid still running after ${TIMEOUT}s, sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.1
    done
    echo "  $name: stopped (pid $pid)"
}

echo "stopping local SLURM cluster in $DIR"
for f in "$DIR"/run/slurmd.pid "$DIR"/run/slurmd-*.pid; do  # one slurmd, or one per virtual node
    [ -e "$f" ] || continue
    name=$(basename "$f" .pid)
    stop_one "${name/-/ }" "$f" slurmd
done
stop_one slurmctld "$DIR/run/slurmctld.pid" slurmctld
stop_one slurmdbd  "$DIR/run/slurmdbd.pid"  slurmdbd
stop_one mariadb   "$DIR/run/mariadb.pid"   mariadbd
stop_one munged    "$DIR/munge/munged.pid"  munged

if [ "$PURGE" = 1 ]; then
    if [ -f "$DIR/.studyspec-slurm" ] && [ "$DIR" != / ]; then
        rm -rf "$DIR"
        echo "removed $DIR"
    else
        echo "stop.sh: $DIR has no .studyspec-slurm marker; not removing it" >&2
        exit 1
    fi
else
    echo "logs kept in $DIR/log (remove everything with: $0 $DIR --purge)"
fi
