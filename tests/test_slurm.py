"""SLURM sweeps on a real one-node cluster (slurm/local-cluster/up.sh: Debian's slurmctld, slurmd
and munge on loopback), with a real preemption signal and requeue."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import CONFIGS, ROOT, run_cli

from dqn_atari.slurm import Resources, render_script

CLUSTER = ROOT / "slurm" / "local-cluster"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.environ.get("DQN_ATARI_NO_SLURM") == "1":
        pytest.skip("DQN_ATARI_NO_SLURM=1: no local SLURM cluster on this machine")
    if not all(shutil.which(c) for c in ("slurmctld", "slurmd", "sbatch", "munged")):
        pytest.skip("SLURM is not installed: `bash scripts/setup.sh --with-slurm` installs it (root, apt)")
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
    *tasks, sources = result.stdout.strip().splitlines()[1:]
    assert sources.startswith("states from: squeue and scontrol"), sources
    return [line.split() for line in tasks]


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
    """Two games, three seeds, two seeds per task: per game a task training seeds 0 and 1 in one
    process (a population) and a task training seed 2; `status` shows each seed."""
    sweep = tmp_path / "sweep"
    args = ["--games", "Pong", "Breakout", "--seeds", "0-2", "--seeds-per-task", "2", "train.total_frames=1200"]
    result = submit(sweep, *args)
    assert result.returncode == 0, result.stderr
    assert "submitted job array" in result.stdout and f"dqn-atari status {sweep}" in result.stdout
    manifest = json.loads((sweep / "sweep.json").read_text())
    planned = [(t["index"], t["game"], t["seeds"]) for t in manifest["tasks"]]
    assert planned == [(0, "Pong", [0, 1]), (1, "Pong", [2]), (2, "Breakout", [0, 1]), (3, "Breakout", [2])]
    rows = wait_for(sweep, lambda rows: all(r[3] == "COMPLETED" for r in rows))
    assert [(r[0].split("_")[1], r[1], r[2]) for r in rows] == [
        ("0", "Pong", "0"),
        ("0", "Pong", "1"),
        ("1", "Pong", "2"),
        ("2", "Breakout", "0"),
        ("2", "Breakout", "1"),
        ("3", "Breakout", "2"),
    ]
    assert all(r[4] == "1,200/1,200" for r in rows)
    for task in manifest["tasks"]:
        for member in task["members"]:
            assert (Path(member["run_dir"]) / "metrics.csv").is_file()
            assert (Path(member["run_dir"]) / "checkpoints").is_dir()


@pytest.mark.slurm
@pytest.mark.e2e
def test_a_warning_during_an_evaluation_requeues_the_task_and_the_evaluation_is_played_after(cluster, tmp_path):
    """The time-limit warning (what `#SBATCH --signal=B:USR1@...` sends), here in the middle of an
    in-training evaluation: the task checkpoints within seconds, requeues itself, resumes, plays
    the evaluation it owed, continues its logs and completes."""
    sweep = tmp_path / "sweep"
    evaluating = ["eval.every_frames=1000", "eval.episodes=8", "eval.max_episode_frames=18000"]
    # A site's set-up as conda's activation writes it: it reads unset variables and turns on
    # errexit, and a careless one replaces the script's trap; none of it may reach the requeue.
    setup = 'set -e\n: "${CONDA_SHLVL_NOT_SET}"\ntrap - USR1 TERM'
    result = submit(sweep, "--seeds", "3", "--cpus", "2", "--setup", setup, "train.total_frames=2000", *evaluating)
    assert result.returncode == 0, result.stderr
    log = lambda: task_log(sweep, 0)  # noqa: E731
    deadline = time.time() + 180
    while "evaluating 8 games at 1,000 frames" not in log():
        assert time.time() < deadline, log()
        time.sleep(0.2)
    subprocess.run(["scancel", "--signal=USR1", "--batch", f"{job_of(sweep)}_0"], check=True)
    rows = wait_for(sweep, lambda rows: rows[0][3] == "COMPLETED")
    assert rows[0][4] == "2,000/2,000" and rows[0][6] == "1"  # one restart
    text = log()
    assert "checkpoint written; requeueing" in text
    before, after = text.split("resumed from", 1)
    assert "evaluation at 1,000 frames: mean" not in before  # abandoned at the warning...
    assert "evaluation at 1,000 frames: mean" in after  # ...and played by the resumed run
    run = Path(json.loads((sweep / "sweep.json").read_text())["tasks"][0]["run_dir"])
    from dqn_atari.metrics import read_csv

    metrics = read_csv(run / "metrics.csv")
    assert metrics["slurm/restart_count"][-1][1] == 1.0
    points = [f for f, _ in metrics["train/epsilon"]]
    assert points == sorted(set(points))  # the resumed run continued the log without repeats


@pytest.mark.slurm
def test_sbatch_variables_in_the_environment_do_not_change_what_the_script_sets(cluster, tmp_path):
    """A shell with SBATCH_TIMELIMIT, SBATCH_NO_REQUEUE and SBATCH_ARRAY_INX left over: the job
    keeps the script's limit, requeue and tasks, and submit says what it left out."""
    sweep = tmp_path / "sweep"
    blocker = held_job()
    leftovers = {"SBATCH_TIMELIMIT": "1-00:00:00", "SBATCH_NO_REQUEUE": "1", "SBATCH_ARRAY_INX": "0-3"}
    result = subprocess.run(
        [sys.executable, "-m", "dqn_atari", "submit", str(CONFIGS / "smoke.yaml"), "--time", "00:10:00"]
        + ["--cpus", "1", "--mem", "1G", "--sweep-dir", str(sweep), "--dependency", f"afterok:{blocker}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **leftovers},
    )
    try:
        assert result.returncode == 0, result.stderr
        for name in leftovers:
            assert f"{name} from the environment left out" in result.stderr
        shown = subprocess.run(["scontrol", "show", "job", "-o", job_of(sweep)], capture_output=True, text=True)
        lines = shown.stdout.strip().splitlines()
        assert len(lines) == 1  # one task, not four
        assert "TimeLimit=00:10:00" in lines[0] and "Requeue=1" in lines[0], lines[0]
    finally:
        subprocess.run(["scancel", job_of(sweep), blocker])


@pytest.mark.slurm
def test_a_failing_set_up_stops_the_task_before_training(cluster, tmp_path):
    sweep = tmp_path / "sweep"
    missing_module = "module_load_of_a_missing_module cuda/99"
    result = submit(sweep, "--seeds", "0", "--setup", missing_module, "train.total_frames=400")
    assert result.returncode == 0, result.stderr
    rows = wait_for(sweep, lambda rows: rows[0][3] not in ("PENDING", "RUNNING"))
    assert rows[0][3] == "FAILED"
    text = task_log(sweep, 0)
    assert "the set-up (--setup) failed with exit status 127" in text, text
    assert "run directory:" not in text  # training never started


def job_of(sweep: Path) -> str:
    return json.loads((sweep / "sweep.json").read_text())["job_id"]


def task_log(sweep: Path, index: int) -> str:
    return "".join(p.read_text() for p in (sweep / "logs").glob(f"*_{index}.out"))


def held_job() -> str:
    """A job that waits until released: the sweep's --dependency holds it back meanwhile."""
    return subprocess.run(
        ["sbatch", "--parsable", "--hold", "--wrap", "true", "-o", "/dev/null"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.mark.slurm
@pytest.mark.e2e
def test_one_warned_task_requeues_alone_and_scancel_cancels_for_good(cluster, tmp_path):
    """Three tasks: 0 completes, 1 and 2 run; 2 holds the array's own job id. The time-limit
    warning to 2 requeues 2 only; an admin's requeue of 1 brings 1 back, resumed; a plain
    scancel of 1, then of the whole array, cancels them for good, each after a checkpoint."""
    sweep = tmp_path / "sweep"
    blocker = held_job()
    result = submit(
        sweep,
        "--seeds",
        "0-2",
        "--dependency",
        f"afterany:{blocker}",
        "--setup",
        'echo "site setup ran: $(hostname)"',
        "--sbatch=--comment=dqn-test",
        "train.total_frames=400000",
        "log.every_steps=100",
        "train.torch_threads=0",  # torch's threads follow the allocation (--cpus 1), not the 2 cores
    )
    assert result.returncode == 0, result.stderr
    tasks_dir = sweep / "tasks"
    (tasks_dir / "0.yaml").write_text((tasks_dir / "0.yaml").read_text().replace("400000", "1200"))
    rows = status_rows(sweep)
    assert [r[3] for r in rows] == ["PENDING"] * 3 and rows[0][-1] == "Dependency"  # the reason is shown
    subprocess.run(["scontrol", "release", blocker], check=True)
    job = job_of(sweep)
    wait_for(sweep, lambda rows: rows[0][3] == "COMPLETED" and rows[1][3] == rows[2][3] == "RUNNING")
    master = subprocess.run(["scontrol", "show", "job", "-o", f"{job}_2"], capture_output=True, text=True).stdout
    assert f"JobId={job} " in master  # task 2 is the one that holds the array's id
    deadline = time.time() + 120
    while "frames=" not in task_log(sweep, 2):
        assert time.time() < deadline, task_log(sweep, 2)
        time.sleep(0.3)

    subprocess.run(["scancel", "--signal=USR1", "--batch", f"{job}_2"], check=True)
    rows = wait_for(sweep, lambda rows: rows[2][3] == "RUNNING" and "resumed from" in task_log(sweep, 2))
    assert f"requeueing task {job}_2" in task_log(sweep, 2)
    assert rows[0][3] == "COMPLETED" and task_log(sweep, 0).count("restart ") == 1  # not run again
    assert rows[1][3] == "RUNNING" and task_log(sweep, 1).count("restart ") == 1 and rows[1][6] == "0"
    assert "site setup ran" in task_log(sweep, 2) and "torch threads 1" in task_log(sweep, 2)

    # An admin's requeue: SLURM stops the task with TERM and queues it again itself.
    subprocess.run(["scontrol", "requeue", f"{job}_1"], check=True)
    wait_for(sweep, lambda rows: rows[1][3] == "RUNNING" and "resumed from" in task_log(sweep, 1))
    assert f"(SLURM requeues task {job}_1: scontrol requeue or preemption): checkpoint written; it resumes" in (
        task_log(sweep, 1)
    )
    assert "not requeued" not in task_log(sweep, 1)

    subprocess.run(["scancel", f"{job}_1"], check=True)
    wait_for(sweep, lambda rows: rows[1][3] == "CANCELLED")
    subprocess.run(["scancel", job], check=True)
    wait_for(sweep, lambda rows: rows[2][3] == "CANCELLED")
    time.sleep(15)  # long enough for a requeued task to be back (about 10 s here)
    rows = status_rows(sweep)
    assert [r[3] for r in rows] == ["COMPLETED", "CANCELLED", "CANCELLED"]
    for index in (1, 2):
        text = task_log(sweep, index)
        assert "stopped by SIGTERM (scancel or preemption): checkpoint written; not requeued" in text
        run_dir = Path(json.loads((sweep / "sweep.json").read_text())["tasks"][index]["run_dir"])
        assert (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").glob("ckpt-*"))


@pytest.mark.slurm
def test_a_warning_during_the_set_up_requeues_the_task_with_a_log_line(cluster, tmp_path):
    """The time-limit warning arrives while the site's set-up runs, before the trainer exists:
    the script does not start training, says so, and requeues the task, which then runs."""
    sweep = tmp_path / "sweep"
    result = submit(sweep, "--seeds", "0", "--setup", "sleep 8", "train.total_frames=800")
    assert result.returncode == 0, result.stderr
    job = job_of(sweep)
    deadline = time.time() + 120
    while "task " not in task_log(sweep, 0):  # the script runs its set-up; no trainer yet
        assert time.time() < deadline, task_log(sweep, 0)
        time.sleep(0.1)
    subprocess.run(["scancel", "--signal=USR1", "--batch", f"{job}_0"], check=True)
    rows = wait_for(sweep, lambda rows: rows[0][3] == "COMPLETED")
    text = task_log(sweep, 0)
    assert (
        f"time-limit warning: training had not started; the run's last checkpoint stands; requeueing task {job}_0"
        in text
    ), text
    assert "restart 1" in text and rows[0][4] == "800/800" and rows[0][6] == "1"


@pytest.mark.slurm
def test_a_cancelled_pending_array_reads_cancelled_in_the_completion_file(cluster, tmp_path):
    from dqn_atari.slurm import WHOLE_ARRAY, _completion_records

    sweep = tmp_path / "sweep"
    blocker = held_job()
    assert submit(sweep, "--seeds", "0-1", "--dependency", f"afterok:{blocker}").returncode == 0
    subprocess.run(["scancel", job_of(sweep)], check=True)
    subprocess.run(["scancel", blocker], check=True)
    assert [r[3] for r in wait_for(sweep, lambda rows: rows[0][3] != "PENDING")] == ["CANCELLED"] * 2
    # once the controller forgets the job (minutes later), the completion file still says so:
    found = _completion_records(job_of(sweep))
    assert found is not None and found[0][WHOLE_ARRAY] == "CANCELLED"


@pytest.mark.slurm
def test_a_task_no_node_can_run_is_refused_at_submit(cluster, tmp_path):
    for args, message in ((["--cpus", "64"], "--cpus 64 --mem 2G"), (["--mem", "100000G"], "--mem 100000G")):
        result = submit(tmp_path / "sweep", *args)
        assert result.returncode == 2, result.stderr
        assert "no node of this cluster can run a task with" in result.stderr and message in result.stderr
        assert not (tmp_path / "sweep").exists()


@pytest.mark.slurm
def test_status_says_so_in_one_line_when_the_controller_is_down(cluster, tmp_path):
    sweep = tmp_path / "sweep"
    assert submit(sweep, "--seeds", "0", "train.total_frames=400").returncode == 0
    pid = int((cluster / "slurmctld.pid").read_text())
    os.kill(pid, 15)
    try:
        deadline = time.time() + 30
        while subprocess.run(["scontrol", "ping"], capture_output=True, text=True).stdout.count(" is UP"):
            assert time.time() < deadline
            time.sleep(0.5)
        started = time.time()
        result = run_cli("status", str(sweep))
        assert result.returncode == 1 and time.time() - started < 30
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "the SLURM controller cannot be reached" in lines[0], result.stderr
    finally:
        subprocess.run(["slurmctld"], check=True)  # back, with its saved state
        deadline = time.time() + 30
        while " is UP" not in subprocess.run(["scontrol", "ping"], capture_output=True, text=True).stdout:
            assert time.time() < deadline
            time.sleep(0.5)


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
        (["--games", "Pong", "pong"], "--games names Pong twice"),
        (["--time", "00:02:00"], "--signal-seconds 120 is not well inside --time 00:02:00"),
        (["--dependency", "after ok:1"], "is not a SLURM dependency"),
        (["--sbatch=--comment=a b"], "is not one sbatch option"),
        (["--sbatch=#SBATCH"], "is not one sbatch option"),
        (["--job-name", "a/b"], "--job-name 'a/b' may hold only"),
        (["--profile", "nosuchprofile"], "no slurm/profiles/nosuchprofile.yaml"),
        (["--profile", "/nowhere/site.yaml"], "--profile /nowhere/site.yaml: no such file"),
        (["--sbatch=--array=0-2"], "sets --array, which the job script manages; use --games and --seeds"),
        (["--sbatch=--time=1-00:00:00"], "sets --time, which the job script manages; use --time instead"),
        (["--sbatch=--cpus-per-task=999"], "use --cpus instead"),
        (["--setup", "fi"], "--setup is not valid bash"),
        (["--time", "99:99:99"], "99 minutes is out of range (below 60)"),
        (["--time", "0"], "means no time limit"),
        (["--seeds", "0-100000"], "the sweep has 100,001 tasks but this cluster takes job arrays of at most"),
        (["--games", "Pong", "env.game=Breakout"], "--games and an env.game= override both name the game"),
        (["--seeds-per-task", "0"], "--seeds-per-task must be at least 1"),
        # sbatch takes any unambiguous prefix of a long option
        (["--sbatch=--arr=0-2"], "sets --array (abbreviated --arr), which the job script manages"),
        (["--sbatch=--cpus-per-t=999"], "sets --cpus-per-task (abbreviated --cpus-per-t)"),
        (["--gpus", "a100:x"], "--gpus 'a100:x' is not a GPU request"),
        (["--gpus", "1", "--sbatch=--gres=gpu:a100:1"], "asks for GPUs and so does --gpus 1"),
        (["--time", "99999999999999999999"], "longer than a year"),
        (["--seeds", "0-99999999999"], "gives 100,000,000,000 seeds; at most 1,000,000"),
        (["seed=3"], "the override 'seed=3' would be lost: submit gives each task its seed"),
        (["run_dir=/tmp/elsewhere"], "the override 'run_dir=/tmp/elsewhere' would be lost"),
        (["--setup", "cat <<EOF\nnever ended"], "--setup is not valid bash"),
    ],
)
def test_bad_input_is_rejected_before_anything_is_written(tmp_path, args, message):
    sweep = tmp_path / "sweep"
    started = time.monotonic()
    result = submit(sweep, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not sweep.exists()
    assert time.monotonic() - started < 60  # refused at once, not after planning 100,001 tasks


@pytest.mark.slurm
def test_unusable_sweep_directories_are_refused_in_one_line(cluster, tmp_path):
    """A file, and a place nothing can be written (/proc refuses even root)."""
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for where, message in ((a_file, "is a file"), (Path("/proc/dqn-sweep"), "cannot be written")):
        result = run_cli("submit", str(CONFIGS / "smoke.yaml"), "--cpus", "1", "--mem", "1G", "--sweep-dir", str(where))
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr


def test_a_profile_reads_an_unquoted_time_as_the_time_it_means(tmp_path):
    from dqn_atari.slurm import load_profile

    profile = tmp_path / "site.yaml"
    profile.write_text("time: 2:00:00\ncpus: 8\nmem: 16G\n")
    assert load_profile(str(profile)) == {"time": "2:00:00", "cpus": 8, "mem": "16G"}


def test_typed_gpus_are_asked_for_as_slurm_writes_them(tmp_path):
    typed = submit(tmp_path / "sweep", "--gpus", "a100:2", "--dry-run")
    assert typed.returncode == 0, typed.stderr
    assert "#SBATCH --gres=gpu:a100:2" in typed.stdout
    gres = submit(tmp_path / "sweep", "--sbatch=--gres=gpu:a100:1", "--dry-run")
    assert gres.returncode == 0, gres.stderr
    assert "#SBATCH --gres=gpu:a100:1" in gres.stdout and "##SBATCH --gres=gpu: (not set)" in gres.stdout
    profile = tmp_path / "site.yaml"
    profile.write_text("gpus: a100:1\nmem: 4000\n")  # a count as text, a size as a YAML integer
    result = submit(tmp_path / "sweep", "--profile", str(profile), "--mem", "1G", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "#SBATCH --gres=gpu:a100:1" in result.stdout


def test_seeds_are_given_one_way_to_train(tmp_path):
    result = run_cli("train", str(CONFIGS / "smoke.yaml"), "--seeds", "0-1", "seed=3", f"run_dir={tmp_path / 'r'}")
    assert result.returncode == 2 and "--seeds and the override 'seed=3' both give seeds" in result.stderr
    result = run_cli("train", str(CONFIGS / "smoke.yaml"), "--seeds", "", f"run_dir={tmp_path / 'r'}")
    assert result.returncode == 2 and "is not a seed list" in result.stderr
    assert not (tmp_path / "r").exists()


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


def test_a_profile_sets_setup_and_extra_lines_and_the_command_line_wins(tmp_path):
    profile = tmp_path / "site.yaml"
    profile.write_text(
        "partition: gpu\ngpus: 1\ncpus: 8\nsetup: |\n  module load cuda/12.4\n  source $HOME/venv/bin/activate\n"
        "sbatch:\n  - --constraint=a100\n  - --mail-type=END\n"
    )
    result = submit(tmp_path / "sweep", "--profile", str(profile), "--gpus", "2", "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "#SBATCH --partition=gpu" in out and "#SBATCH --gres=gpu:2" in out  # --gpus 2 beats the profile
    assert "#SBATCH --cpus-per-task=1" in out  # the test's own --cpus 1 beats the profile's 8
    assert "#SBATCH --constraint=a100\n#SBATCH --mail-type=END" in out
    assert "module load cuda/12.4\nsource $HOME/venv/bin/activate" in out
    assert "#SBATCH --job-name=sweep" in out
    (tmp_path / "bad.yaml").write_text("gpu: 1\n")
    result = submit(tmp_path / "sweep", "--profile", str(tmp_path / "bad.yaml"))
    assert result.returncode == 2 and "unknown key 'gpu'" in result.stderr


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
