#!/usr/bin/env bash
# Check the CUDA path on a machine with an NVIDIA GPU and keep every figure, in two parts that
# each fit one 10-minute command:
#   benchmarks  the machine (GPU, driver, torch, CUDA, cuDNN: machine.txt), then, alone on it:
#               the update (learner: fp32, channels-last, bf16; update_gpu: the device profile,
#               eager vs CUDA graph), the training loop at 1, 4 and 8 envs against its learner
#               bound (loop_grid), K = 1, 2, 3, 4, 8 seeds in one process against the same seeds
#               one after another, 8 envs each (population), and 30 evaluation games one at a
#               time against side by side on the GPU (evaluate); --json files in OUT_DIR
#   tests       the CUDA tests (`pytest -m cuda`): replay on the GPU, updates against the CPU's,
#               kill-and-resume bit-exact on the GPU, Catch learned on the GPU
# Learning runs are scripts/gpu-learning-runs.sh's.
#
# usage: bash scripts/gpu-check.sh OUT_DIR [benchmarks|tests|all]   (default all)
set -uo pipefail
cd "$(dirname "$0")/.."
usage='usage: bash scripts/gpu-check.sh OUT_DIR [benchmarks|tests|all]'
out=${1:?$usage}
part=${2:-all}
case "$part" in
    benchmarks | tests | all) ;;
    *)
        echo "gpu-check: the part must be benchmarks, tests or all, got '$part'" >&2
        exit 2
        ;;
esac
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$out"
out=$(cd "$out" && pwd)

echo "== machine"
bash scripts/gpu-machine.sh | tee "$out/machine.txt"
if ! "$PY" -c "import torch, gymnasium, ale_py, av; assert torch.cuda.is_available()" 2>"$out/import-error.txt"; then
    echo "gpu-check: no CUDA device, or gymnasium/ale-py/av missing: $(tail -1 "$out/import-error.txt")" >&2
    exit 1
fi

status=0
if [ "$part" != tests ]; then
    echo "== benchmarks"
    for bench in learner update_gpu loop_grid population evaluate; do
        "$PY" -m dqn_atari benchmark "$bench" --seconds 3 --json "$out/bench-$bench.json" 2>&1 | tee "$out/bench-$bench.txt"
        [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    done
fi
if [ "$part" != benchmarks ]; then
    echo "== CUDA tests"
    "$PY" -m pytest -m cuda -p no:cacheprovider -q -n 0 tests/test_agent.py tests/test_replay.py \
        tests/test_checkpoint.py tests/test_cuda.py tests/test_learning.py 2>&1 | tee "$out/pytest-cuda.txt"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
[ "$status" -eq 0 ] || echo "gpu-check: a benchmark or test failed; its output in $out says why" >&2
exit "$status"
