#!/usr/bin/env bash
# Stop what start_cluster.sh started (slurmd, slurmctld, munged), by their pid files, and wait for them
# to exit. Jobs still queued are lost. Idempotent.
set -uo pipefail
STATE=/var/lib/slurm-ci
for pidfile in $STATE/slurmd.pid $STATE/slurmctld.pid /run/munge/munged.pid; do
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
done
