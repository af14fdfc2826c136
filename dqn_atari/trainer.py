"""The training loop: Algorithm 1 of Mnih et al. 2015, for N parallel envs.

    for each agent step:
        a = epsilon-greedy(Q(s))                     agent.act
        s', r = env.step(a)                          envs.step (raw score and clipped reward)
        store (s, a, clip(r), terminal, s')          replay.add
        every train_frequency steps, after learning_starts:
            sample a minibatch, one TD update        replay.sample, agent.update
            every target_update_period updates: target <- online   (inside agent.update)
        log, evaluate, checkpoint on their schedules
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from dqn_atari.agent import agent_from_config, linear_epsilon
from dqn_atari.config import Config, ConfigError
from dqn_atari.envs.vector import vector_env_from_config
from dqn_atari.evaluation import play_episodes
from dqn_atari.metrics import Logger, Progress
from dqn_atari.replay import Batch, ReplayBuffer


class TrainingDiverged(RuntimeError):
    """A non-finite loss or Q-value; the message is one line naming the step and the value."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but no CUDA device is available; use train.device=cpu or auto")
    return device


def batch_to_device(batch: Batch, device: torch.device) -> tuple[torch.Tensor, ...]:
    """uint8 stays uint8 across the copy; on CUDA it goes through pinned memory, asynchronously."""
    arrays = (batch.obs, batch.actions, batch.rewards, batch.discounts, batch.next_obs)
    if device.type != "cuda":
        return tuple(torch.from_numpy(a) for a in arrays)
    return tuple(torch.from_numpy(np.ascontiguousarray(a)).pin_memory().to(device, non_blocking=True) for a in arrays)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


class Trainer:
    def __init__(self, cfg: Config, run_dir: str | Path):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        seed_everything(cfg.seed, cfg.train.deterministic)
        if cfg.train.torch_threads:
            torch.set_num_threads(cfg.train.torch_threads)
        self.device = resolve_device(cfg.train.device)

        self.envs = vector_env_from_config(cfg.env)
        self.agent = agent_from_config(cfg, self.envs.num_actions, self.device)
        self.replay = ReplayBuffer(
            cfg.replay.capacity,
            cfg.env.num_envs,
            frame_shape=(cfg.env.frame_size, cfg.env.frame_size),
            stack=cfg.env.frame_stack,
            n_step=cfg.replay.n_step,
            gamma=cfg.agent.gamma,
            seed=cfg.seed,
        )
        # Counters. frames = agent steps x frame_skip (an action repeat cut short by game over
        # still counts as frame_skip frames, as in the papers' budgets).
        self.steps = 0
        self.frames = 0
        self.games = 0
        self.recent_scores: deque[float] = deque(maxlen=10)
        self.obs: np.ndarray | None = None
        self._interval = _IntervalStats(self.device)
        self.logger: Logger | None = None

    @property
    def frames_per_step(self) -> int:
        return self.cfg.env.num_envs * self.cfg.env.frame_skip

    # ------------------------------------------------------------------ the loop
    def train(self) -> None:
        cfg = self.cfg
        self.logger = self.logger or Logger(self.run_dir, tensorboard=cfg.log.tensorboard, csv_log=cfg.log.csv)
        progress = Progress(cfg.train.total_frames, self.frames, cfg.log.progress)
        if self.obs is None:
            self.obs = self.envs.reset(seed=cfg.seed)
        next_log = _next_multiple(self.steps, cfg.log.every_steps)
        next_eval = _next_multiple(self.frames, cfg.eval.every_frames)
        self._interval.restart(self.steps, self.agent.updates)
        logged_at = self.steps
        try:
            while self.frames < cfg.train.total_frames:
                epsilon = self.epsilon()
                actions = self.agent.act(self.obs, epsilon)
                step = self.envs.step(actions)
                self.replay.add(
                    self.obs,
                    actions,
                    step.learning_reward,
                    step.learning_terminal,
                    step.truncated,
                    step.terminated | step.truncated,
                    step.next_obs,
                )
                self.obs = step.obs
                self.steps += cfg.env.num_envs
                self.frames += self.frames_per_step
                self._record_games(step.finished_games)
                self.learn()

                if self.steps >= next_log:
                    self.log_interval(epsilon, progress)
                    next_log = _next_multiple(self.steps, cfg.log.every_steps)
                    logged_at = self.steps
                if cfg.eval.every_frames and self.frames >= next_eval:
                    self.evaluate()
                    next_eval = _next_multiple(self.frames, cfg.eval.every_frames)
            if self.steps > logged_at:
                self.log_interval(self.epsilon(), progress)
        finally:
            progress.close()
            self.logger.flush()

    def epsilon(self) -> float:
        a = self.cfg.agent
        return linear_epsilon(self.frames, a.epsilon_start, a.epsilon_end, a.epsilon_decay_frames)

    def updates_due(self) -> int:
        """Updates owed so far: one per train_frequency agent steps after learning_starts, so the
        replay ratio is the configured one whatever the number of envs."""
        t = self.cfg.train
        if self.steps < t.learning_starts_steps:
            return 0
        return (self.steps - t.learning_starts_steps) // t.train_frequency_steps + 1

    def learn(self) -> None:
        while self.agent.updates < self.updates_due():
            batch = self.replay.sample(self.cfg.train.batch_size)
            stats = self.agent.update(*batch_to_device(batch, self.device))
            self._interval.add(stats)

    # ------------------------------------------------------------------ bookkeeping
    def _record_games(self, finished) -> None:
        for game in finished:
            self.games += 1
            self.recent_scores.append(game.score)
            self.logger.log(
                self.frames,
                self.steps,
                {
                    "train/episode_return": game.score,
                    "train/episode_learning_return": game.learning_return,
                    "train/episode_length_steps": game.length_steps,
                },
            )

    def log_interval(self, epsilon: float, progress: Progress) -> None:
        scalars = self._interval.collect(self.steps, self.agent.updates)
        # The one host sync of the interval: reading the loss also checks it is finite.
        for name in ("train/loss", "train/q_mean"):
            if name in scalars and not math.isfinite(scalars[name]):
                raise TrainingDiverged(
                    f"non-finite {name.split('/')[1]} ({scalars[name]}) at step {self.steps:,} "
                    f"(frame {self.frames:,}); stopping, nothing saved after this point"
                )
        scalars.update({"train/epsilon": epsilon, "replay/size": len(self.replay)})
        self.logger.log(self.frames, self.steps, scalars)
        mean10 = f"{np.mean(self.recent_scores):.1f}" if self.recent_scores else "n/a"
        progress.update(
            self.frames,
            {"sps": f"{scalars['perf/steps_per_s']:.0f}", "return10": mean10, "eps": f"{epsilon:.3f}"},
        )

    def evaluate(self) -> dict:
        e = self.cfg.eval
        results = play_episodes(
            self.agent.greedy_actions,
            self.cfg.env.game,
            episodes=e.episodes,
            epsilon=e.epsilon,
            protocol=e.protocol,
            max_episode_frames=e.max_episode_frames,
            seed=self.cfg.seed * 1_000_003 + self.frames,  # a fresh, reproducible set of games
            frame_skip=self.cfg.env.frame_skip,
            frame_size=self.cfg.env.frame_size,
            frame_stack=self.cfg.env.frame_stack,
        )
        scores = [r.score for r in results]
        summary = {"eval/return_mean": float(np.mean(scores)), "eval/return_std": float(np.std(scores))}
        self.logger.log(self.frames, self.steps, summary)
        return summary

    def close(self) -> None:
        self.envs.close()
        if self.logger is not None:
            self.logger.close()


class _IntervalStats:
    """Sums of per-update stats kept on the device between logging points (no host sync)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.restart(0, 0)

    def restart(self, steps: int, updates: int) -> None:
        self.time, self.steps, self.updates = time.perf_counter(), steps, updates
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.count += 1

    def collect(self, steps: int, updates: int) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.time, 1e-9)
        out = {
            "perf/steps_per_s": (steps - self.steps) / elapsed,
            "perf/updates_per_s": (updates - self.updates) / elapsed,
        }
        if self.count:
            values = torch.stack([self.sums[k] for k in ("loss", "q_mean")]).cpu() / self.count
            out["train/loss"], out["train/q_mean"] = float(values[0]), float(values[1])
        self.restart(steps, updates)
        return out


def _next_multiple(value: int, every: int) -> int:
    if every <= 0:
        return math.inf  # type: ignore[return-value]
    return (value // every + 1) * every
