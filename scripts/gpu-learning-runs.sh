#!/usr/bin/env bash
# Several seeds of one config trained in one process on one GPU (the population, `train --seeds`:
# the seeds in lockstep, one batched update for all), stopped by a wall-clock limit, by the
# config's budget, or seed by seed at the config's eval.stop_at_return; then each seed's final
# checkpoint scored under the Nature protocol: 30 full games side by side, epsilon 0.05,
# 18,000-frame cap (`dqn-atari evaluate`).
#
# The run takes the GPU settings the README recommends: the update as a CUDA graph, the replay's
# frames on the GPU, ale-py's vector env with 8 games per seed (still one update per 4 agent
# steps over all games); ale-py's vector env takes configs with DeepMind's frame stacks only, e.g.
# pong-fast.yaml and pong-nstep-dueling-gpu.yaml. Further KEY=VALUE overrides go to the run.
#
# Kept in OUT_DIR: NAME.log (training, then each evaluation) and, per seed, NAME-sSEED/ with the
# small files worth keeping (metrics.csv, config.yaml, evaluation.json, wall-clock.txt). The
# population's directory, with its checkpoints (large: the replay), stays in OUT_DIR/runs/NAME.
#
# usage: bash scripts/gpu-learning-runs.sh CONFIG OUT_DIR TRAIN_SECONDS SEEDS [KEY=VALUE ...]
#   e.g. bash scripts/gpu-learning-runs.sh configs/pong-nstep-dueling-gpu.yaml gpu-pong 420 0-2
#   TRAIN_SECONDS counts from the first logged update (start-up and the replay's warm-up come
#   before it, at most a minute on a GPU machine).
#   SEEDS: 0-2, 0,1,2 or "0 1 2". EVAL_SECONDS (default 300) bounds each seed's final evaluation;
#   EVAL_EPISODES (default 30) sets its games; DEVICE=cpu tries the script itself on a machine
#   without a GPU (the graph and GPU frames then do nothing).
set -uo pipefail
cd "$(dirname "$0")/.."
usage='usage: bash scripts/gpu-learning-runs.sh CONFIG OUT_DIR TRAIN_SECONDS SEEDS [KEY=VALUE ...]'
config=${1:?$usage}
out=${2:?$usage}
train_seconds=${3:?$usage}
seeds=${4:?$usage}
shift 4
eval_seconds=${EVAL_SECONDS:-300}
eval_episodes=${EVAL_EPISODES:-30}
device=${DEVICE:-cuda}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
if [ ! -f "$config" ]; then
    echo "gpu-learning-runs: no config file $config (e.g. configs/pong-nstep-dueling.yaml)" >&2
    exit 2
fi
if ! [[ "$train_seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "gpu-learning-runs: TRAIN_SECONDS must be a whole number of seconds above 0, got '$train_seconds'" >&2
    exit 2
fi
seed_list=$(echo "$seeds" | tr ' ' ',' | sed -e 's/,,*/,/g' -e 's/^,//' -e 's/,$//')
members=$("$PY" -c "import sys; from dqn_atari.config import parse_seeds; print(*parse_seeds(sys.argv[1]))" "$seed_list" 2>/dev/null)
if [ -z "$members" ]; then
    echo "gpu-learning-runs: SEEDS must be seeds such as \"0 1 2\", 0-2 or 0,1,2, got '$seeds'" >&2
    exit 2
fi
name=$(basename "$config" .yaml)
mkdir -p "$out/runs"
out=$(cd "$out" && pwd)
group="$out/runs/$name"
log="$out/$name.log"

echo "== machine"
bash scripts/gpu-machine.sh | tee "$out/machine.txt"
if ! "$PY" -c "import torch, gymnasium, ale_py; assert '$device' == 'cpu' or torch.cuda.is_available()" 2>"$out/import-error.txt"; then
    echo "gpu-learning-runs: no CUDA device, or gymnasium/ale-py missing: $(tail -1 "$out/import-error.txt")" >&2
    exit 1
fi
for seed in $members; do
    rm -rf "$out/$name-s$seed"  # no file of an earlier use of OUT_DIR may pass for this run's
done

echo "== $name, seeds $members in one process, ${train_seconds} s of training from its first logged update"
start=$(date +%s)
"$PY" -m dqn_atari train "$config" --seeds "$seed_list" \
    "run_dir=$group" "train.device=$device" train.cuda_graph=true \
    replay.frames_on_device=true env.backend=ale_vector env.num_envs=8 log.progress=quiet "$@" >"$log" 2>&1 &
trainer=$!
# The limit counts from the first logged update (a loss in a seed's metrics.csv), not from the
# start: start-up and the replay's warm-up take what the machine makes them take, and a limit
# that included them could stop a slow machine's run before it learned anything.
until ! kill -0 "$trainer" 2>/dev/null || grep -qs "train/loss" "$group"/s*/metrics.csv; do
    sleep 1
done
waited=0
while kill -0 "$trainer" 2>/dev/null && [ "$waited" -lt "$train_seconds" ]; do
    sleep 1
    waited=$((waited + 1))
done
# SIGTERM checkpoints every seed and exits 75; a run that does not stop within 90 s more is killed
kill -TERM "$trainer" 2>/dev/null
for _ in $(seq 90); do
    kill -0 "$trainer" 2>/dev/null || break
    sleep 1
done
kill -KILL "$trainer" 2>/dev/null
wait "$trainer"
code=$?
end=$(date +%s)
echo "training: $((end - start)) s wall clock, exit $code (0: budget or target reached, 75: stopped by the time limit)" \
    | tee -a "$log"
status=0
[ "$code" -eq 0 ] || [ "$code" -eq 75 ] || status=1

for seed in $members; do
    run="$group/s$seed" keep="$out/$name-s$seed"
    mkdir -p "$keep"
    echo "training (seeds $members in one process): $((end - start)) s wall clock, exit $code" >"$keep/wall-clock.txt"
    cp "$run/metrics.csv" "$run/config.yaml" "$keep/" 2>/dev/null
    if [ "$status" -ne 0 ]; then
        continue  # no checkpoint worth scoring: the log says why the run failed
    fi
    eval_start=$(date +%s)
    echo "== seed $seed: final evaluation" >>"$log"
    timeout -k 10 "$eval_seconds" "$PY" -m dqn_atari evaluate "$run" --episodes "$eval_episodes" --epsilon 0.05 \
        --device "$device" --out "$run/eval-final" >>"$log" 2>&1
    eval_code=$?
    echo "evaluation: exit $eval_code after $(($(date +%s) - eval_start)) s" | tee -a "$keep/wall-clock.txt" >>"$log"
    [ "$eval_code" -eq 0 ] || status=1
    cp "$run/eval-final/report.json" "$keep/evaluation.json" 2>/dev/null
done

grep -E "evaluation at|evaluation mean reached|stopped by signal|done:|rror" "$log" | tail -12
for seed in $members; do
    echo "-- seed $seed"
    "$PY" - "$out/$name-s$seed/evaluation.json" <<'EOF'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except OSError:
    print("   no final evaluation")
else:
    s = r["summary"]
    low, high = s["ci95_mean"]
    print(f"   final evaluation ({s['episodes']} games, epsilon 0.05): mean {s['mean']:.1f} [{low:.1f}, {high:.1f}], "
          f"median {s['median']:.1f}, min {s['min']:.0f}, max {s['max']:.0f}, {s['capped_episodes']} capped")
EOF
done
if [ "$status" -ne 0 ]; then
    echo "gpu-learning-runs: the run or an evaluation failed; $log says why" >&2
fi
exit "$status"
