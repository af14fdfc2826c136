"""Evaluation reports and gameplay videos from a real (untrained) Pong checkpoint; videos are
decoded with PyAV, GIFs opened with Pillow."""

import json
import multiprocessing
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import CONFIGS, run_cli
from PIL import Image

from dqn_atari.evaluation import bootstrap_ci, human_normalized, reference_scores


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("eval") / "run"
    result = run_cli(
        "train",
        str(CONFIGS / "smoke.yaml"),
        f"run_dir={run}",
        "train.total_frames=400",
        "train.learning_starts_steps=1000",
    )
    assert result.returncode == 0, result.stderr
    return run


def test_report_has_every_field_and_pong_scores(run_dir, tmp_path):
    out = tmp_path / "ev"
    result = run_cli("evaluate", str(run_dir), "--episodes", "2", "--max-episode-frames", "1200", "--out", str(out))
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


def test_same_seed_same_scores(run_dir, tmp_path):
    reports = []
    for name in ("a", "b"):
        assert (
            run_cli(
                "evaluate",
                str(run_dir),
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


def test_human_normalised_score_by_hand():
    assert human_normalized("Pong", 14.6) == pytest.approx(1.0)
    assert human_normalized("Pong", -20.7) == pytest.approx(0.0)
    assert human_normalized("Breakout", 16.1) == pytest.approx((16.1 - 1.7) / (30.5 - 1.7))
    assert human_normalized("Adventure", 1.0) is None  # not one of the 57
    assert len(reference_scores()) == 57


def test_bootstrap_interval_brackets_the_mean():
    assert bootstrap_ci([3.0, 3.0, 3.0]) == (3.0, 3.0)
    low, high = bootstrap_ci([0.0, 10.0] * 10)
    assert low < 5.0 < high and low > 2.0 and high < 8.0


def test_video_decodes_as_h264_with_the_expected_frames_and_size(run_dir, tmp_path):
    out = tmp_path / "v"
    result = run_cli(
        "record", str(run_dir), "--max-episode-frames", "400", "--out", str(out), "--gif-seconds", "2", "--scale", "3"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    (mp4,) = [v for v in report["videos"] if v.endswith(".mp4")]
    (gif,) = [v for v in report["videos"] if v.endswith(".gif")]
    steps = report["per_episode"][0]["steps"]  # one video frame per agent step, plus the last screen
    with av.open(mp4) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == steps + 1
    assert frames[0].shape == (630, 480, 3)  # 210x160 upscaled 3x
    data = Path(mp4).read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # "fast start": the index first, seekable without range requests
    # Nearest-neighbour upscale: each emulator pixel is a flat 3x3 block (up to codec noise).
    block = frames[len(frames) // 2][300:303, 240:243].astype(int)
    assert np.abs(block - block[0, 0]).max() <= 12
    with Image.open(gif) as image:
        assert image.size == (320, 420)
        durations = []
        for i in range(image.n_frames):  # Pillow merges repeated frames into longer ones
            image.seek(i)
            durations.append(image.info["duration"])
    assert sum(durations) == 2000  # 2 seconds at 15 frames a second


def test_q_value_panel_widens_the_video(run_dir, tmp_path):
    out = tmp_path / "p"
    result = run_cli(
        "record", str(run_dir), "--max-episode-frames", "200", "--out", str(out), "--panel", "--scale", "2"
    )
    assert result.returncode == 0, result.stderr
    (mp4,) = json.loads((out / "report.json").read_text())["videos"]
    with av.open(mp4) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert frame.shape[0] == 420 and frame.shape[1] > 320 + 150  # the game, then the panel
    panel = frame[:, 330:]
    assert (np.abs(panel.astype(int) - [60, 200, 90]).sum(axis=2) < 60).any()  # the chosen action's green bar


@pytest.mark.parametrize(
    "args,message",
    [
        (["evaluate", "/nonexistent/run"], "no checkpoint at /nonexistent/run"),
        (["evaluate", "RUN", "--game", "Breakout"], "is a 6-action network (Pong) but Breakout has 4 actions"),
        (["evaluate", "RUN", "--out", "FILE/sub"], "is not writable"),
        (["evaluate", "RUN", "--episodes", "0"], "--episodes must be at least 1"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(run_dir, tmp_path, args, message):
    afile = tmp_path / "afile"
    afile.write_text("x")
    args = [a.replace("RUN", str(run_dir)).replace("FILE", str(afile)) for a in args]
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_corrupt_checkpoint_gives_one_line_and_exit_2(run_dir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(sorted((run_dir / "checkpoints").glob("ckpt-*"))[-1], bad)
    (bad / "model.pt").write_bytes((bad / "model.pt").read_bytes()[:1000])
    result = run_cli("evaluate", str(bad))
    assert result.returncode == 2
    assert "model.pt is corrupt (checksum mismatch)" in result.stderr  # the recorded checksum is checked
    assert len(result.stderr.strip().splitlines()) == 1


def test_gif_window_shows_the_first_point_scored(tmp_path):
    from dqn_atari.video import FPS, EpisodeVideo

    video = EpisodeVideo(tmp_path / "g.mp4", scale=1, gif_seconds=2)
    for i in range(100):
        video.add(np.full((210, 160, 3), i, dtype=np.uint8))
        if i == 50:
            video.point_scored()  # the score changed with the action taken on frame 50
    video.close()
    shown = [int(f[0, 0, 0]) for f in video.gif_frames]
    # two seconds that end one second after the point: frames 51 - 2*15 + 15 .. 50 + 15
    assert shown == list(range(51 + FPS - 2 * FPS, 51 + FPS))


def test_q_value_panel_fits_the_full_action_set_at_any_scale():
    from dqn_atari.video import agent_panel, q_label

    names = [
        "NOOP",
        "FIRE",
        "UP",
        "RIGHT",
        "LEFT",
        "DOWN",
        "UPRIGHT",
        "UPLEFT",
        "DOWNRIGHT",
        "DOWNLEFT",
        "UPFIRE",
        "RIGHTFIRE",
        "LEFTFIRE",
        "DOWNFIRE",
        "UPRIGHTFIRE",
        "UPLEFTFIRE",
        "DOWNRIGHTFIRE",
        "DOWNLEFTFIRE",
    ]
    assert q_label("DOWNLEFTFIRE", 0.5) == "DOWNLEFTFIRE +0.5"  # never cut short
    assert q_label("FIRE", 12.3456) == "FIRE +12.3" and q_label("FIRE", -0.012345) == "FIRE -0.0123"  # 3 figures
    stack = np.zeros((4, 84, 84), dtype=np.uint8)
    for height in (420, 630, 840):
        panel = agent_panel(stack, np.linspace(-1, 1, 18), 17, names, height)
        assert panel.shape[0] == height  # drawn at the video's height, never rescaled
        green = np.flatnonzero((np.abs(panel.astype(int) - [60, 200, 90]).sum(axis=2) < 30).any(axis=1))
        assert len(green) and green.max() < height - 1  # the last action's bar is inside the panel


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
    from dqn_atari.evaluation import GreedyPolicy, play_episodes

    agent = Agent.for_seeds(6 if game == "Pong" else 4, [0], network=network)
    reports = []
    for at_once, workers in ((1, 1), (None, processes)):
        policy = GreedyPolicy(agent.member_network(0), noise=noise, frozen_noise=agent.acting_noise, seed=3)
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
