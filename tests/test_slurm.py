"""SLURM sweeps on a real one-node cluster (slurm/local-cluster/up.sh: Debian's slurmctld, slurmd
and munge on loopback), with a real preemption signal and requeue."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CONFIGS, ROOT, run_cli

from dqn_atari.slurm import Resources, render_script

CLUSTER = ROOT / "slurm" / "local-cluster"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.environ.get("DQN_ATARI_NO_SLURM") == "1":
        pytest.skip("DQN_ATARI_NO_SLURM=1: no local SLURM cluster on this machine")
    state = tmp_path_factory.mktemp("slurm")
    up = subprocess.run(["bash", str(CLUSTER / "up.sh"), str(state)], capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, f"could not start the local SLURM cluster: {up.stderr}"
    conf = up.stdout.strip().split("=", 1)[1]
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf  # for the CLI children and their sbatch/squeue/scontrol
    yield state
    subprocess.run(["bash", str(CLUSTER / "down.sh"), str(state)], capture_output=True, timeout=120)
    if previous is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = previous


def submit(sweep: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli(
        "submit",
        str(CONFIGS / "smoke.yaml"),
        "--time",
        "00:10:00",
        "--cpus",
        "1",
        "--mem",
        "2G",
        "--sweep-dir",
        str(sweep),
        *extra,
    )


def status_rows(sweep: Path) -> list[list[str]]:
    result = run_cli("status", str(sweep))
    assert result.returncode == 0, result.stderr
    return [line.split() for line in result.stdout.strip().splitlines()[1:]]


def wait_for(sweep: Path, predicate, timeout: float = 240) -> list[list[str]]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = status_rows(sweep)
        if predicate(rows):
            return rows
        time.sleep(1)
    raise AssertionError(
        f"sweep {sweep} did not get there in {timeout} s: {rows}; logs: "
        + " | ".join(p.read_text()[-500:] for p in (sweep / "logs").glob("*"))
    )


@pytest.mark.slurm
def test_sweep_runs_every_task_to_its_budget(cluster, tmp_path):
    sweep = tmp_path / "sweep"
    result = submit(sweep, "--games", "Pong", "Breakout", "--seeds", "0", "train.total_frames=1200")
    assert result.returncode == 0, result.stderr
    assert "submitted job array" in result.stdout and f"dqn-atari status {sweep}" in result.stdout
    manifest = json.loads((sweep / "sweep.json").read_text())
    assert [(t["index"], t["game"], t["seed"]) for t in manifest["tasks"]] == [(0, "Pong", 0), (1, "Breakout", 0)]
    rows = wait_for(sweep, lambda rows: all(r[3] == "COMPLETED" for r in rows))
    assert [r[1] for r in rows] == ["Pong", "Breakout"]
    assert all(r[4] == "1,200/1,200" for r in rows)
    for task in manifest["tasks"]:
        assert (Path(task["run_dir"]) / "metrics.csv").is_file()
        assert (Path(task["run_dir"]) / "checkpoints").is_dir()


@pytest.mark.slurm
@pytest.mark.e2e
def test_warning_signal_checkpoints_requeues_and_the_task_resumes(cluster, tmp_path):
    sweep = tmp_path / "sweep"
    result = submit(sweep, "--seeds", "3", "--cpus", "2", "train.total_frames=4000", "log.every_steps=100")
    assert result.returncode == 0, result.stderr
    job_id = json.loads((sweep / "sweep.json").read_text())["job_id"]
    log = lambda: "".join(p.read_text() for p in (sweep / "logs").glob("*"))  # noqa: E731
    deadline = time.time() + 120
    while "frames=" not in log():  # training is under way
        assert time.time() < deadline, log()
        time.sleep(0.3)
    # What a cluster sends before a time limit (#SBATCH --signal=B:USR1@...), sent now.
    subprocess.run(["scancel", "--signal=USR1", "--batch", f"{job_id}_0"], check=True)
    rows = wait_for(sweep, lambda rows: rows[0][3] == "COMPLETED")
    assert rows[0][4] == "4,000/4,000" and rows[0][6] == "1"  # one restart
    text = log()
    assert "checkpoint written; requeueing" in text
    assert "restart 1" in text and "resumed from" in text
    run = Path(json.loads((sweep / "sweep.json").read_text())["tasks"][0]["run_dir"])
    from dqn_atari.metrics import read_csv

    metrics = read_csv(run / "metrics.csv")
    assert metrics["slurm/restart_count"][-1][1] == 1.0
    points = [f for f, _ in metrics["train/epsilon"]]
    assert points == sorted(set(points))  # the resumed run continued the log without repeats


@pytest.mark.slurm
def test_sbatch_failure_is_shown_and_leaves_no_sweep(cluster, tmp_path):
    sweep = tmp_path / "sweep"
    result = submit(sweep, "--partition", "nosuchpartition")
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("dqn-atari: error: sbatch failed:") and "partition" in line.lower()
    assert not sweep.exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--time", "25:99:99x"], "--time '25:99:99x' is not a SLURM time"),
        (["--games", "Pongg"], "unknown game 'Pongg'; closest: Pong"),
        (["--seeds", "5-3"], "the range 5-3 is empty"),
        (["--seeds", ""], "is not a seed list"),
        (["--partition", "gpu;rm -rf ~"], "--partition 'gpu;rm -rf ~' may hold only"),
        (["--account", "a'b"], "may hold only letters"),
        (["--qos", "x\ny"], "may hold only letters"),
        (["--mem", "lots"], "--mem 'lots' is not a SLURM memory size"),
        (["replay.capacty=5"], "did you mean 'replay.capacity'?"),
    ],
)
def test_bad_input_is_rejected_before_anything_is_written(tmp_path, args, message):
    sweep = tmp_path / "sweep"
    result = submit(sweep, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not sweep.exists()


def test_dry_run_prints_the_script_and_writes_nothing(tmp_path):
    sweep = tmp_path / "sweep"
    result = submit(
        sweep, "--games", "Pong", "Breakout", "--seeds", "0-2", "--max-parallel", "2", "--gpus", "1", "--dry-run"
    )
    assert result.returncode == 0, result.stderr
    assert "#SBATCH --array=0-5%2" in result.stdout and "#SBATCH --gres=gpu:1" in result.stdout
    assert "#SBATCH --requeue" in result.stdout and "#SBATCH --signal=B:USR1@120" in result.stdout
    assert "task 5: Breakout seed 2" in result.stdout
    assert not sweep.exists()


def test_rendered_script_quotes_shell_values_and_parses(tmp_path):
    script = render_script(
        tmp_path / "sw", "dqn-x", 3, Resources(partition="gpu", qos="high"), python="/opt/my env/python"
    )
    assert "'/opt/my env/python' -m dqn_atari train" in script
    assert "#SBATCH --partition=gpu" in script and "#SBATCH --qos=high" in script
    assert "##SBATCH --account=" in script  # not asked for: stays a comment
    path = tmp_path / "job.sbatch"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


def test_status_of_a_directory_that_is_no_sweep(tmp_path):
    result = run_cli("status", str(tmp_path))
    assert result.returncode == 2 and "is not a sweep directory" in result.stderr
