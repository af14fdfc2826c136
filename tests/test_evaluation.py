"""Evaluation reports and gameplay videos from a real (untrained) Pong checkpoint; videos are
decoded with PyAV, GIFs opened with Pillow."""

import json
import multiprocessing
import shutil

import pytest
from helpers import ROOT, run_cli


@pytest.mark.e2e
def test_report_has_every_field_and_pong_scores(untrained_run, tmp_path):
    out = tmp_path / "ev"
    result = run_cli(
        "evaluate", str(untrained_run), "--episodes", "2", "--max-episode-frames", "1200", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert set(report) >= {
        "game",
        "protocol",
        "checkpoint",
        "summary",
        "human_normalized",
        "per_episode",
        "config",
        "videos",
    }
    assert report["protocol"] == {"protocol": "nature", "max_episode_frames": 1200, "noop_max": 30, "epsilon": 0.05}
    assert report["checkpoint"]["frames"] == 400
    assert set(report["summary"]) >= {"mean", "median", "std", "min", "max", "ci95_mean", "episodes", "capped_episodes"}
    episodes = report["per_episode"]
    assert [e["seed"] for e in episodes] == [0, 1]
    for e in episodes:
        assert -21 <= e["score"] <= 21
        assert e["capped"] and 1200 <= e["frames"] <= 1204  # 1,200 frames is too short to finish a game
    assert report["summary"]["capped_episodes"] == 2
    assert report["human_normalized"]["human"] == 14.6 and "dqn_zoo" in report["human_normalized"]["table"]
    assert "human-normalised mean" in result.stdout and "95% CI" in result.stdout


@pytest.mark.e2e
def test_same_seed_same_scores(untrained_run, tmp_path):
    reports = []
    for name in ("a", "b"):
        assert (
            run_cli(
                "evaluate",
                str(untrained_run),
                "--episodes",
                "2",
                "--max-episode-frames",
                "800",
                "--out",
                str(tmp_path / name),
            ).returncode
            == 0
        )
        reports.append(json.loads((tmp_path / name / "report.json").read_text())["per_episode"])
    assert reports[0] == reports[1]


@pytest.mark.parametrize(
    "args,message",
    [
        (["evaluate", "/nonexistent/run"], "no checkpoint at /nonexistent/run"),
        (["evaluate", "RUN", "--game", "Breakout"], "is a 6-action network (Pong) but Breakout has 4 actions"),
        (["evaluate", "RUN", "--out", "FILE/sub"], "is not writable"),
        (["evaluate", "RUN", "--episodes", "0"], "--episodes must be at least 1"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(untrained_run, tmp_path, args, message):
    afile = tmp_path / "afile"
    afile.write_text("x")
    args = [a.replace("RUN", str(untrained_run)).replace("FILE", str(afile)) for a in args]
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_corrupt_checkpoint_gives_one_line_and_exit_2(untrained_run, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(sorted((untrained_run / "checkpoints").glob("ckpt-*"))[-1], bad)
    (bad / "model.pt").write_bytes((bad / "model.pt").read_bytes()[:1000])
    result = run_cli("evaluate", str(bad))
    assert result.returncode == 2
    assert "model.pt is corrupt (checksum mismatch)" in result.stderr  # the recorded checksum is checked
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "game,network,noise,processes",
    [
        ("Pong", {}, "per_step", 1),
        ("Breakout", {}, "per_step", 2),  # 3 games in 2 workers: one steps 2 games
        ("Pong", {"noisy": True}, "off", 1),
        ("Pong", {"noisy": True}, "frozen", 1),
        ("Breakout", {"noisy": True}, "per_step", 1),
    ],
)
def test_games_side_by_side_play_as_they_do_one_at_a_time(game, network, noise, processes):
    """Three games at epsilon 0.05, one forward pass per step for all of them (in this process,
    or stepped in two worker processes), against the same games played one at a time: every
    game's score, frames, steps and cap flag the same. Each game explores, and draws its noise,
    from its own stream, so even per-step noise is the same game by game."""
    from dataclasses import asdict

    from dqn_atari.agent import Agent
    from dqn_atari.config import NetworkConfig
    from dqn_atari.evaluation import GreedyPolicy, play_episodes

    agent = Agent.for_seeds(6 if game == "Pong" else 4, [0], network=NetworkConfig(**network))
    reports = []
    for at_once, workers in ((1, 1), (None, processes)):
        policy = GreedyPolicy(
            agent.member_network(0),
            noise=noise,
            frozen_noise=None if agent.acting_noise is None else agent.acting_noise[0],
            seed=3,
        )
        worker_counts = set()

        def counting(obs, numbers, policy=policy, worker_counts=worker_counts):
            worker_counts.add(len(multiprocessing.active_children()))
            return policy(obs, numbers)

        results = play_episodes(
            counting,
            game,
            episodes=3,
            epsilon=0.05,
            max_episode_frames=1600,
            seed=11,
            games_at_once=at_once,
            processes=workers,
        )
        reports.append([asdict(r) for r in results])
        # as many worker processes as asked for, however many games they step
        assert worker_counts == {workers if workers > 1 else 0}
    assert reports[0] == reports[1]
    assert len({r["score"] for r in reports[0]} | {r["steps"] for r in reports[0]}) > 2  # the games differ


@pytest.mark.e2e
def test_an_export_plays_like_its_checkpoint_in_half_the_bytes_and_evaluate_films_it(untrained_run, tmp_path):
    """`export` keeps the online network in float16; the policy it loads gives the checkpoint's
    Q-values to float16's precision on real Pong frames, and the README's watch command
    (`evaluate <export> --episodes 1 --video`, a relative path) films a game beside it."""
    import av
    import numpy as np
    import torch

    from dqn_atari.envs import make_env
    from dqn_atari.evaluation import find_checkpoint, load_policy

    (tmp_path / "results").mkdir()
    half, full = tmp_path / "results" / "model", tmp_path / "full"
    result = run_cli("export", str(untrained_run), str(half))
    assert result.returncode == 0, result.stderr
    assert f"dqn-atari evaluate {half} --episodes 1 --video" in result.stdout
    assert run_cli("export", str(untrained_run), str(full), "--float32").returncode == 0
    assert (half / "model.pt").stat().st_size < 0.55 * (full / "model.pt").stat().st_size
    state = json.loads((half / "state.json").read_text())
    assert state["weights_dtype"] == "float16" and state["frames"] == 400
    assert state["exported_from"]["path"] == str(find_checkpoint(untrained_run).resolve())

    env = make_env("Pong", frame_stack=4, frame_size=84)
    obs, _ = env.reset(seed=0)
    frames = []
    for _ in range(64):
        obs, *_ = env.step(env.action_space.sample())
        frames.append(obs)
    env.close()
    batch = torch.from_numpy(np.stack(frames))
    q = {}
    for name, path in (("checkpoint", find_checkpoint(untrained_run)), ("half", half)):
        network = load_policy(path, torch.device("cpu"))[0]
        assert all(p.dtype == torch.float32 for p in network.parameters())
        with torch.no_grad():
            q[name] = network(batch)
    scale = q["checkpoint"].abs().max().item()
    assert scale > 0
    assert (q["half"] - q["checkpoint"]).abs().max().item() < 4e-3 * scale
    assert not torch.equal(q["half"], q["checkpoint"])  # the weights really are rounded

    watch = run_cli(
        "evaluate", "results/model", "--episodes", "1", "--video", "--max-episode-frames", "400", cwd=tmp_path
    )
    assert watch.returncode == 0, watch.stderr
    video_line = next(line for line in watch.stdout.splitlines() if line.strip().startswith("video"))
    mp4 = tmp_path / video_line.split()[-1]  # printed relative to where the command ran
    assert mp4.parent == tmp_path / "results" / "eval-000000000400-nature-eps0.05"
    with av.open(str(mp4)) as container:
        assert sum(1 for _ in container.decode(video=0)) > 90  # 400 frames: 100 agent steps, one picture each

    # Exporting again replaces the export whole; a directory that is not an export is never replaced.
    assert run_cli("export", str(untrained_run), str(half)).returncode == 0
    assert sorted(p.name for p in half.parent.iterdir()) == ["eval-000000000400-nature-eps0.05", "model"]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    refused = run_cli("export", str(untrained_run), str(other))
    assert refused.returncode == 2
    not_an_export = "exists and is not an exported model: give a new or empty directory"
    assert refused.stderr.strip() == f"dqn-atari: error: {other} {not_an_export}"
    assert sorted(p.name for p in other.iterdir()) == ["keep.txt"]


def readme_watch_commands():
    """The README's commands that film a model committed under results/, each as its words."""
    readme = (ROOT / "README.md").read_text()
    lines = [line for line in readme.splitlines() if " evaluate results/" in line and "--video" in line]
    return [line.split("#")[0].split() for line in lines]


# What one filmed game of each committed model must show. Pong: a win (21 points to fewer).
# Breakout: a trained agent's game, far above a random policy's 1.7 points (the Nature paper's
# random score); the shipped model's 30-game evaluation never scores below 20.
SCORE_ABOVE = {"Pong": 0, "Breakout": 10}


def test_the_readme_has_a_watch_command_for_every_committed_model():
    """One README watch command per model committed under results/ (at most one per game), so the
    test below films every one of them and none goes unseen."""
    committed = sorted(str(p.parent.relative_to(ROOT)) for p in ROOT.glob("results/*/model/model.pt"))
    assert committed, "no model committed under results/"
    assert sorted(words[2] for words in readme_watch_commands()) == committed


@pytest.mark.e2e
@pytest.mark.parametrize("watch_command", readme_watch_commands(), ids=lambda words: words[2])
def test_the_readmes_watch_command_films_the_committed_model_playing_a_full_game_well(watch_command, tmp_path):
    """Each README watch command, run as written on the model committed under results/ (in a copy
    of the repository's layout, so the repository gets no new files): it plays a full game, scores
    as a trained agent, and writes an MP4 that decodes to the game's pictures."""
    import av

    program, *args = watch_command
    assert program == ".venv/bin/dqn-atari" and args[0] == "evaluate" and args[1].startswith("results/")
    committed = ROOT / args[1]
    game_name = json.loads((committed / "state.json").read_text())["config"]["env"]["game"]
    assert (committed / "model.pt").stat().st_size < 8_000_000
    shutil.copytree(committed, tmp_path / args[1])

    watch = run_cli(*args, cwd=tmp_path)
    assert watch.returncode == 0, watch.stderr
    (report,) = (tmp_path / args[1]).parent.glob("eval-*/report.json")
    (game,) = json.loads(report.read_text())["per_episode"]
    assert not game["capped"] and game["score"] > SCORE_ABOVE[game_name]
    video_line = next(line for line in watch.stdout.splitlines() if line.strip().startswith("video"))
    with av.open(str(tmp_path / video_line.split()[-1])) as container:
        pictures = sum(1 for _ in container.decode(video=0))
    assert pictures >= game["steps"]  # one picture per agent step at least
