"""Scores under a published evaluation protocol: full games (all lives), raw game points.

Nature (Mnih et al. 2015, Methods): up to 30 random no-ops at the start, epsilon 0.05, each game
capped at 5 minutes (18,000 frames). Machado et al. 2018: sticky actions (0.25) and a 108,000-
frame cap. Evaluation plays on its own emulator with its own RNG, so evaluating during training
changes nothing in the training run.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from ale_py.env import AtariEnv

from dqn_atari.config import EnvConfig
from dqn_atari.envs import make_env
from dqn_atari.envs.wrappers import action_meanings
from dqn_atari.errors import first_line

PROTOCOLS = {
    "nature": {"protocol": "nature", "max_episode_frames": 18_000, "noop_max": 30},
    "machado": {"protocol": "machado", "max_episode_frames": 108_000, "noop_max": 30},
}
REFERENCE_SOURCE = "google-deepmind/dqn_zoo dqn_zoo/atari_data.py (random; professional human tester)"


# The env settings that shape what the network sees: evaluation plays with the training run's.
OBSERVATION_KEYS = (
    "frame_skip",
    "frame_size",
    "frame_stack",
    "frame_stack_padding",
    "frame_stack_restart_on_life_loss",
    "fire_on_life_loss",
)


def observation_settings(env_config: dict) -> dict:
    """The run's observation settings from its config's `env` section (defaults for keys that
    older runs lack)."""
    defaults = dataclasses.asdict(EnvConfig())
    return {key: env_config.get(key, defaults[key]) for key in OBSERVATION_KEYS}


class EvaluationError(RuntimeError):
    """A checkpoint or output that cannot be used; the message is one line for the user."""


@dataclass
class EpisodeResult:
    seed: int
    score: float  # raw game points over the whole game
    frames: int  # emulator frames played, the start's no-ops included
    steps: int  # agent actions
    capped: bool  # ended by the frame cap, not by game over


def play_episodes(
    q_values: Callable[[np.ndarray], np.ndarray],
    game: str,
    *,
    episodes: int,
    epsilon: float,
    protocol: str = "nature",
    max_episode_frames: int | None = None,
    seed: int = 0,
    observation: dict | None = None,
    recorder_for: Callable | None = None,
) -> list[EpisodeResult]:
    """Play `episodes` full games, epsilon-greedy on `q_values(obs_batch) -> (B, A)`; game i is
    seeded with seed + i, so results are reproducible. `observation` (see
    `observation_settings`) makes the stacks what the network saw in training.

    `recorder_for(i)` may return an object with add(rgb, stack, q, action), point_scored() and
    close() (an EpisodeVideo): it then
    sees the emulator's colour screen before each action and the final screen."""
    settings: dict[str, Any] = {**PROTOCOLS[protocol], **(observation or {})}
    if max_episode_frames is not None:
        settings["max_episode_frames"] = max_episode_frames
    env = make_env(game, **settings)
    atari = cast(AtariEnv, env.unwrapped)
    num_actions = int(cast(gym.spaces.Discrete, env.action_space).n)
    rng = np.random.Generator(np.random.PCG64(seed))
    results = []
    try:
        for i in range(episodes):
            recorder = recorder_for(i) if recorder_for else None
            obs, _ = env.reset(seed=seed + i)
            score, done, truncated, steps = 0.0, False, False, 0
            while not done:
                q = q_values(obs[None])[0]
                action = int(np.argmax(q))
                if rng.random() < epsilon:
                    action = int(rng.integers(num_actions))
                if recorder is not None:
                    recorder.add(atari.ale.getScreenRGB(), obs, q, action)
                obs, reward, terminated, truncated, _ = env.step(action)
                score += float(reward)
                if recorder is not None and reward != 0:
                    recorder.point_scored()
                steps += 1
                done = terminated or truncated
            if recorder is not None:
                recorder.add(atari.ale.getScreenRGB(), obs, q_values(obs[None])[0], None)
                recorder.close()
            frames = int(atari.ale.getEpisodeFrameNumber())
            results.append(EpisodeResult(seed + i, score, frames, steps, bool(truncated)))
    finally:
        env.close()
    return results


# ---------------------------------------------------------------------------- statistics
def reference_scores() -> dict[str, tuple[float, float]]:
    """Game -> (random, human) for the 57 games of the Atari benchmark."""
    text = resources.files("dqn_atari.data").joinpath("atari_reference_scores.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {r["game"]: (float(r["random"]), float(r["human"])) for r in rows}


def human_normalized(game: str, score: float) -> float | None:
    ref = reference_scores().get(game)
    if ref is None:
        return None
    random, human = ref
    return (score - random) / (human - random)


def bootstrap_ci(scores, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) < 2:
        return (float(scores.mean()), float(scores.mean())) if len(scores) else (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = scores[rng.integers(0, len(scores), size=(resamples, len(scores)))].mean(axis=1)
    tail = (1 - confidence) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def summarize_scores(results: list[EpisodeResult]) -> dict:
    scores = np.array([r.score for r in results], dtype=np.float64)
    low, high = bootstrap_ci(scores)
    return {
        "episodes": len(results),
        "mean": float(scores.mean()),
        "median": float(np.median(scores)),
        "std": float(scores.std()),
        "min": float(scores.min()),
        "max": float(scores.max()),
        "ci95_mean": [low, high],
        "capped_episodes": int(sum(r.capped for r in results)),
    }


# ---------------------------------------------------------------------------- checkpoints
def find_checkpoint(target: str | Path) -> Path:
    """A run directory (its newest checkpoint) or one checkpoint directory."""
    target = Path(target)
    if (target / "model.pt").is_file():
        return target
    from dqn_atari.checkpoint import Checkpointer

    checkpoints = Checkpointer(target).list() if target.is_dir() else []
    if not checkpoints:
        raise EvaluationError(
            f"no checkpoint at {target}: give a run directory with checkpoints/ or a checkpoint directory"
        )
    return checkpoints[0]


def load_policy(checkpoint: Path, device: torch.device):
    """(network, config dict, state dict) from a checkpoint or snapshot; nothing is unpickled."""
    from dqn_atari.checkpoint import CheckpointError, load_model, read_state, verify_files
    from dqn_atari.networks import QNetwork, network_settings

    try:
        # the same checks as a resume: every recorded checksum, then a tensors-only load
        state = read_state(checkpoint)
        verify_files(checkpoint, state, ("model.pt",))
        model = load_model(checkpoint)
    except CheckpointError as err:
        raise EvaluationError(f"cannot evaluate: {err}") from None
    try:
        weights = model["agent"]["online"]
        cfg = state["config"]
        settings = network_settings(cfg)
        # The output layer holds actions x atoms units; its name depends on the head.
        output_bias = next(k for k in weights if k.startswith(("head.layers.2.bias", "head.advantage.2.bias")))
        network = QNetwork(weights[output_bias].shape[0] // settings["atoms"], **settings)
        network.load_state_dict(weights)
    except (
        OSError,
        json.JSONDecodeError,
        RuntimeError,
        KeyError,
        EOFError,
        ValueError,
        StopIteration,
        TypeError,
    ) as err:
        reason = first_line(err)
        raise EvaluationError(f"cannot read checkpoint {checkpoint}: {reason}") from None
    return network.to(device).eval(), cfg, state


def evaluate_checkpoint(
    target: str | Path,
    *,
    episodes: int = 30,
    epsilon: float = 0.05,
    protocol: str = "nature",
    game: str | None = None,
    seed: int = 0,
    max_episode_frames: int | None = None,
    out: str | Path | None = None,
    video: bool = False,
    video_scale: int = 3,
    panel: bool = False,
    gif_seconds: float = 0.0,
    keep_videos: str = "best-worst",
    device: str = "cpu",
    kind: str = "evaluate",
) -> dict:
    """Play, score and (optionally) film a checkpoint; writes report.json (and videos) to `out`.

    `kind` is "evaluate" (a score) or "record" (a film, which `summarize` never takes for a
    score). By default each gets its own directory beside the checkpoints, named by what it
    measured, so no report ever replaces one of other settings:
    eval-<frames>-<protocol>-eps<epsilon>/ and record-<frames>/."""
    from dqn_atari.envs.games import resolve_game
    from dqn_atari.video import EpisodeVideo, write_gif

    checkpoint = find_checkpoint(target)
    torch_device = torch.device(device)
    if torch_device.type == "cpu":
        # One game at a time means batch-1 forward passes, which a second thread barely speeds
        # up (measured here); it leaves the other cores to the video encoder.
        torch.set_num_threads(1)
    network, cfg, state = load_policy(checkpoint, torch_device)
    game = resolve_game(game or cfg["env"]["game"])
    probe = make_env(game, frame_stack=cfg["env"]["frame_stack"], frame_size=cfg["env"]["frame_size"])
    num_actions, action_names = int(cast(gym.spaces.Discrete, probe.action_space).n), action_meanings(probe)
    probe.close()
    if num_actions != network.num_actions:
        raise EvaluationError(
            f"checkpoint {checkpoint} is a {network.num_actions}-action network "
            f"({cfg['env']['game']}) but {game} has {num_actions} actions"
        )
    frames_text = checkpoint.name.split("-")[1]
    default_name = f"eval-{frames_text}-{protocol}-eps{epsilon:g}" if kind == "evaluate" else f"record-{frames_text}"
    out = Path(out) if out else checkpoint.parent.parent / default_name
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".write-test").touch()
        (out / ".write-test").unlink()
    except OSError as err:
        raise EvaluationError(f"output directory {out} is not writable: {err.strerror or err}") from None

    @torch.no_grad()
    def q_values(obs: np.ndarray) -> np.ndarray:
        return network.q_values(torch.from_numpy(obs).to(torch_device)).cpu().numpy()

    recorders: dict[int, EpisodeVideo] = {}

    def recorder_for(i: int):
        recorders[i] = EpisodeVideo(out / f".episode-{i}.mp4", video_scale, panel, gif_seconds, action_names)
        return recorders[i]

    results = play_episodes(
        q_values,
        game,
        episodes=episodes,
        epsilon=epsilon,
        protocol=protocol,
        max_episode_frames=max_episode_frames,
        seed=seed,
        observation=observation_settings(cfg["env"]),
        recorder_for=recorder_for if video else None,
    )
    summary = summarize_scores(results)
    settings = dict(PROTOCOLS[protocol], epsilon=epsilon)
    if max_episode_frames is not None:
        settings["max_episode_frames"] = max_episode_frames
    ref = reference_scores().get(game)
    report = {
        "kind": kind,
        "game": game,
        "protocol": settings,
        "checkpoint": {"path": str(checkpoint), "frames": state["frames"], "steps": state["steps"]},
        "seed": seed,
        "summary": summary,
        "human_normalized": {
            "mean": human_normalized(game, summary["mean"]),
            "random": ref[0] if ref else None,
            "human": ref[1] if ref else None,
            "table": REFERENCE_SOURCE,
        },
        "per_episode": [asdict(r) for r in results],
        "videos": _keep_videos(results, recorders, out, keep_videos, gif_seconds, write_gif) if video else [],
        "config": cfg,
    }
    partial = out / ".report.json.tmp"  # never a half-written report under the final name
    partial.write_text(json.dumps(report, indent=2) + "\n")
    partial.replace(out / "report.json")
    return report


def _keep_videos(results, recorders, out: Path, keep: str, gif_seconds: float, write_gif) -> list[str]:
    order = sorted(range(len(results)), key=lambda i: results[i].score)
    if len(results) == 1:
        chosen = {0: "game"}
    elif keep == "best-worst":
        chosen = {order[-1]: "best", order[0]: "worst"}
    else:
        chosen = {i: f"{i:03d}" for i in order}
    kept = []
    for i, recorder in recorders.items():
        if i not in chosen:
            recorder.path.unlink(missing_ok=True)
            continue
        name = f"episode-{chosen[i]}-seed{results[i].seed}-score{results[i].score:g}"
        final = out / f"{name}.mp4"
        shutil.move(recorder.path, final)
        kept.append(str(final))
        if gif_seconds and i == order[-1] and recorder.gif_frames:  # a GIF of the best game
            write_gif(recorder.gif_frames, out / f"{name}.gif")
            kept.append(str(out / f"{name}.gif"))
    return kept


def format_report(report: dict) -> str:
    s = report["summary"]
    hn = report["human_normalized"]
    lines = [
        f"{report['game']}  checkpoint {report['checkpoint']['frames']:,} frames  "
        f"protocol {report['protocol']['protocol']}"
        f" (epsilon {report['protocol']['epsilon']}, cap {report['protocol']['max_episode_frames']:,} frames)",
        f"  episodes  {s['episodes']}  (capped: {s['capped_episodes']})",
        f"  mean      {s['mean']:.2f}  95% CI [{s['ci95_mean'][0]:.2f}, {s['ci95_mean'][1]:.2f}]",
        f"  median    {s['median']:.2f}   std {s['std']:.2f}   min {s['min']:.2f}   max {s['max']:.2f}",
    ]
    if hn["mean"] is not None:
        lines.append(
            f"  human-normalised mean  {hn['mean']:.3f}  (random {hn['random']}, human {hn['human']}; {hn['table']})"
        )
    for v in report["videos"]:
        lines.append(f"  video     {v}")
    return "\n".join(lines)
