#!/usr/bin/env bash
# Start a real one-node SLURM cluster on loopback, for tests and for trying `dqn-atari submit`.
#   eval "$(bash slurm/local-cluster/up.sh [STATE_DIR])"    # prints `export SLURM_CONF=...`
# Needs Debian's slurmctld, slurmd, slurm-client and munge: `bash scripts/setup.sh --with-slurm`
# installs them (root and apt). Everything else (munge key, slurm.conf, state, logs, pid files) lives in STATE_DIR
# (default: a new temporary directory). Stop it with down.sh STATE_DIR.
set -euo pipefail

STATE=${1:-$(mktemp -d /tmp/dqn-slurm.XXXXXX)}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    echo "up.sh: SLURM is not installed; \`bash scripts/setup.sh --with-slurm\` installs it (root, apt)" >&2
    exit 1
fi

# munge: a key of our own and a socket in STATE, so nothing of the machine's is touched.
mkdir -p "$STATE/munge"
if [ ! -f "$STATE/munge/munge.key" ]; then
    dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
fi
chmod 700 "$STATE/munge"
chmod 400 "$STATE/munge/munge.key"
MUNGE_SOCKET="$STATE/munge/munge.socket"
munged --force --key-file="$STATE/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" --seed-file="$STATE/munge/seed"
chmod 755 "$STATE/munge"  # clients need to reach the socket

HOST=$(hostname -s)
# Two free ports for slurmctld and slurmd: SLURM's own 6817 and 6818 where nothing listens there,
# else the next free pair, so that several such clusters (pytest's workers, say) run side by side.
# The lock keeps two of them from choosing the same pair before either has bound it.
exec 9>"${TMPDIR:-/tmp}/dqn-atari-local-cluster.lock"
flock -w 120 9
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=6817
while listening "$PORT" || listening $((PORT + 1)); do
    PORT=$((PORT + 2))
done
# The node's CPUs and topology as slurmd itself detects them: a NodeName line that claims more
# than slurmd finds (a container's CPU set, say) leaves the node invalid instead of idle.
TOPOLOGY=$(slurmd -C | head -n 1 | tr ' ' '\n' | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ')
MEM=$(( $(free -m | awk '/^Mem:/ {print $2}') * 8 / 10 ))
mkdir -p "$STATE/spool/ctld" "$STATE/spool/d" "$STATE/log"
cat >"$STATE/slurm.conf" <<CONF
ClusterName=dqnlocal
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.log
ReturnToService=2
MpiDefault=none
# A requeued task comes back in ~10 s instead of ~2.5 min (see AuthInfo cred_expire above).
SchedulerParameters=bf_interval=1,sched_interval=2
MinJobAge=300
DefMemPerCPU=2000
NodeName=$HOST NodeAddr=127.0.0.1 ${TOPOLOGY}RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$STATE/slurm.conf"
# 9>&-: the daemons do not hold the port lock
slurmctld -c 9>&-
slurmd 9>&-
# Within a second on an idle machine; a loaded one (tests beside it) may take longer.
for _ in $(seq 1 120); do
    if sinfo -h -o %t 2>/dev/null | grep -qE '^idle'; then
        echo "export SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 0.5
done
{
    echo "up.sh: the node did not become idle in 60 s (state: $(sinfo -h -o '%t %E' 2>/dev/null || echo 'no answer')); logs in $STATE/log"
    for log in "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log"; do
        echo "--- last lines of $log"
        tail -n 15 "$log" 2>/dev/null || true
    done
} >&2
bash "$(dirname "$0")/down.sh" "$STATE" >/dev/null 2>&1  # nothing of a failed start stays running
exit 1
