#!/usr/bin/env bash
# Install what slurm/local-cluster/up.sh runs: Debian's slurmctld, slurmd, slurm-client and munge
# (8 packages, a few seconds after `apt-get update`). Needs root and apt. Does nothing when they
# are there already. Called by `bash scripts/setup.sh --with-slurm`.
set -euo pipefail
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null && command -v munged >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "install.sh: installing SLURM needs root and apt (a Debian machine); install slurmctld slurmd slurm-client munge" >&2
    exit 1
fi
log=$(mktemp)
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge) >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; exit 1; }
rm -f "$log"
echo "SLURM installed: $(slurmctld -V)"
