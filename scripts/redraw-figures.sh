#!/usr/bin/env bash
# Redraw every committed learning-curve figure under results/ from the runs' metrics.csv, in the
# one style `dqn-atari plot` draws. usage: bash scripts/redraw-figures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
plot() { .venv/bin/dqn-atari plot "$@" >/dev/null; }
r=results
pong_cpu=("$r/pong-fast-cpu" "$r/pong-fast-cpu-s1" "$r/pong-nstep-dueling-s0" "$r/pong-nstep-dueling-s1"
    "$r/pong-nstep-dueling-s2" "$r/pong-nstep-dueling-2m-s0")
pong_gpu=("$r/gpu-h200-2026-11-26c/pong-nstep-dueling-s0" "$r/gpu-h200-2026-11-26c/pong-nstep-dueling-s1"
    "$r/gpu-h200-2026-11-26c/pong-nstep-dueling-s2")
solve_figures() {  # a three-seed recipe's figures from every seed started, finished or not
    local dir=$r/$1
    compgen -G "$dir/s[0-9]" >/dev/null || return 0  # no seed started yet
    plot "$dir"/s[0-9] --metric train --reference cleanrl-dqn --reference dopamine-dqn --out "$dir/train-frames.png"
    if grep -qs eval/return_mean "$dir"/s[0-9]/metrics.csv; then  # none before a first evaluation
        plot "$dir"/s[0-9] --metric eval --out "$dir/eval-frames.png"
    fi
}
solve_figures pong-solve
solve_figures pong-solve-eps005
solve_figures pong-solve3
solve_figures breakout-solve
solve_figures breakout-solve2
plot "${pong_cpu[@]}" --metric train --reference dopamine-dqn --reference dopamine-rainbow --out "$r/pong-seeds-train-frames.png"
plot "${pong_cpu[@]}" --metric train --x hours --out "$r/pong-seeds-train-hours.png"
plot "${pong_cpu[@]}" --metric eval --out "$r/pong-seeds-eval-frames.png"
plot "${pong_gpu[@]}" "$r/pong-nstep-dueling-s0" "$r/pong-nstep-dueling-s1" "$r/pong-nstep-dueling-s2" \
    --metric train --reference dopamine-dqn --out "$r/gpu-h200-2026-11-26c/pong-train-frames.png"
plot "${pong_gpu[@]}" "$r/pong-nstep-dueling-s0" "$r/pong-nstep-dueling-s1" "$r/pong-nstep-dueling-s2" \
    --metric train --x hours --out "$r/gpu-h200-2026-11-26c/pong-train-hours.png"
plot "$r/gpu-h200-2026-11-26/pong-fast-s0" "$r/gpu-h200-2026-11-26/pong-fast-s1" "$r/gpu-h200-2026-11-26/pong-fast-s2" \
    --metric train --out "$r/gpu-h200-2026-11-26/pong-fast-train-frames.png"
for run in pong-fast-cpu pong-fast-cpu-s1 breakout-nstep-dueling-s0 breakout-nstep-dueling-2.2m-s0; do
    plot "$r/$run" --metric eval --out "$r/$run/learning-curve-eval.png"
    plot "$r/$run" --metric train --reference dopamine-dqn --reference dopamine-rainbow --out "$r/$run/learning-curve-train.png"
done
echo "redrew the figures under $r/"
