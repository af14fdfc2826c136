#!/usr/bin/env bash
# Stop the cluster started by up.sh STATE_DIR: cancel its jobs, then slurmd, slurmctld, munged.
set -uo pipefail
STATE=${1:?usage: down.sh STATE_DIR}
export SLURM_CONF="$STATE/slurm.conf"
scancel --user="$(id -un)" 2>/dev/null
# Killing slurmd does not kill running jobs: wait for the cancelled ones to go.
for _ in $(seq 1 40); do
    [ -z "$(squeue -h 2>/dev/null)" ] && break
    sleep 0.5
done
for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" "$STATE/munge/munged.pid"; do
    if [ -f "$pidfile" ]; then
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    fi
done
exit 0
