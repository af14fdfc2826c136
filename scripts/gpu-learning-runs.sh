#!/usr/bin/env bash
# Learning runs of one config side by side on one GPU, each stopped by a wall-clock limit (or by
# the config's eval.stop_at_return), then each run's final checkpoint scored under the Nature
# protocol: 30 full games, epsilon 0.05, 18,000-frame cap (`dqn-atari evaluate`).
#
# Every run takes the GPU settings the README recommends: the update as a CUDA graph, the
# replay's frames on the GPU, ale-py's vector env with 8 games (still one update per 4 agent
# steps over all games); ale-py's vector env takes configs with DeepMind's frame stacks only, e.g.
# pong-fast.yaml and pong-nstep-dueling.yaml. Further KEY=VALUE overrides go to every run.
#
# Kept in OUT_DIR, per seed: NAME-sSEED.log (training, then evaluation) and NAME-sSEED/ with the
# small files worth keeping (metrics.csv, config.yaml, evaluation.json, wall-clock.txt). Run
# directories, with their checkpoints (large: the replay), stay in OUT_DIR/runs.
#
# usage: bash scripts/gpu-learning-runs.sh CONFIG OUT_DIR TRAIN_SECONDS "SEEDS" [KEY=VALUE ...]
#   e.g. bash scripts/gpu-learning-runs.sh configs/pong-nstep-dueling.yaml gpu-pong 420 "0 1" \
#            train.total_frames=4000000 eval.every_frames=500000
#   EVAL_SECONDS (default 300) bounds each final evaluation (30 games played one at a time: on an
#   H200, 115-155 s for a Pong agent at 1M frames); EVAL_EPISODES (default 30) sets its games; DEVICE=cpu tries the script itself on
#   a machine without a GPU (the graph and GPU frames then do nothing).
set -uo pipefail
cd "$(dirname "$0")/.."
usage='usage: bash scripts/gpu-learning-runs.sh CONFIG OUT_DIR TRAIN_SECONDS "SEEDS" [KEY=VALUE ...]'
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
name=$(basename "$config" .yaml)
mkdir -p "$out/runs"
out=$(cd "$out" && pwd)

echo "== machine"
bash scripts/gpu-machine.sh | tee "$out/machine.txt"
if ! "$PY" -c "import torch, gymnasium, ale_py; assert '$device' == 'cpu' or torch.cuda.is_available()" 2>"$out/import-error.txt"; then
    echo "gpu-learning-runs: no CUDA device, or gymnasium/ale-py missing: $(tail -1 "$out/import-error.txt")" >&2
    exit 1
fi

run_one() {  # train one seed to its limit, then score its final checkpoint
    local seed=$1 run="$out/runs/$name-s$1" log="$out/$name-s$1.log" keep="$out/$name-s$1"
    local start end code eval_code
    shift
    rm -rf "$keep"  # no file of an earlier use of OUT_DIR may pass for this run's
    start=$(date +%s)
    # SIGTERM checkpoints and exits 75; -k: a run that does not stop within 90 s more is killed
    timeout --preserve-status -k 90 -s TERM "$train_seconds" "$PY" -m dqn_atari train "$config" \
        "seed=$seed" "run_dir=$run" "train.device=$device" train.cuda_graph=true \
        replay.frames_on_device=true env.backend=ale_vector env.num_envs=8 log.progress=quiet "$@" >"$log" 2>&1
    code=$?
    end=$(date +%s)
    mkdir -p "$keep"
    echo "training: $((end - start)) s wall clock, exit $code (0: budget or target reached, 75: stopped by the time limit)" \
        | tee "$keep/wall-clock.txt" >>"$log"
    timeout -k 10 "$eval_seconds" "$PY" -m dqn_atari evaluate "$run" --episodes "$eval_episodes" --epsilon 0.05 --device "$device" \
        --out "$run/eval-final" >>"$log" 2>&1
    eval_code=$?
    echo "evaluation exit $eval_code after $(($(date +%s) - end)) s" >>"$log"
    cp "$run/metrics.csv" "$run/config.yaml" "$keep/" 2>/dev/null
    cp "$run/eval-final/report.json" "$keep/evaluation.json" 2>/dev/null
    [ "$code" -eq 0 ] || [ "$code" -eq 75 ] && [ "$eval_code" -eq 0 ]
}

echo "== $name, seeds $seeds side by side, ${train_seconds} s of training each"
pids=()
for seed in $seeds; do
    run_one "$seed" "$@" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done
for seed in $seeds; do
    echo "-- seed $seed: $(cat "$out/$name-s$seed/wall-clock.txt")"
    grep -E "evaluation at|evaluation mean reached|stopped by signal|done:|error" "$out/$name-s$seed.log" | tail -8
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
    echo "gpu-learning-runs: a run or its evaluation failed; its log in $out says why" >&2
fi
exit "$status"
