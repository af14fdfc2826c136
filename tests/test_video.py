"""Gameplay videos: real H.264 decoded back with PyAV, the Q-value panel beside the game, and the
GIF window around the first point scored."""

import json
from pathlib import Path

import av
import numpy as np
from helpers import run_cli
from PIL import Image


def test_video_decodes_as_h264_with_the_expected_frames_and_size(untrained_run, tmp_path):
    out = tmp_path / "v"
    result = run_cli(
        "record",
        str(untrained_run),
        "--max-episode-frames",
        "400",
        "--out",
        str(out),
        "--gif-seconds",
        "2",
        "--scale",
        "3",
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


def test_q_value_panel_widens_the_video(untrained_run, tmp_path):
    out = tmp_path / "p"
    result = run_cli(
        "record", str(untrained_run), "--max-episode-frames", "200", "--out", str(out), "--panel", "--scale", "2"
    )
    assert result.returncode == 0, result.stderr
    (mp4,) = json.loads((out / "report.json").read_text())["videos"]
    with av.open(mp4) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert frame.shape[0] == 420 and frame.shape[1] > 320 + 150  # the game, then the panel
    panel = frame[:, 330:]
    assert (np.abs(panel.astype(int) - [60, 200, 90]).sum(axis=2) < 60).any()  # the chosen action's green bar


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
