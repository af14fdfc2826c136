"""scripts/seed-queue.sh, a recipe's seeds as preemptible jobs without a scheduler: real short
Pong runs stopped by a signal to the queue, continued by the same command, scored, and passed
over once scored."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, checkpoints, wait_for

SCRIPT = ROOT / "scripts" / "seed-queue.sh"
# helpers.BASE's short Pong run as a config file: the queue takes a recipe, not overrides.
RECIPE = """base: smoke.yaml
network: {hidden_size: 64}
train: {total_frames: 4000, learning_starts_steps: 200, batch_size: 8, deterministic: true}
checkpoint: {every_frames: 1000, keep_last: 2}
log: {every_steps: 100}
"""
QUEUE_ENV = {"DQN_ATARI": str(Path(sys.executable).parent / "dqn-atari"), "EVAL_EPISODES": "1"}


def queue(*args: str) -> list[str]:
    return ["bash", str(SCRIPT), *args]


def run_queue(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(queue(*args), capture_output=True, text=True, timeout=600, env={**os.environ, **QUEUE_ENV})


def test_a_missing_config_is_refused_in_one_line(tmp_path):
    done = run_queue("configs/no-such.yaml", str(tmp_path / "runs"), "0")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "seed-queue: no config file configs/no-such.yaml (e.g. configs/breakout-solve.yaml)"
    ]
    assert not (tmp_path / "runs").exists()


def test_a_seed_that_is_not_a_whole_number_is_refused_before_anything_is_written(tmp_path):
    done = run_queue("configs/smoke.yaml", str(tmp_path / "runs"), "0", "1-2")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["seed-queue: seed '1-2' is not a whole number (e.g. 0 1 2)"]
    assert not (tmp_path / "runs").exists()


@pytest.mark.e2e
def test_a_stopped_queue_continues_where_it_stopped_scores_each_seed_and_passes_scored_seeds_over(tmp_path):
    recipe = tmp_path / "short.yaml"
    recipe.write_text(RECIPE)
    runs = tmp_path / "runs"
    first, second = runs / "short-s0", runs / "short-s1"

    # A stop sent to the queue alone (a scheduler may signal only the job's shell) reaches the
    # training, which checkpoints; the queue exits 75 and seed 1 is not started.
    started = subprocess.Popen(
        queue(str(recipe), str(runs), "0", "1"), stdout=subprocess.PIPE, text=True, env={**os.environ, **QUEUE_ENV}
    )
    wait_for(lambda: len(checkpoints(first)) >= 1, "seed 0's first checkpoint")
    started.send_signal(signal.SIGTERM)
    out, _ = started.communicate(timeout=120)
    assert started.returncode == 75, out
    assert "seed 0: stopped (signal TERM), checkpoint written" in out
    stopped_at = checkpoints(first)[-1].name
    assert stopped_at != "ckpt-000000004000"
    assert not second.exists()

    # The same command resumes seed 0 from its checkpoint, trains it to its budget, scores it,
    # then trains and scores seed 1.
    done = run_queue(str(recipe), str(runs), "0", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    log = (runs / "short-s0.log").read_text()
    assert f"resumed from {first / 'checkpoints' / stopped_at}" in log
    for run in (first, second):
        assert checkpoints(run)[-1].name == "ckpt-000000004000"
        for epsilon in ("0.05", "0.01"):
            assert (run / f"eval-000000004000-nature-eps{epsilon}" / "report.json").is_file()
    assert done.stdout.count("scored (") == 2

    # Once scored, a seed is passed over: nothing trains or plays again.
    logs = {run: (runs / f"{run.name}.log").read_text() for run in (first, second)}
    again = run_queue(str(recipe), str(runs), "0", "1")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        f"seed 0: trained and scored before ({first})",
        f"seed 1: trained and scored before ({second})",
    ]
    assert {run: (runs / f"{run.name}.log").read_text() for run in (first, second)} == logs
