"""Scores under a published evaluation protocol: full games (all lives), raw game points.

Nature (Mnih et al. 2015, Methods): up to 30 random no-ops at the start, epsilon 0.05, each game
capped at 5 minutes (18,000 frames). Machado et al. 2018: sticky actions (0.25) and a 108,000-
frame cap. Evaluation plays on its own emulator with its own RNG, so evaluating during training
changes nothing in the training run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from dqn_atari.envs import make_env

PROTOCOLS = {
    "nature": {"protocol": "nature", "max_episode_frames": 18_000, "noop_max": 30},
    "machado": {"protocol": "machado", "max_episode_frames": 108_000, "noop_max": 30},
}


@dataclass
class EpisodeResult:
    seed: int
    score: float  # raw game points over the whole game
    frames: int  # emulator frames played
    capped: bool  # ended by the frame cap, not by game over


def play_episodes(
    greedy_actions: Callable[[np.ndarray], np.ndarray],
    game: str,
    *,
    episodes: int,
    epsilon: float,
    protocol: str = "nature",
    max_episode_frames: int | None = None,
    seed: int = 0,
    frame_skip: int = 4,
    frame_size: int = 84,
    frame_stack: int = 4,
    on_frame: Callable | None = None,
) -> list[EpisodeResult]:
    """Play `episodes` full games; game i is seeded with seed + i, so results are reproducible.

    `on_frame(env, obs, action)` is called before each action (for video recording)."""
    settings = dict(PROTOCOLS[protocol])
    if max_episode_frames is not None:
        settings["max_episode_frames"] = max_episode_frames
    env = make_env(game, frame_skip=frame_skip, frame_size=frame_size, frame_stack=frame_stack, **settings)
    rng = np.random.Generator(np.random.PCG64(seed))
    results = []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            score, done, truncated = 0.0, False, False
            while not done:
                action = int(greedy_actions(obs[None])[0])
                if rng.random() < epsilon:
                    action = int(rng.integers(env.action_space.n))
                if on_frame is not None:
                    on_frame(env, obs, action)
                obs, reward, terminated, truncated, _ = env.step(action)
                score += float(reward)
                done = terminated or truncated
            frames = int(env.unwrapped.ale.getEpisodeFrameNumber())
            results.append(EpisodeResult(seed + i, score, frames, bool(truncated)))
    finally:
        env.close()
    return results


def summarize_scores(results: list[EpisodeResult]) -> dict:
    scores = np.array([r.score for r in results], dtype=np.float64)
    return {
        "episodes": len(results),
        "mean": float(scores.mean()) if len(scores) else float("nan"),
        "median": float(np.median(scores)) if len(scores) else float("nan"),
        "std": float(scores.std()) if len(scores) else float("nan"),
        "min": float(scores.min()) if len(scores) else float("nan"),
        "max": float(scores.max()) if len(scores) else float("nan"),
        "per_episode": [asdict(r) for r in results],
    }
