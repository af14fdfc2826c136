"""Checkpoints and exact resume, with real processes killed for real (SIGKILL, signals, a crash
hook inside a checkpoint write), on real Pong."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    BASE,
    CONFIGS,
    ON_CUDA,
    ROOT,
    assert_same_final_state,
    checkpoints,
    metric_points,
    metric_values,
    resume,
    train,
)

# Rainbow's pieces on the smoke run: the sum tree, beta's position and the noise must all resume.
RAINBOW = [
    "network.dueling=true",
    "network.noisy=true",
    "replay.n_step=3",
    "replay.prioritized=true",
    "agent.double_dqn=true",
    "agent.value_head=c51",
    "agent.epsilon_start=0",
    "agent.epsilon_end=0",
    "optimizer.lr=6.25e-5",
    "optimizer.eps=1.5e-4",
]


@pytest.mark.e2e
@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([], id="dqn"),
        pytest.param(RAINBOW, id="rainbow"),
        # The quantile heads: IQN draws its fractions from each seed's generator, which must resume.
        pytest.param(["agent.value_head=qr_dqn", "agent.quantiles=32"], id="qr-dqn"),
        pytest.param(
            [
                "agent.value_head=iqn",
                "agent.iqn_tau_samples=8",
                "agent.iqn_tau_prime_samples=8",
                "agent.iqn_policy_samples=8",
            ],
            id="iqn",
        ),
        # Frames in a torch tensor (the store a GPU run keeps on the device), here on the CPU.
        pytest.param(["replay.frames_on_device=true"], id="dqn-frames-in-a-torch-tensor"),
        # On a GPU: frames kept there, and host frames through pinned memory with noisy layers
        # drawing from the CUDA generator (its state must come back with the checkpoint).
        pytest.param(["train.device=cuda", "replay.frames_on_device=true"], id="dqn-cuda-frames-on-gpu", marks=ON_CUDA),
        pytest.param([*RAINBOW, "train.device=cuda"], id="rainbow-cuda", marks=ON_CUDA),
        # The update replayed as a CUDA graph: the resumed run warms up and captures afresh.
        pytest.param([*RAINBOW, "train.device=cuda", "train.cuda_graph=true"], id="rainbow-cuda-graph", marks=ON_CUDA),
    ],
)
def test_killed_and_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path, trained_run, extra):
    if extra:
        straight = tmp_path / "straight"
        assert train(straight, *extra).returncode == 0
    else:  # BASE's own run, trained once for the suite
        straight = trained_run

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dqn_atari", "train", *BASE, f"run_dir={killed}", *extra],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 900  # generous: a loaded machine can be several times slower
    while len(checkpoints(killed)) < 2 or int(checkpoints(killed)[-1].name.split("-")[1]) < 2000:
        assert proc.poll() is None and time.time() < deadline, "run ended before it could be killed"
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 0.5))  # somewhere after a few checkpoints
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    result = resume(killed)
    assert result.returncode == 0, result.stderr
    assert "resumed from" in result.stdout
    assert_same_final_state(straight, killed)
    # Logs continue: each logging point once, the same points as the uninterrupted run, and the
    # same values, the interval the checkpoint fell into included (its running sums resume).
    assert metric_points(killed, "train/epsilon") == metric_points(straight, "train/epsilon")
    for tag in ("train/loss", "train/q_mean"):
        assert metric_values(killed, tag) == metric_values(straight, tag), tag


@pytest.mark.e2e
def test_sigusr1_checkpoints_exits_75_and_the_run_resumes(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dqn_atari", "train", *BASE, f"run_dir={run}", "checkpoint.every_frames=0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    progress_lines = 0
    while progress_lines < 3:  # the run's own progress lines: 300 steps done
        line = proc.stdout.readline()
        assert line, "run ended before the signal"
        progress_lines += "frames=" in line
    os.kill(proc.pid, signal.SIGUSR1)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    assert "resume with: dqn-atari train --resume" in out
    (saved,) = checkpoints(run)  # every_frames=0: the only checkpoint is the signal's
    frames = int(saved.name.split("-")[1])
    assert 0 < frames < 4000
    result = resume(run)
    assert result.returncode == 0, result.stderr
    assert f"at frame {frames:,}" in result.stdout
    assert "done: 4,000 frames" in result.stdout


@pytest.mark.e2e
def test_a_stop_signal_during_an_evaluation_is_honoured_at_once_and_the_resumed_run_plays_it(tmp_path):
    """SLURM's time-limit warning can land in an in-training evaluation (minutes of games): the
    games are abandoned at their next step, the checkpoint owes the evaluation, and the resumed
    run plays it first, on the same games, ending where an uninterrupted run ends."""
    evaluating = [
        "train.total_frames=2000",
        "eval.every_frames=1000",
        "eval.episodes=8",
        "eval.max_episode_frames=18000",
    ]
    straight = tmp_path / "straight"
    assert train(straight, *evaluating).returncode == 0

    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dqn_atari", "train", *BASE, f"run_dir={run}", *evaluating],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    while "evaluating 8 games at 1,000 frames" not in (line := proc.stdout.readline()):
        assert line, "run ended before its first evaluation"
    os.kill(proc.pid, signal.SIGUSR1)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    assert "evaluation at 1,000 frames: mean" not in out  # abandoned, not finished first
    saved = checkpoints(run)[-1]
    assert saved.name == "ckpt-000000001000"
    assert json.loads((saved / "state.json").read_text())["evaluation_due"] is True

    result = resume(run)
    assert result.returncode == 0, result.stderr
    assert "evaluation at 1,000 frames: mean" in result.stdout
    assert_same_final_state(straight, run)
    assert metric_values(run, "eval/return_mean") == metric_values(straight, "eval/return_mean")
    assert len(metric_values(run, "eval/return_mean")) == 2  # at 1,000 and 2,000 frames


@pytest.mark.e2e
def test_a_kill_while_old_checkpoints_are_deleted_leaves_only_whole_checkpoints(tmp_path):
    run = tmp_path / "run"
    killed = train(run, "train.total_frames=3000", env={"DQN_ATARI_CRASH_AT": "pruning"})
    assert killed.returncode == 137  # inside the prune after the 3,000-frame checkpoint
    assert [p.name for p in checkpoints(run)] == ["ckpt-000000002000", "ckpt-000000003000"]
    assert (run / "checkpoints" / ".deleting-ckpt-000000001000").is_dir()
    result = resume(run, "train.total_frames=4000")
    assert result.returncode == 0, result.stderr
    assert "at frame 3,000" in result.stdout
    assert not list((run / "checkpoints").glob(".deleting-*"))  # removed by the next prune


@pytest.mark.e2e
def test_a_population_killed_inside_its_first_checkpoint_starts_again(tmp_path):
    """Seed 0 wrote its first checkpoint, seed 1 was killed writing its own: the group has no
    common checkpoint, so the same command (a SLURM requeue) starts it again from frame 0."""
    group = tmp_path / "group"
    command = [sys.executable, "-m", "dqn_atari", "train", *BASE, f"run_dir={group}", "--seeds", "0-1"]
    command.append("train.total_frames=2000")
    crashed = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "DQN_ATARI_CRASH_AT": "before_rename:2"}
    )
    assert crashed.returncode == 137, crashed.stderr
    assert [p.name for p in checkpoints(group / "s0")] == ["ckpt-000000001000"] and not checkpoints(group / "s1")
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "first checkpoint was not completed by every seed: starting again" in again.stderr
    for seed in ("s0", "s1"):
        assert checkpoints(group / seed)[-1].name == "ckpt-000000002000"
    assert (group / "s0" / "checkpoints" / "ahead-ckpt-000000001000").is_dir()


@pytest.mark.e2e
def test_crash_during_a_checkpoint_write_leaves_the_previous_one_usable(run_copy):
    """A crash after the model, after the replay, and just before the rename, each while writing
    the 5,000-frame checkpoint of a run whose newest is 4,000: each time the half-written one
    never gets a checkpoint's name and the next run resumes from 4,000."""
    run = run_copy
    good = checkpoints(run)[-1]
    assert good.name == "ckpt-000000004000"
    for stage in ("model", "replay", "before_rename"):
        crashed = resume(run, "train.total_frames=5000", env={"DQN_ATARI_CRASH_AT": stage})
        assert crashed.returncode == 137, (stage, crashed.stderr)
        assert "at frame 4,000" in crashed.stdout
        assert checkpoints(run)[-1] == good, stage
    result = resume(run, "train.total_frames=5000")
    assert result.returncode == 0, result.stderr
    assert "at frame 4,000" in result.stdout
    assert checkpoints(run)[-1].name == "ckpt-000000005000"
    assert not list((run / "checkpoints").glob(".tmp-*"))


@pytest.mark.e2e
def test_resume_refuses_a_checkpoint_of_another_game(tmp_path):
    run = tmp_path / "run"
    assert train(run, "train.total_frames=1000").returncode == 0
    result = train(run, "env.game=Breakout")
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert "env.game is 'Pong' in the checkpoint but 'Breakout' now" in line
    assert "Traceback" not in result.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("damaged", ["model.pt", "replay/frames_0_0.npy"])
def test_a_truncated_latest_checkpoint_is_reported_and_the_previous_one_used(run_copy, damaged):
    run = run_copy
    older, newest = checkpoints(run)[-2:]
    target = newest / damaged
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    result = resume(run)
    assert result.returncode == 0, result.stderr
    assert f"{damaged.split('/')[-1]}" in result.stderr and "corrupt" in result.stderr
    assert f"resumed from {older}" in result.stdout


def test_resume_of_a_run_without_checkpoints_says_so(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(
        (CONFIGS / "smoke.yaml").read_text().replace("base: pong.yaml", f"base: {CONFIGS / 'pong.yaml'}")
    )
    result = resume(run)
    assert result.returncode == 2
    assert "no checkpoint there to resume from" in result.stderr


@pytest.mark.e2e
def test_tensorboard_and_csv_hold_the_same_points_after_a_resume_at_a_logging_frame(tmp_path):
    """The checkpoint at 1,200 frames is taken right at a logging point: TensorBoard must keep
    that point as the CSV does (a purge from 1,200 on would drop it)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dqn_atari.metrics import read_csv

    run = tmp_path / "run"
    assert train(run, "train.total_frames=1200").returncode == 0  # logs every 400 frames
    assert resume(run, "train.total_frames=2000").returncode == 0
    events = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    csv_points = read_csv(run / "metrics.csv")
    for tag in ("train/epsilon", "train/loss", "replay/size"):
        tb_frames = [e.step for e in events.Scalars(tag)]
        assert 1200 in tb_frames
        assert tb_frames == [f for f, _ in csv_points[tag]], tag


# ---------------------------------------------------------------------------- populations
def group_checkpoints(group: Path) -> dict[str, list[str]]:
    return {member.name: [p.name for p in checkpoints(member)] for member in sorted(group.glob("s*"))}


@pytest.mark.e2e
def test_a_killed_and_resumed_population_is_bit_identical_to_an_uninterrupted_one(tmp_path):
    """Seeds 0 and 1 in one process, killed with SIGKILL after a few checkpoints and resumed as a
    group: each seed ends as the uninterrupted population's does, its logs continuing."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert train(straight, "--seeds", "0-1").returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "dqn_atari", "train", *BASE, f"run_dir={killed}", "--seeds", "0-1"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 900
    while len(checkpoints(killed / "s1")) < 2 or int(checkpoints(killed / "s1")[-1].name.split("-")[1]) < 2000:
        assert proc.poll() is None and time.time() < deadline, "run ended before it could be killed"
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 0.5))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    result = resume(killed)
    assert result.returncode == 0, result.stderr
    assert "seed 0: resumed from" in result.stdout and "seed 1: resumed from" in result.stdout
    for seed in ("s0", "s1"):
        assert_same_final_state(straight / seed, killed / seed)
        assert metric_points(killed / seed, "train/epsilon") == metric_points(straight / seed, "train/epsilon")


@pytest.mark.e2e
@pytest.mark.parametrize(
    "stage,resumed_at",
    [("model:2", 2000), ("before_rename:2", 2000), ("before_prune", 3000)],
    ids=["inside-the-second-seeds-write", "between-the-seeds-writes", "before-pruning"],
)
def test_a_kill_inside_the_groups_checkpoint_leaves_every_seed_at_one_frame_count(tmp_path, stage, resumed_at):
    """A population of two writes its checkpoint seed by seed, then prunes. Killed (as SIGKILL
    would) inside seed 1's write, between the two writes, or before pruning: both seeds resume
    from one frame count, a checkpoint that only seed 0 finished is moved aside, and the run
    goes on to its end (before pruning: both seeds' newest checkpoint stands, the old ones until
    the next checkpoint)."""
    group = tmp_path / "group"
    assert train(group, "--seeds", "0-1", "train.total_frames=2000").returncode == 0
    crashed = train(group, "--seeds", "0-1", "train.total_frames=3000", env={"DQN_ATARI_CRASH_AT": stage})
    assert crashed.returncode != 0
    result = resume(group, "train.total_frames=3000")
    assert result.returncode == 0, result.stderr
    for seed in (0, 1):
        assert f"seed {seed}: resumed from {group / f's{seed}'}" in result.stdout
        assert f"at frame {resumed_at:,}" in result.stdout
    if stage == "before_rename:2":
        assert "ahead-ckpt-000000003000" in result.stderr  # seed 0's, which seed 1 never finished
    kept = ["ckpt-000000002000", "ckpt-000000003000"]
    if stage == "before_prune":  # nothing was written since: the next checkpoint prunes
        kept.insert(0, "ckpt-000000001000")
    assert group_checkpoints(group) == {"s0": kept, "s1": kept}


@pytest.mark.e2e
def test_a_seed_of_a_population_resumes_alone_as_a_single_run(tmp_path):
    group = tmp_path / "group"
    assert train(group, "--seeds", "3-4", "train.total_frames=1000").returncode == 0
    result = resume(group / "s4", "train.total_frames=1400")
    assert result.returncode == 0, result.stderr
    assert f"resumed from {group / 's4'}" in result.stdout and "done: 1,400 frames" in result.stdout
    assert checkpoints(group / "s4")[-1].name == "ckpt-000000001400"
    assert checkpoints(group / "s3")[-1].name == "ckpt-000000001000"  # its sibling untouched


@pytest.mark.e2e
@pytest.mark.parametrize(
    "case,message",
    [
        ("twice", "gives seed 1 twice"),
        ("single-run-there", "holds a single run (seed 0)"),
        ("member-missing", "has no config.yaml"),
        ("other-frames", "no checkpoint at a common frame count"),
        ("other-config", "differ in train.total_frames (seed 0: 400, seed 1: 800)"),
        ("other-seeds", "is a population of seeds 0,1"),
    ],
)
def test_population_mistakes_are_refused_in_one_line(tmp_path, case, message):
    import shutil

    where = tmp_path / "runs"
    if case == "twice":
        result = train(where, "--seeds", "0,1,1")
    elif case == "single-run-there":
        assert train(where, "train.total_frames=400").returncode == 0
        result = train(where, "--seeds", "0-1")
    else:
        assert train(where, "--seeds", "0-1", "train.total_frames=400").returncode == 0
        if case == "member-missing":
            shutil.rmtree(where / "s1")
            result = resume(where)
        elif case == "other-frames":  # seed 1 resumed alone and trained on
            assert resume(where / "s1", "train.total_frames=800", "checkpoint.keep_last=1").returncode == 0
            result = resume(where, "train.total_frames=800", "checkpoint.keep_last=1")
        elif case == "other-config":
            assert resume(where / "s1", "train.total_frames=800").returncode == 0
            result = resume(where)
        else:
            result = train(where, "--seeds", "0-2")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    if case in ("twice", "single-run-there"):
        assert not (where / "group.json").exists() and not (where / "s1").exists()  # nothing written


# The names and shapes of every tensor, agent entry and state.json key in real checkpoints of
# the two older layouts, written by their versions on this run's network (36x36 frames, a
# dueling noisy head of 16 units): the member layout (a member dimension of 1 on every tensor)
# and the one before populations (noise buffers; no noise generator, acting noise or interval).
OLD_LAYOUTS = json.loads((ROOT / "tests" / "data" / "old-checkpoint-layouts.json").read_text())
OLD_LAYOUT_RUN = ["env.frame_size=36", "network.hidden_size=16", "network.dueling=true", "network.noisy=true"]


def written_in_old_layout(checkpoint: Path, layout: dict) -> None:
    """Rewrite today's checkpoint as the older version wrote it, its checksums with it."""
    import torch

    from dqn_atari.replay import crc_of_file

    model = torch.load(checkpoint / "model.pt", weights_only=True)
    agent = model["agent"]
    for net in ("online", "target"):
        shapes = layout[net]
        agent[net] = {
            name: agent[net][name].reshape(shape) if name in agent[net] else torch.zeros(shape)
            for name, shape in shapes.items()
        }
    for index, per_parameter in agent["optimizer"]["state"].items():
        shapes = layout["optimizer_state"][str(index)]
        for name, value in per_parameter.items():
            if isinstance(shapes[name], list):
                per_parameter[name] = value.reshape(shapes[name])
    if "acting_noise" in agent:
        agent["acting_noise"] = agent["acting_noise"].reshape(1, -1)
    model["agent"] = {key: value for key, value in agent.items() if key in layout["agent"]}
    torch.save(model, checkpoint / "model.pt")
    state = json.loads((checkpoint / "state.json").read_text())
    state = {key: value for key, value in state.items() if key in layout["state_json"]}
    state["files"]["model.pt"] = crc_of_file(checkpoint / "model.pt")
    (checkpoint / "state.json").write_text(json.dumps(state))


@pytest.mark.e2e
@pytest.mark.parametrize("layout", sorted(OLD_LAYOUTS))
def test_a_checkpoint_of_every_older_layout_resumes(tmp_path, layout):
    """The member layout resumes into the same run bit for bit; a checkpoint from before
    populations resumes too (its noise generator, which it did not save, starts from the seed)."""
    straight = tmp_path / "straight"
    assert train(straight, *OLD_LAYOUT_RUN, "train.total_frames=2000").returncode == 0
    old = tmp_path / "old"
    assert train(old, *OLD_LAYOUT_RUN, "train.total_frames=1000").returncode == 0
    written_in_old_layout(checkpoints(old)[-1], OLD_LAYOUTS[layout])

    result = resume(old, "train.total_frames=2000")
    assert result.returncode == 0, result.stderr
    assert "resumed from" in result.stdout and "at frame 1,000" in result.stdout
    if layout == "member-layout":
        assert_same_final_state(straight, old)
    else:
        import torch

        final = torch.load(checkpoints(old)[-1] / "model.pt", weights_only=True)["agent"]
        assert final["online"]["features.0.weight"].shape == (32, 4, 8, 8)  # today's layout
        assert {"noise_generator", "acting_noise"} <= final.keys()
