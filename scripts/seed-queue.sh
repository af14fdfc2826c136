#!/usr/bin/env bash
# One recipe's seeds as preemptible jobs on a machine without a scheduler: each seed trained to
# its end (budget or stop rule) in RUNS_DIR/<config name>-s<seed>, then its final model scored
# (`dqn-atari evaluate`: 30 full games under the Nature protocol at epsilon 0.05, and at 0.01),
# then the next seed. The same command continues where a stop left it: a seed with a checkpoint
# resumes from it, a scored seed is passed over. Run one queue per core (one torch thread each),
# e.g. on 2 cores:
#   bash scripts/seed-queue.sh configs/breakout-solve.yaml ~/dqn-runs 0 2 &
#   bash scripts/seed-queue.sh configs/breakout-solve.yaml ~/dqn-runs 1 &
#
# A stop signal (TERM, INT, HUP, USR1) is passed to the training, which checkpoints; the queue
# then exits 75 like `dqn-atari train`: run it again to continue. Each seed's output is appended
# to RUNS_DIR/<name>-s<seed>.log; the queue prints one line per step.
#
# usage: bash scripts/seed-queue.sh CONFIG RUNS_DIR SEED [SEED ...]
#   THREADS (default 1): torch threads per run; EVAL_EPISODES (default 30); EVAL_EPSILONS
#   (default "0.05 0.01").
set -uo pipefail
cd "$(dirname "$0")/.."
usage='usage: bash scripts/seed-queue.sh CONFIG RUNS_DIR SEED [SEED ...]'
config=${1:?$usage}
runs_dir=${2:?$usage}
shift 2
[ $# -gt 0 ] || { echo "seed-queue: no seeds given; $usage" >&2; exit 2; }
if [ ! -f "$config" ]; then
    echo "seed-queue: no config file $config (e.g. configs/breakout-solve.yaml)" >&2
    exit 2
fi
for seed in "$@"; do
    [[ $seed =~ ^[0-9]+$ ]] || { echo "seed-queue: seed '$seed' is not a whole number (e.g. 0 1 2)" >&2; exit 2; }
done
DQN=${DQN_ATARI:-.venv/bin/dqn-atari}
threads=${THREADS:-1}
read -r -a epsilons <<< "${EVAL_EPSILONS:-0.05 0.01}"
last_epsilon=${epsilons[${#epsilons[@]}-1]}  # its report is the evaluation's last file
name=$(basename "$config" .yaml)
mkdir -p "$runs_dir"
export PYTHONUNBUFFERED=1

stopped=""
child=""
on_stop() {  # pass the stop on; the training checkpoints and exits 75
    stopped=$1
    [ -n "$child" ] && kill -s "$1" "$child" 2>/dev/null
}
for sig in TERM INT HUP USR1; do trap "on_stop $sig" "$sig"; done

run() {  # a step in the background, so that a stop reaches this shell while it runs
    "$@" &
    child=$!
    local status
    wait "$child"; status=$?
    while kill -0 "$child" 2>/dev/null; do  # a trapped signal ends `wait` early: wait again
        wait "$child"; status=$?
    done
    child=""
    return "$status"
}

for seed in "$@"; do
    run_dir="$runs_dir/$name-s$seed"
    log="$run_dir.log"
    if compgen -G "$run_dir/eval-*-nature-eps$last_epsilon/report.json" >/dev/null; then
        echo "seed $seed: trained and scored before ($run_dir)"
        continue
    fi
    echo "seed $seed: training in $run_dir (log $log)"
    echo "=== $(date -u '+%F %T') UTC seed-queue: train, commit $(git rev-parse --short HEAD 2>/dev/null)" >> "$log"
    # A run_dir that holds a checkpoint is resumed from it.
    run "$DQN" train "$config" "seed=$seed" "run_dir=$run_dir" "train.torch_threads=$threads" log.progress=lines \
        >> "$log" 2>&1
    status=$?
    if [ -n "$stopped" ] || [ "$status" -eq 75 ]; then
        echo "seed $seed: stopped (signal ${stopped:-TERM}), checkpoint written; run the same command to continue"
        exit 75
    fi
    if [ "$status" -ne 0 ]; then
        echo "seed-queue: seed $seed: training failed (exit $status); its log: $log" >&2
        exit "$status"
    fi
    echo "seed $seed: trained; scoring its final model"
    echo "=== $(date -u '+%F %T') UTC seed-queue: evaluate" >> "$log"
    run "$DQN" evaluate "$run_dir" --episodes "${EVAL_EPISODES:-30}" --epsilon "${epsilons[@]}" --processes 1 \
        >> "$log" 2>&1
    status=$?
    if [ -n "$stopped" ]; then
        echo "seed $seed: stopped during its evaluation; run the same command to score it"
        exit 75
    fi
    if [ "$status" -ne 0 ]; then
        echo "seed-queue: seed $seed: evaluation failed (exit $status); its log: $log" >&2
        exit "$status"
    fi
    echo "seed $seed: scored ($run_dir/eval-*)"
done
