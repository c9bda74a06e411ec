#!/usr/bin/env bash
# Stop the daemons that tests/slurm/start_slurm.sh started in STATE_DIR, by their PID files
# (never by name: other clusters or munge daemons on the host are left alone).
#
#   tests/slurm/stop_slurm.sh STATE_DIR [--keep]     (--keep: leave STATE_DIR and its logs)
set -uo pipefail

STATE=${1:?usage: stop_slurm.sh STATE_DIR [--keep]}
[[ -f $STATE/slurm.conf || -f $STATE/munged.pid ]] || { echo "stop_slurm: $STATE is no cluster state dir" >&2; exit 1; }

# The daemons rewrite nothing after SIGTERM; give each up to 10 s, then SIGKILL.
stop() {
    local name=$1 pidfile=$STATE/$1.pid pid
    [[ -s $pidfile ]] || return 0
    pid=$(<"$pidfile")
    # Only signal the process if it is still the daemon we started (pid reuse).
    if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
}

# Jobs still running under slurmd (e.g. after an interrupted test) are its children's
# children; slurmstepd processes exit when slurmd cancels them, so cancel first.
if [[ -f $STATE/slurm.conf ]] && command -v scancel >/dev/null; then
    SLURM_CONF=$STATE/slurm.conf timeout 10 scancel --user="$(id -un)" 2>/dev/null || true
fi
stop slurmd
stop slurmctld
stop munged

[[ ${2:-} == --keep ]] || rm -rf "$STATE"
exit 0
