"""The training loop: Algorithm 1 of Mnih et al. 2015, for N parallel envs.

for each agent step:
    a = epsilon-greedy(Q(s))                     agent.act
    s', r = env.step(a)                          envs.step (raw score and clipped reward)
    store (s, a, clip(r), terminal, s')          replay.add
    every train_frequency steps, after learning_starts:
        sample a minibatch, one TD update        replay.sample, agent.update
        (prioritized replay: new priorities)     replay.update_priorities
        every target_update_period updates: target <- online   (inside agent.update)
    log, evaluate, checkpoint on their schedules
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dqn_atari.agent import agent_from_config, linear_epsilon
from dqn_atari.checkpoint import Checkpointer, CheckpointError
from dqn_atari.config import Config, ConfigError, to_dict
from dqn_atari.envs.vector import AtariVector, vector_env_from_config
from dqn_atari.errors import first_line
from dqn_atari.evaluation import observation_settings, play_episodes
from dqn_atari.metrics import Logger, Progress
from dqn_atari.prioritized_replay import PrioritizedReplayBuffer
from dqn_atari.replay import Batch, ReplayBuffer


class TrainingDiverged(RuntimeError):
    """A non-finite loss or Q-value; the message is one line naming the step and the value."""


class Preempted(Exception):
    """A stop signal arrived; the run checkpointed and can be resumed."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but no CUDA device is available; use train.device=cpu or auto")
    return device


def batch_to_device(batch: Batch, device: torch.device) -> tuple[torch.Tensor, ...]:
    """uint8 stays uint8 across the copy; on CUDA it goes through pinned memory, asynchronously.
    Frames already on the device (replay.frames_on_device) are not copied at all."""

    def move(a):
        if isinstance(a, torch.Tensor):
            return a.to(device, non_blocking=True)
        if device.type != "cuda":
            return torch.from_numpy(a)
        return torch.from_numpy(np.ascontiguousarray(a)).pin_memory().to(device, non_blocking=True)

    arrays = (batch.obs, batch.actions, batch.rewards, batch.discounts, batch.next_obs)
    return tuple(move(a) for a in arrays) + (None if batch.weights is None else move(batch.weights),)


def allocated_cpus() -> int:
    """CPUs SLURM gave this task (SLURM_CPUS_PER_TASK), 0 outside SLURM: torch's default of one
    thread per core of the node oversubscribes a task that holds only some of them."""
    value = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return int(value) if value.isdigit() else 0


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS is only deterministic with a fixed workspace, which it reads from the
        # environment when it first starts (torch refuses its matrix products otherwise).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


class Trainer:
    def __init__(self, cfg: Config, run_dir: str | Path, envs: AtariVector | None = None):
        """`envs` replaces the Atari games built from cfg.env (tests pass a tiny pixel game)."""
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        seed_everything(cfg.seed, cfg.train.deterministic)
        threads = cfg.train.torch_threads or allocated_cpus()
        if threads:
            torch.set_num_threads(threads)
        self.device = resolve_device(cfg.train.device)

        # Independent streams from the one seed (numpy SeedSequence): exploration, replay
        # sampling, the games' starts, evaluation games. Seeds s and s+1 share none of them.
        exploration, sampling, games, evaluation = np.random.SeedSequence(cfg.seed).spawn(4)
        self.game_seeds = [int(x) for x in games.generate_state(cfg.env.num_envs) % 2**31]
        self.evaluation_seed = int(evaluation.generate_state(1)[0] % 2**31)

        self.envs = envs or vector_env_from_config(cfg.env)
        self.agent = agent_from_config(cfg, self.envs.num_actions, self.device, exploration)
        replay_kind: type[ReplayBuffer] = ReplayBuffer
        replay_options: dict[str, Any] = {}
        if cfg.replay.prioritized:
            replay_kind, replay_options = PrioritizedReplayBuffer, {"alpha": cfg.replay.priority_alpha}
        self.replay = replay_kind(
            cfg.replay.capacity,
            cfg.env.num_envs,
            frame_shape=(cfg.env.frame_size, cfg.env.frame_size),
            stack=cfg.env.frame_stack,
            n_step=cfg.replay.n_step,
            gamma=cfg.agent.gamma,
            seed=sampling,
            frames_device=self.device if cfg.replay.frames_on_device else None,
            padding=cfg.env.frame_stack_padding,
            **replay_options,
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
        self.checkpointer = Checkpointer(self.run_dir, cfg.checkpoint.keep_last)
        self.stop_signal: int | None = None  # set by a signal handler; the loop checkpoints and stops
        self.checkpointed_frames = -1
        # The best in-training evaluation mean so far; the run is done once it reaches
        # cfg.eval.stop_at_return (a resume with a higher target, or none, trains on).
        self.best_evaluation_return = -math.inf

    def _logger(self) -> Logger:
        assert self.logger is not None, "train() opens the logger"
        return self.logger

    @property
    def frames_per_step(self) -> int:
        return self.cfg.env.num_envs * self.cfg.env.frame_skip

    # ------------------------------------------------------------------ the loop
    def train(self, checkpoint_at_end: bool = True) -> None:
        """Train up to cfg.train.total_frames, checkpointing on schedule and at the end (unless
        `checkpoint_at_end` is false: benchmarks time the loop in slices, not checkpoint writes).
        Raises Preempted (after a checkpoint) when `stop_signal` is set, TrainingDiverged on a
        non-finite loss (before any checkpoint could store it)."""
        cfg = self.cfg
        if self.logger is None:
            self.logger = Logger(
                self.run_dir, tensorboard=cfg.log.tensorboard, csv_log=cfg.log.csv, start_frames=self.frames
            )
            restarts = os.environ.get("SLURM_RESTART_COUNT")
            if restarts is not None:
                self._logger().log(self.frames, self.steps, {"slurm/restart_count": int(restarts)})
        progress = Progress(cfg.train.total_frames, self.frames, cfg.log.progress)
        if self.obs is None:
            self.obs = self.envs.reset(seed=self.game_seeds)
        next_log = _next_multiple(self.steps, cfg.log.every_steps)
        next_eval = _next_multiple(self.frames, cfg.eval.every_frames)
        next_checkpoint = _next_multiple(self.frames, cfg.checkpoint.every_frames)
        self._interval.restart(self.steps, self.agent.updates)
        logged_at = self.steps
        try:
            while self.frames < cfg.train.total_frames and not self.target_reached():
                epsilon = self.epsilon()
                actions = self.agent.act(self.obs, epsilon)
                step = self.envs.step(actions)
                self.replay.add(
                    self.obs,
                    actions,
                    step.learning_reward,
                    step.learning_terminal,
                    step.truncated,
                    step.stack_ends,
                    step.next_obs,
                )
                self.obs = step.obs
                self.steps += cfg.env.num_envs
                self.frames += self.frames_per_step
                self._record_games(step.finished_games)
                self.learn()
                progress.tick(self.frames, self.progress_figures)

                if self.steps >= next_log:
                    self.log_interval(epsilon, progress)
                    next_log = _next_multiple(self.steps, cfg.log.every_steps)
                    logged_at = self.steps
                if cfg.eval.every_frames and self.frames >= next_eval:
                    self.evaluate()
                    next_eval = _next_multiple(self.frames, cfg.eval.every_frames)
                if self.frames >= next_checkpoint:
                    self.save_checkpoint()
                    next_checkpoint = _next_multiple(self.frames, cfg.checkpoint.every_frames)
                if self.stop_signal is not None:
                    self.save_checkpoint()
                    raise Preempted()
            if self.steps > logged_at:
                self.log_interval(self.epsilon(), progress)
            if checkpoint_at_end and self.checkpointed_frames != self.frames:
                self.save_checkpoint()
        finally:
            progress.close()
            self._logger().flush()

    def target_reached(self) -> bool:
        target = self.cfg.eval.stop_at_return
        return target is not None and self.best_evaluation_return >= target

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

    def priority_beta(self) -> float:
        """Prioritized replay's importance-sampling exponent: beta_start -> beta_end over the run."""
        start, end = self.cfg.replay.priority_beta_start, self.cfg.replay.priority_beta_end
        return start + (end - start) * min(1.0, self.frames / self.cfg.train.total_frames)

    def learn(self) -> None:
        while self.agent.updates < self.updates_due():
            batch = self.replay.sample(self.cfg.train.batch_size, beta=self.priority_beta())
            stats = self.agent.update(*batch_to_device(batch, self.device))
            self.replay.update_priorities(batch.env_index, batch.position, stats["priorities"])
            self._interval.add(stats)

    # ------------------------------------------------------------------ bookkeeping
    def _record_games(self, finished) -> None:
        for game in finished:
            self.games += 1
            self.recent_scores.append(game.score)
            self._logger().log(
                self.frames,
                self.steps,
                {
                    "train/episode_return": game.score,
                    "train/episode_learning_return": game.learning_return,
                    "train/episode_length_steps": game.length_steps,
                },
            )

    def log_interval(self, epsilon: float, progress: Progress) -> None:
        # The one host sync of the interval: reading the loss also checks it is finite.
        scalars = self._interval.collect(self.steps, self.agent.updates)
        self._interval.assert_finite(self.steps, self.frames, scalars)
        scalars.update({"train/epsilon": epsilon, "replay/size": len(self.replay), "progress/agent_steps": self.steps})
        self._logger().log(self.frames, self.steps, scalars)
        self._logger().flush()  # so `dqn-atari status` and plots see a running job's progress
        mean10 = f"{np.mean(self.recent_scores):.1f}" if self.recent_scores else "n/a"
        progress.update(
            self.frames,
            {"sps": f"{scalars['perf/steps_per_s']:.0f}", "return10": mean10, "eps": f"{epsilon:.3f}"},
        )

    def progress_figures(self) -> dict[str, str]:
        """What the progress bar shows between logging intervals: host counters only."""
        mean10 = f"{np.mean(self.recent_scores):.1f}" if self.recent_scores else "n/a"
        return {"return10": mean10, "eps": f"{self.epsilon():.3f}"}

    def evaluate(self) -> dict:
        e = self.cfg.eval
        results = play_episodes(
            lambda obs: self.agent.q_values(obs).cpu().numpy(),
            self.cfg.env.game,
            episodes=e.episodes,
            epsilon=e.epsilon,
            protocol=e.protocol,
            max_episode_frames=e.max_episode_frames,
            seed=self.evaluation_seed + self.frames,  # a fresh, reproducible set of games
            observation=observation_settings(to_dict(self.cfg)["env"]),
        )
        scores = [r.score for r in results]
        summary = {"eval/return_mean": float(np.mean(scores)), "eval/return_std": float(np.std(scores))}
        self._logger().log(self.frames, self.steps, summary)
        evaluation = {"games": len(scores), "epsilon": e.epsilon, "protocol": e.protocol, "scores": scores}
        self.checkpointer.save_snapshot(
            self.frames,
            self.agent.online.state_dict(),
            {"frames": self.frames, "steps": self.steps, "evaluation": evaluation, "config": to_dict(self.cfg)},
        )
        print(
            f"evaluation at {self.frames:,} frames: mean {summary['eval/return_mean']:.1f} "
            f"(std {summary['eval/return_std']:.1f}) over {len(scores)} games, epsilon {e.epsilon}",
            flush=True,
        )
        self.best_evaluation_return = max(self.best_evaluation_return, summary["eval/return_mean"])
        if self.target_reached():
            print(f"evaluation mean reached eval.stop_at_return={e.stop_at_return}: training stops", flush=True)
        return summary

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        """Everything the run needs to continue as if it had not stopped."""
        self._interval.assert_finite(self.steps, self.frames)  # never save a diverged network
        self.assert_weights_finite()
        self._logger().flush()
        model = {"agent": self.agent.state_dict(), "torch_rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            model["cuda_rng"] = torch.cuda.get_rng_state_all()
        numpy_rng = np.random.get_state()
        state = {
            "frames": self.frames,
            "steps": self.steps,
            "games": self.games,
            "recent_scores": list(self.recent_scores),
            "python_rng": [numpy_list(x) for x in random.getstate()],
            "numpy_rng": [numpy_list(x) for x in numpy_rng],
            "agent_rng": self.agent.rng.bit_generator.state,
            "best_evaluation_return": self.best_evaluation_return
            if math.isfinite(self.best_evaluation_return)
            else None,
            "config": to_dict(self.cfg),
        }
        envs = self.envs.state()
        assert self.obs is not None, "a checkpoint is written from inside train()"
        envs["obs"] = self.obs
        path = self.checkpointer.save(self.frames, model, state, envs, self.replay)
        self.checkpointed_frames = self.frames
        return path

    def assert_weights_finite(self) -> None:
        """The weights themselves, not only the logged loss: a non-finite learning rate (or an
        update between logging points) can fill them with NaN while the last loss looked fine."""
        for name, tensor in self.agent.state_dict()["online"].items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise TrainingDiverged(
                    f"non-finite weights in {name} at step {self.steps:,} (frame {self.frames:,}); "
                    f"stopping, nothing saved after this point"
                )

    def set_aside_logs_without_checkpoint(self) -> Path | None:
        """A fresh start in a run directory that has logs but no checkpoint (a run killed before
        its first checkpoint): move those logs into `abandoned-<time>/` so the new run's start
        from frame 0 neither appends to nor erases them. Returns where they went, or None."""
        logs = [self.run_dir / name for name in ("metrics.csv", "tb") if (self.run_dir / name).exists()]
        if not logs:
            return None
        aside = self.run_dir / f"abandoned-{time.strftime('%Y%m%d-%H%M%S')}"
        aside.mkdir()
        for path in logs:
            os.rename(path, aside / path.name)
        return aside

    def resume(self) -> Path | None:
        """Continue from the newest loadable checkpoint of the run directory, if there is one."""
        found = self.checkpointer.load_latest(
            self.replay, to_dict(self.cfg), warn=lambda line: print(line, file=sys.stderr, flush=True)
        )
        if found is None:
            return None
        path, model, state, envs = found
        try:
            self.agent.load_state_dict(model["agent"])
            torch.set_rng_state(model["torch_rng"])
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            reason = first_line(err)
            raise CheckpointError(f"checkpoint {path} does not fit this run's config ({reason})") from None
        if "cuda_rng" in model and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(model["cuda_rng"])
        random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python_rng"]))
        kind, keys, pos, has_gauss, cached = state["numpy_rng"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
        self.agent.rng.bit_generator.state = state["agent_rng"]
        self.frames, self.steps, self.games = state["frames"], state["steps"], state["games"]
        best = state.get("best_evaluation_return")
        self.best_evaluation_return = -math.inf if best is None else best
        self.checkpointed_frames = self.frames
        self.recent_scores.extend(state["recent_scores"])
        if self.envs.can_save_emulators:
            self.envs.restore(envs)
            self.obs = envs["obs"]
        else:
            # ale-py's vector env cannot restore its emulators: start new games, and make sure no
            # stored transition bridges the old game and the new one.
            self.obs = self.envs.reset(seed=[s + self.steps for s in self.game_seeds])
            self.replay.end_games_abruptly()
        return path

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
        for k in ("loss", "q_mean"):
            v = stats[k]
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.count += 1

    def means(self) -> dict[str, float]:
        if not self.count:
            return {}
        values = torch.stack([self.sums[k] for k in ("loss", "q_mean")]).cpu() / self.count
        return {"train/loss": float(values[0]), "train/q_mean": float(values[1])}

    def assert_finite(self, steps: int, frames: int, means: dict[str, float] | None = None) -> None:
        for name, value in (self.means() if means is None else means).items():
            if name.startswith("train/") and not math.isfinite(value):
                raise TrainingDiverged(
                    f"non-finite {name.split('/')[1]} ({value}) at step {steps:,} (frame {frames:,}); "
                    f"stopping, nothing saved after this point"
                )

    def collect(self, steps: int, updates: int) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.time, 1e-9)
        out = {
            "perf/steps_per_s": (steps - self.steps) / elapsed,
            "perf/updates_per_s": (updates - self.updates) / elapsed,
        }
        out.update(self.means())
        self.restart(steps, updates)
        return out


def numpy_list(x):
    """JSON-ready form of an RNG state element (numpy arrays and tuples become lists)."""
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, tuple):
        return list(x)
    return x


def _next_multiple(value: int, every: int) -> int:
    if every <= 0:
        return math.inf  # type: ignore[return-value]
    return (value // every + 1) * every
