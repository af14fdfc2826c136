"""scripts/gpu-learning-runs.sh, the GPU learning runs' one command, tried on the CPU (DEVICE=cpu):
a real population stopped by its wall-clock limit, each seed's final evaluation, and the files it
keeps."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from helpers import ROOT

SCRIPT = ROOT / "scripts" / "gpu-learning-runs.sh"
# smoke.yaml takes pong.yaml's Baselines stacks, which ale-py's vector env (the script's backend)
# refuses; these are DeepMind's, as in pong-fast.yaml.
DEEPMIND_STACKS = [
    "env.frame_stack_padding=zeros",
    "env.frame_stack_restart_on_life_loss=false",
    "env.fire_on_life_loss=false",
]


def run_script(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, DEVICE="cpu", PYTHON=sys.executable, **env),
    )


def test_a_missing_config_is_refused_in_one_line(tmp_path):
    done = run_script("configs/no-such.yaml", str(tmp_path / "out"), "10", "0")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "gpu-learning-runs: no config file configs/no-such.yaml (e.g. configs/pong-nstep-dueling.yaml)"
    ]
    assert not (tmp_path / "out").exists()


def test_a_time_limit_that_is_not_a_number_is_refused(tmp_path):
    done = run_script("configs/smoke.yaml", str(tmp_path / "out"), "7m", "0")
    assert done.returncode == 2
    assert "TRAIN_SECONDS must be a whole number of seconds above 0, got '7m'" in done.stderr


def test_seeds_that_are_not_seeds_are_refused_before_anything_is_written(tmp_path):
    done = run_script("configs/smoke.yaml", str(tmp_path / "out"), "60", "0 to 2")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "gpu-learning-runs: SEEDS must be seeds such as \"0 1 2\", 0-2 or 0,1,2, got '0 to 2'"
    ]
    assert not (tmp_path / "out").exists()


@pytest.mark.e2e
def test_a_population_stopped_by_its_time_limit_is_checkpointed_scored_and_kept_per_seed(tmp_path):
    out = tmp_path / "out"
    done = run_script(
        "configs/smoke.yaml",
        str(out),
        "5",  # seconds of learning: the limit counts from the first logged update
        "3 4",
        *DEEPMIND_STACKS,
        "train.total_frames=4000000",
        "train.learning_starts_steps=200",
        "train.batch_size=8",
        "log.every_steps=100",
        EVAL_EPISODES="1",
        EVAL_SECONDS="150",
    )
    assert done.returncode == 0, done.stderr
    for seed in (3, 4):
        kept = out / f"smoke-s{seed}"
        # stopped by the limit (SIGTERM: checkpoint, exit 75), not by the 4M-frame budget
        assert "exit 75" in (kept / "wall-clock.txt").read_text()
        assert list((out / "runs" / "smoke" / f"s{seed}" / "checkpoints").glob("ckpt-*"))
        config = yaml.safe_load((kept / "config.yaml").read_text())
        assert config["seed"] == seed
        assert (config["env"]["backend"], config["env"]["num_envs"]) == ("ale_vector", 8)
        assert config["train"]["cuda_graph"] and config["replay"]["frames_on_device"]
        assert "train/loss" in (kept / "metrics.csv").read_text()  # it learned, not only acted
        report = json.loads((kept / "evaluation.json").read_text())
        assert report["summary"]["episodes"] == 1
        assert report["protocol"]["epsilon"] == 0.05
        assert report["checkpoint"]["path"].startswith("checkpoints/")  # this seed's own checkpoint
    # one process trained both seeds: one group file naming them
    group = json.loads((out / "runs" / "smoke" / "group.json").read_text())
    assert [m["seed"] for m in group["members"]] == [3, 4]
    assert done.stdout.count("final evaluation (1 games, epsilon 0.05): mean") == 2


def test_a_run_that_cannot_start_fails_the_script_with_its_reason_in_the_log(tmp_path):
    # smoke.yaml's own (Baselines) stacks: ale-py's vector env refuses them at start-up
    done = run_script("configs/smoke.yaml", str(tmp_path / "out"), "30", "0")
    assert done.returncode == 1
    assert "gpu-learning-runs: the run or an evaluation failed" in done.stderr
    log = (tmp_path / "out" / "smoke.log").read_text()
    assert "supports DeepMind's stacks only" in log
    assert "exit 2" in (tmp_path / "out" / "smoke-s0" / "wall-clock.txt").read_text()
    assert not (tmp_path / "out" / "smoke-s0" / "evaluation.json").exists()
