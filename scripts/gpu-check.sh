#!/usr/bin/env bash
# Check the CUDA path on a machine with an NVIDIA GPU, in one go, and keep every figure:
#   1. the machine: GPU, driver, torch, CUDA and cuDNN versions (machine.txt)
#   2. benchmarks, alone on the machine: the update (learner) and the training loop at 1, 4 and
#      8 envs, both env backends, frames in pinned host memory and on the GPU (loop_grid)
#      and the update's device profile and CUDA-graph figures (update_gpu)
#   3. Pong learning runs, SEEDS of configs/pong-fast.yaml side by side on the one GPU (the
#      update as a CUDA graph, the replay's frames on the GPU), for
#      LEARNING_SECONDS each, stopped by SIGTERM (which checkpoints), with the CUDA tests
#      (`pytest -m cuda`) running beside them; LEARNING_SECONDS 0 skips this part
# Run directories stay in OUT_DIR/runs; their checkpoints are large, copy what you keep.
#
# usage: bash scripts/gpu-check.sh OUT_DIR [LEARNING_SECONDS] [SEEDS]
#   e.g. bash scripts/gpu-check.sh gpu-check 300 "0 1 2"
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash scripts/gpu-check.sh OUT_DIR [LEARNING_SECONDS] [SEEDS]}
learning_seconds=${2:-300}
seeds=${3:-0 1 2}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$out/runs"
out=$(cd "$out" && pwd)

echo "== machine"
bash scripts/gpu-machine.sh | tee "$out/machine.txt"
if ! "$PY" -c "import torch, gymnasium, ale_py, av; assert torch.cuda.is_available()" 2>"$out/import-error.txt"; then
    echo "gpu-check: no CUDA device, or gymnasium/ale-py/av missing: $(tail -1 "$out/import-error.txt")" >&2
    exit 1
fi

echo "== benchmarks"
"$PY" -m dqn_atari benchmark learner --seconds 3 --json "$out/bench-learner.json" 2>&1 | tee "$out/bench-learner.txt"
"$PY" -m dqn_atari benchmark update_gpu --seconds 3 --json "$out/bench-update-gpu.json" 2>&1 | tee "$out/bench-update-gpu.txt"
"$PY" -m dqn_atari benchmark loop_grid --seconds 5 --json "$out/bench-loop-grid.json" 2>&1 | tee "$out/bench-loop-grid.txt"

if [ "$learning_seconds" -eq 0 ]; then
    echo "LEARNING_SECONDS is 0: benchmarks only, no learning runs or tests"
    exit 0
fi

echo "== Pong learning runs (${learning_seconds} s each, seeds: $seeds) beside the CUDA tests"
pids=()
for seed in $seeds; do
    timeout --preserve-status -s TERM "$learning_seconds" "$PY" -m dqn_atari train configs/pong-fast.yaml \
        "seed=$seed" "run_dir=$out/runs/pong-fast-s$seed" train.device=cuda train.torch_threads=2 \
        train.cuda_graph=true replay.frames_on_device=true \
        eval.every_frames=200000 eval.episodes=10 log.every_steps=5000 log.progress=quiet \
        checkpoint.every_frames=100000000 >"$out/pong-fast-s$seed.log" 2>&1 &
    pids+=($!)
done
"$PY" -m pytest -m cuda -p no:cacheprovider -q tests/test_agent.py tests/test_replay.py \
    tests/test_checkpoint.py tests/test_cuda.py tests/test_learning.py 2>&1 | tee "$out/pytest-cuda.txt"
tests_status=${PIPESTATUS[0]}
status=0
for pid in "${pids[@]}"; do
    wait "$pid"
    code=$?
    # 75: stopped by the signal after a checkpoint, as planned; 0: the run reached its end
    if [ "$code" -ne 75 ] && [ "$code" -ne 0 ]; then status=1; fi
done
for seed in $seeds; do
    echo "-- seed $seed: $(grep -c '' "$out/runs/pong-fast-s$seed/metrics.csv" 2>/dev/null) metric rows"
    grep "evaluation at" "$out/pong-fast-s$seed.log" | tail -3
done
echo "tests exit $tests_status, learning runs $([ $status -eq 0 ] && echo ok || echo FAILED)"
[ "$tests_status" -eq 0 ] && [ "$status" -eq 0 ]
