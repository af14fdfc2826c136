"""The training loop: Algorithm 1 of Mnih et al. 2015, for K seeds of one config trained in
lockstep (a population; a single run is K = 1), each seed with N parallel envs.

for each agent step:
    a = epsilon-greedy(Q(s))                     agent.act: one forward pass for every seed's games
    s', r = env.step(a)                          seed.step: its envs, its replay
    store (s, a, clip(r), terminal, s')
    every train_frequency steps, after learning_starts:
        sample a minibatch per seed, one TD update for all seeds    seed.replay.sample, agent.update
        (prioritized replay: new priorities)     seed.replay.update_priorities
        every target_update_period updates: target <- online   (inside agent.update)
    log, evaluate, checkpoint on their schedules

What is one seed's stays that seed's (`SeedRun`): its games and their seeds, replay, counters,
exploration, noise, evaluation games, logs and checkpoints, in an ordinary run directory.
Only the network work is shared: the acting forward pass and the update.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dqn_atari.agent import Agent, UpdateBatch, UpdateResult, agent_from_config
from dqn_atari.checkpoint import Checkpointer, CheckpointError, load_group, maybe_crash
from dqn_atari.config import Config, ConfigError, to_dict
from dqn_atari.envs.vector import AtariVector, vector_env_from_config
from dqn_atari.errors import first_line
from dqn_atari.evaluation import EvaluationInterrupted, GreedyPolicy, observation_settings, play_episodes
from dqn_atari.exploration import exploration_from_config
from dqn_atari.metrics import Logger, Progress
from dqn_atari.prioritized_replay import PrioritizedReplayBuffer
from dqn_atari.replay import Batch as ReplayBatch
from dqn_atari.replay import ReplayBuffer


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


def batch_to_device(batches: list[ReplayBatch], device: torch.device) -> UpdateBatch:
    """Each seed's sampled batch, stacked along the member dimension and on the device. uint8
    stays uint8 across the copy; on CUDA it goes through pinned memory, asynchronously. Frames
    already on the device (replay.frames_on_device) are not copied at all."""

    def stacked(arrays: list) -> torch.Tensor:
        if isinstance(arrays[0], torch.Tensor):
            return torch.stack(arrays).to(device, non_blocking=True)
        array = arrays[0][None] if len(arrays) == 1 else np.stack(arrays)
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        return tensor.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else tensor

    fields = ("obs", "actions", "rewards", "discounts", "next_obs")
    tensors = {name: stacked([getattr(b, name) for b in batches]) for name in fields}
    weights = None if batches[0].weights is None else stacked([b.weights for b in batches])
    return UpdateBatch(**tensors, weights=weights)


def allocated_cpus() -> int:
    """CPUs SLURM gave this task (SLURM_CPUS_PER_TASK), 0 outside SLURM: torch's default of one
    thread per core of the node oversubscribes a task that holds only some of them."""
    value = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return int(value) if value.isdigit() else 0


def cpu_arithmetic(threads: int, flush_denormal: bool) -> None:
    """torch's CPU threads (0: torch's default) and whether CPU arithmetic flushes denormal
    floats to zero (`train.flush_denormal`). Both hold for the whole process. The flush flag
    belongs to each thread, and torch's worker threads copy it from the main thread when they
    start, at torch's first parallel operation: set it before anything computes, as a new
    process does here, and every thread flushes."""
    torch.set_flush_denormal(flush_denormal)
    if threads:
        torch.set_num_threads(threads)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Python's, numpy's and torch's global generators (nothing in a run draws from them; a
    library that does then repeats itself), and torch's deterministic algorithms."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS is only deterministic with a fixed workspace, which it reads from the
        # environment when it first starts (torch refuses its matrix products otherwise).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def deterministic_algorithms(mode: bool) -> None:
    """torch's deterministic-algorithms flag. `torch.use_deterministic_algorithms` also imports
    TorchInductor's config to set the compiler's copy of the flag, which adds seconds to a run's
    start-up (2 to 6 s measured on a 2-core AMD EPYC); nothing here compiles with Inductor, so
    the kernels' flag is set alone."""
    set_flag = getattr(torch._C, "_set_deterministic_algorithms", None)
    if set_flag is None:  # a torch without it: the public call
        torch.use_deterministic_algorithms(mode)
    else:
        set_flag(mode)


# Settings that may differ between the members of a population: each seed's own.
PER_SEED_KEYS = ("seed", "run_dir")


def check_population(configs: Sequence[Config]) -> None:
    """Members train in lockstep on one network stack: one config but for the seed."""
    seeds = [c.seed for c in configs]
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"seed {repeated[0]} is given twice: two members would be the same run")
    first = {k: v for k, v in _flat(configs[0]).items() if k not in PER_SEED_KEYS}
    for other in configs[1:]:
        for key, value in _flat(other).items():
            if key not in PER_SEED_KEYS and first.get(key) != value:
                raise ConfigError(
                    f"members of a population differ in {key} (seed {configs[0].seed}: {first.get(key)!r}, "
                    f"seed {other.seed}: {value!r}); only the seed may differ"
                )


# Host memory a seed takes besides its replay: the online and target networks, Adam's two
# moments, the gradients and the emulators (measured well under this on the Nature network).
SEED_OVERHEAD_BYTES = 256 << 20


def check_memory(configs: Sequence[Config]) -> None:
    """Refuse, before anything is written, a run or population whose replays (every frame store
    in host memory) and per-seed state do not fit in the memory available now: each replay alone
    may fit while all of them together do not."""
    from dqn_atari.replay import memory_available_bytes

    replay_bytes = 0
    for cfg in configs:
        per_transition = 6 + (8 if cfg.replay.prioritized else 0)  # action, reward, flags (+ priority)
        if not cfg.replay.frames_on_device:
            per_transition += cfg.env.frame_size**2
        replay_bytes += cfg.replay.capacity * per_transition
    needed = replay_bytes + len(configs) * SEED_OVERHEAD_BYTES
    available = memory_available_bytes()
    if needed > available:
        what = f"{len(configs)} seeds need" if len(configs) > 1 else "this run needs"
        raise ConfigError(
            f"{what} about {needed / 2**30:.1f} GiB of memory ({replay_bytes / 2**30:.1f} GiB of replay) but "
            f"{available / 2**30:.1f} GiB are available; train fewer seeds at once or lower replay.capacity"
        )


def _flat(cfg: Config) -> dict[str, Any]:
    from dqn_atari.config import flatten

    return flatten(to_dict(cfg))


class SeedRun:
    """One seed of a run, all it would own alone: its games, replay, counters, recent scores,
    evaluation games, logger and checkpointer, writing an ordinary run directory."""

    def __init__(self, cfg: Config, run_dir: str | Path, envs: AtariVector | None, device: torch.device):
        self.cfg, self.seed = cfg, cfg.seed
        self.run_dir = Path(run_dir)
        self.label = ""  # how messages name this seed: "seed 3: " in a population
        # Independent streams from the one seed (numpy SeedSequence): the agent's (exploration,
        # initial weights, noise), replay sampling, the games' starts, evaluation games. Seeds
        # s and s+1 share none of them.
        self.agent_seed, sampling, games, evaluation = np.random.SeedSequence(cfg.seed).spawn(4)
        self.game_seeds = [int(x) for x in games.generate_state(cfg.env.num_envs) % 2**31]
        self.evaluation_seed = int(evaluation.generate_state(1)[0] % 2**31)
        self.envs = envs or vector_env_from_config(cfg.env)
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
            frames_device=device if cfg.replay.frames_on_device else None,
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
        self.logger: Logger | None = None
        self.checkpointer = Checkpointer(self.run_dir, cfg.checkpoint.keep_last)
        self.checkpointed_frames = -1
        # The best in-training evaluation mean so far; the seed is done once it reaches
        # cfg.eval.stop_at_return (a resume with a higher target, or none, trains on).
        self.best_evaluation_return = -math.inf
        # An in-training evaluation is due at this frame count and not done yet: a stop signal
        # abandoned it, and the checkpoint carries the debt so that the resumed run plays it.
        self.evaluation_due = False

    def _logger(self) -> Logger:
        assert self.logger is not None, "train() opens the logger"
        return self.logger

    def open_logger(self) -> None:
        if self.logger is not None:
            return
        log = self.cfg.log
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logger = Logger(
            self.run_dir,
            tensorboard=log.tensorboard,
            csv_log=log.csv,
            start_frames=self.frames,
            config=_flat(self.cfg),
        )
        restarts = os.environ.get("SLURM_RESTART_COUNT")
        if restarts is not None:
            self.logger.log(self.frames, self.steps, {"slurm/restart_count": int(restarts)})

    def target_reached(self) -> bool:
        target = self.cfg.eval.stop_at_return
        return target is not None and self.best_evaluation_return >= target

    def step(self, actions: np.ndarray) -> None:
        """One agent step of this seed's games, stored in its replay."""
        assert self.obs is not None
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
        self.steps += self.cfg.env.num_envs
        self.frames += self.cfg.env.num_envs * self.cfg.env.frame_skip
        for game in step.finished_games:
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

    def return10(self) -> str:
        return f"{np.mean(self.recent_scores):.1f}" if self.recent_scores else "n/a"

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

    def close(self) -> None:
        self.envs.close()
        if self.logger is not None:
            self.logger.close()
            self.logger = None


class Trainer:
    def __init__(
        self,
        cfg: Config | Sequence[Config],
        run_dir: str | Path | Sequence[str | Path],
        envs: AtariVector | Sequence[AtariVector] | None = None,
    ):
        """One seed (a Config and its run directory) or a population: configs that differ only
        in their seed, each with its run directory. `envs` replaces the Atari games built from
        the configs (tests pass a tiny pixel game)."""
        configs = [cfg] if isinstance(cfg, Config) else list(cfg)
        run_dirs = [run_dir] if isinstance(run_dir, (str, Path)) else list(run_dir)
        env_list = (
            [envs] if isinstance(envs, AtariVector) else list(envs) if envs is not None else [None] * len(configs)
        )
        if not (len(configs) == len(run_dirs) == len(env_list)) or not configs:
            raise ValueError("a Trainer needs one run directory (and envs, if given) per config")
        check_population(configs)
        self.cfg = configs[0]  # the settings all members share
        cpu_arithmetic(self.cfg.train.torch_threads or allocated_cpus(), self.cfg.train.flush_denormal)
        seed_everything(self.cfg.seed, self.cfg.train.deterministic)
        self.device = resolve_device(self.cfg.train.device)
        self.seeds = [SeedRun(c, d, e, self.device) for c, d, e in zip(configs, run_dirs, env_list, strict=True)]
        if len(self.seeds) > 1:
            for seed in self.seeds:
                seed.label = f"seed {seed.seed}: "
        actions = {s.envs.num_actions for s in self.seeds}
        if len(actions) != 1:
            raise ConfigError(f"members of a population must have the same number of actions, got {sorted(actions)}")
        self.agent: Agent = agent_from_config(self.cfg, actions.pop(), self.device, [s.agent_seed for s in self.seeds])
        self.exploration = exploration_from_config(self.cfg)
        # The seeds still training, in the agent's member order; a seed that reaches
        # eval.stop_at_return leaves it and the others go on.
        self.active: list[SeedRun] = list(self.seeds)
        self._interval = _IntervalStats(self.device, len(self.seeds))
        self.stop_signal: int | None = None  # set by a signal handler; the loop checkpoints and stops

    # A single run's figures: those of its one seed (of the first seed, in a population).
    @property
    def steps(self) -> int:
        return max(s.steps for s in self.seeds)

    @property
    def frames(self) -> int:
        return max(s.frames for s in self.seeds)

    @property
    def games(self) -> int:
        return self.seeds[0].games

    @property
    def replay(self) -> ReplayBuffer:
        return self.seeds[0].replay

    @property
    def run_dir(self) -> Path:
        return self.seeds[0].run_dir

    @property
    def frames_per_step(self) -> int:
        return self.cfg.env.num_envs * self.cfg.env.frame_skip

    # ------------------------------------------------------------------ the loop
    def train(self, checkpoint_at_end: bool = True) -> None:
        """Train every seed up to cfg.train.total_frames (or its target return), checkpointing
        on schedule and at the end (unless `checkpoint_at_end` is false: benchmarks time the
        loop in slices, not checkpoint writes). Raises Preempted (after a checkpoint) when
        `stop_signal` is set, TrainingDiverged on a non-finite loss (before any checkpoint
        could store it)."""
        cfg = self.cfg
        self._retire_finished()  # seeds resumed at their target train no further
        for seed in self.active:
            seed.open_logger()
            if seed.obs is None:
                seed.obs = seed.envs.reset(seed=seed.game_seeds)
        progress = Progress(
            cfg.train.total_frames,
            self.frames,
            cfg.log.progress,
            learning_starts_frames=cfg.train.learning_starts_steps * cfg.env.frame_skip,
        )
        next_log = _next_multiple(self.steps, cfg.log.every_steps)
        next_eval = _next_multiple(self.frames, cfg.eval.every_frames)
        next_checkpoint = _next_multiple(self.frames, cfg.checkpoint.every_frames)
        self._interval.restart(self.steps, self.agent.updates)
        logged_at = self.steps
        try:
            self.evaluate_due()  # an evaluation a stop signal interrupted comes first
            while self.active and self.frames < cfg.train.total_frames:
                epsilons = self.epsilons()
                actions = self.agent.act(self.observations(), [epsilons] * len(self.active))
                for seed, seed_actions in zip(self.active, actions, strict=True):
                    seed.step(seed_actions)
                self.learn()
                progress.tick(self.frames, self.progress_figures)

                if self.steps >= next_log:
                    self.log_interval(logged_epsilon(epsilons), progress)
                    next_log = _next_multiple(self.steps, cfg.log.every_steps)
                    logged_at = self.steps
                if cfg.eval.every_frames and self.frames >= next_eval:
                    for seed in self.active:
                        seed.evaluation_due = True
                    next_eval = _next_multiple(self.frames, cfg.eval.every_frames)
                    self.evaluate_due()
                if self.frames >= next_checkpoint and self.active:
                    self.save_checkpoint()
                    next_checkpoint = _next_multiple(self.frames, cfg.checkpoint.every_frames)
                if self.stop_signal is not None and self.active:
                    self._stop()
            if self.active and self.steps > logged_at:
                self.log_interval(logged_epsilon(self.epsilons()), progress)
            if checkpoint_at_end and any(s.checkpointed_frames != s.frames for s in self.active):
                self.save_checkpoint()
        finally:
            progress.close()
            for seed in self.seeds:
                if seed.logger is not None:
                    seed.logger.flush()

    def observations(self) -> np.ndarray:
        """(K, N, stack, H, W): every active seed's current stacks, in member order."""
        stacks = [s.obs for s in self.active]
        return stacks[0][None] if len(stacks) == 1 else np.stack(stacks)  # type: ignore[arg-type,index]

    def epsilons(self) -> np.ndarray:
        """(N,) each game's epsilon; every active seed has played the same frames, so the same
        for all seeds."""
        return self.exploration.epsilons(self.frames, self.cfg.env.num_envs)

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
            beta = self.priority_beta()
            batches = [s.replay.sample(self.cfg.train.batch_size, beta=beta) for s in self.active]
            stats = self.agent.update(batch_to_device(batches, self.device))
            for k, (seed, batch) in enumerate(zip(self.active, batches, strict=True)):
                seed.replay.update_priorities(batch.env_index, batch.position, stats.priorities[k])
            self._interval.add(stats)

    def _retire_finished(self) -> None:
        """Seeds whose evaluation reached eval.stop_at_return stop (with a checkpoint) while the
        others go on; the agent then updates only the rest."""
        finished = [k for k, s in enumerate(self.active) if s.target_reached()]
        if not finished:
            return
        for k in finished:
            seed = self.active[k]
            if seed.checkpointed_frames != seed.frames and seed.logger is not None:
                self._save_seed(k, prune=True)
            target = seed.cfg.eval.stop_at_return
            others = " (the other seeds go on)" if len(self.active) > len(finished) else ""
            print(
                f"{seed.label}evaluation mean reached eval.stop_at_return={target}: training stops{others}", flush=True
            )
            if seed.logger is not None:
                seed.logger.close()
                seed.logger = None
        kept = [k for k in range(len(self.active)) if k not in finished]
        self._interval.keep(kept)
        if kept:
            self.agent.keep_members(kept)
        self.active = [self.active[k] for k in kept]

    # ------------------------------------------------------------------ bookkeeping
    def log_interval(self, epsilon: float, progress: Progress) -> None:
        # The one host sync of the interval: reading the losses also checks they are finite.
        per_seed = self._interval.collect(self.steps, self.agent.updates)
        for seed, scalars in zip(self.active, per_seed, strict=True):
            _assert_finite(seed, scalars)
            scalars.update(
                {"train/epsilon": epsilon, "replay/size": len(seed.replay), "progress/agent_steps": seed.steps}
            )
            seed._logger().log(seed.frames, seed.steps, scalars)
            seed._logger().flush()  # so `dqn-atari status` and plots see a running job's progress
        progress.update(
            self.frames,
            {"return10": "/".join(s.return10() for s in self.active), "eps": f"{epsilon:.3f}"},
        )

    def progress_figures(self) -> dict[str, str]:
        """What the progress bar shows between logging intervals: host counters only."""
        return {
            "return10": "/".join(s.return10() for s in self.active),
            "eps": f"{logged_epsilon(self.epsilons()):.3f}",
        }

    def _stop(self) -> None:
        """A stop signal: a checkpoint at this step (unless one was just written), then Preempted."""
        if any(seed.checkpointed_frames != seed.frames for seed in self.active):
            self.save_checkpoint()
        raise Preempted()

    def evaluate_due(self) -> None:
        """Each active seed's due evaluation, then the seeds that reached their target retire. A
        stop signal during an evaluation abandons it at the next step of its games: the seeds
        still owing one checkpoint with that debt, and Preempted is raised."""
        try:
            for k, seed in enumerate(self.active):
                if seed.evaluation_due:
                    self._evaluate_seed(k, seed)
                    seed.evaluation_due = False
        except EvaluationInterrupted:
            self._stop()
        self._retire_finished()

    def _evaluate_seed(self, k: int, seed: SeedRun) -> dict:
        """Seed k's evaluation: its own games (seeded from its evaluation stream and the frame
        count), never its training envs or streams."""
        e = self.cfg.eval
        print(f"{seed.label}evaluating {e.episodes} games at {seed.frames:,} frames...", flush=True)
        frozen = None if self.agent.acting_noise is None else self.agent.acting_noise[k]
        policy = GreedyPolicy(
            self.agent.member_network(k),
            noise=e.noise,
            frozen_noise=frozen,
            seed=seed.evaluation_seed + seed.frames,
            channels_last_input=self.cfg.network.channels_last,
        )
        results = play_episodes(
            policy,
            self.cfg.env.game,
            episodes=e.episodes,
            epsilon=e.epsilon,
            protocol=e.protocol,
            max_episode_frames=e.max_episode_frames,
            noop_max=e.noop_max,
            seed=seed.evaluation_seed + seed.frames,  # a fresh, reproducible set of games
            observation=observation_settings(self.cfg.env),
            interrupted=lambda: self.stop_signal is not None,
        )
        scores = [r.score for r in results]
        summary = {"eval/return_mean": float(np.mean(scores)), "eval/return_std": float(np.std(scores))}
        seed._logger().log(seed.frames, seed.steps, summary)
        evaluation = {"games": len(scores), "epsilon": e.epsilon, "protocol": e.protocol, "scores": scores}
        weights = self.agent.member_state_dict(k)
        seed.checkpointer.save_snapshot(
            seed.frames,
            {key: weights[key] for key in ("online", "acting_noise") if key in weights},
            {
                "frames": seed.frames,
                "steps": seed.steps,
                "num_actions": self.agent.num_actions,
                "evaluation": evaluation,
                "config": to_dict(seed.cfg),
            },
        )
        print(
            f"{seed.label}evaluation at {seed.frames:,} frames: mean {summary['eval/return_mean']:.1f} "
            f"(std {summary['eval/return_std']:.1f}) over {len(scores)} games, epsilon {e.epsilon}",
            flush=True,
        )
        seed.best_evaluation_return = max(seed.best_evaluation_return, summary["eval/return_mean"])
        return summary

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> list[Path]:
        """Every active seed's checkpoint at the common frame count, then the old ones pruned:
        a kill at any moment of this leaves every seed a checkpoint at one frame count (this
        one or the previous), from which the population resumes."""
        self._interval.assert_finite(self.active)  # never save a diverged network
        paths = [self._save_seed(k, prune=False) for k in range(len(self.active))]
        maybe_crash("before_prune")
        for seed in self.active:
            seed.checkpointer.prune()
        return paths

    def _save_seed(self, k: int, prune: bool) -> Path:
        """Everything seed k needs to continue as if it had not stopped: a single run's checkpoint."""
        seed = self.active[k]
        agent_state = self.agent.member_state_dict(k)
        self.assert_weights_finite(seed, agent_state["online"])
        seed._logger().flush()
        model = {"agent": agent_state, "torch_rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            model["cuda_rng"] = torch.cuda.get_rng_state_all()
        state = {
            "frames": seed.frames,
            "steps": seed.steps,
            "games": seed.games,
            "num_actions": self.agent.num_actions,
            "recent_scores": list(seed.recent_scores),
            "python_rng": [numpy_list(x) for x in random.getstate()],
            "numpy_rng": [numpy_list(x) for x in np.random.get_state()],
            "agent_rng": self.agent.rngs[k].bit_generator.state,
            "interval": self._interval.member_state(k),
            "best_evaluation_return": seed.best_evaluation_return
            if math.isfinite(seed.best_evaluation_return)
            else None,
            "evaluation_due": seed.evaluation_due,
            "config": to_dict(seed.cfg),
        }
        envs = seed.envs.state()
        assert seed.obs is not None, "a checkpoint is written from inside train()"
        envs["obs"] = seed.obs
        path = seed.checkpointer.save(seed.frames, model, state, envs, seed.replay, prune=prune)
        seed.checkpointed_frames = seed.frames
        return path

    @staticmethod
    def assert_weights_finite(seed: SeedRun, weights: dict[str, torch.Tensor]) -> None:
        """The weights themselves, not only the logged loss: a non-finite learning rate (or an
        update between logging points) can fill them with NaN while the last loss looked fine."""
        for name, tensor in weights.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise TrainingDiverged(
                    f"{seed.label}non-finite weights in {name} at step {seed.steps:,} (frame {seed.frames:,}); "
                    f"stopping, nothing saved after this point"
                )

    def set_aside_logs_without_checkpoint(self) -> list[Path]:
        return [aside for s in self.seeds if (aside := s.set_aside_logs_without_checkpoint()) is not None]

    def resume(self) -> list[Path] | None:
        """Continue every seed from its checkpoint at the newest frame count they all have (a
        single run: its newest loadable checkpoint). A seed whose evaluation had reached
        eval.stop_at_return stays finished. Returns the checkpoints used, None for a fresh start."""
        warn = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
        found = load_group(
            [s.checkpointer for s in self.seeds],
            [s.replay for s in self.seeds],
            [to_dict(s.cfg) for s in self.seeds],
            self.cfg.eval.stop_at_return,
            warn,
        )
        if found is None:
            return None
        for seed, f in zip(self.seeds, found, strict=True):
            seed.frames, seed.steps, seed.games = f.state["frames"], f.state["steps"], f.state["games"]
            best = f.state.get("best_evaluation_return")
            seed.best_evaluation_return = -math.inf if best is None else best
            seed.evaluation_due = bool(f.state.get("evaluation_due", False))
            seed.checkpointed_frames = seed.frames
        training = [(k, s, f) for k, (s, f) in enumerate(zip(self.seeds, found, strict=True)) if f.model is not None]
        self.active = [s for _, s, _ in training]
        if not training:
            return [f.path for f in found]
        first = training[0][2]
        assert first.model is not None
        try:
            states = [f.model["agent"] for _, _, f in training if f.model is not None]
            if len(training) < len(self.seeds):
                self.agent.keep_members([k for k, _, _ in training])
            self.agent.load_member_state_dicts(states)
            torch.set_rng_state(first.model["torch_rng"])
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise CheckpointError(
                f"checkpoint {first.path} does not fit this run's config ({first_line(err)})"
            ) from None
        if "cuda_rng" in first.model and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(first.model["cuda_rng"])
        random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in first.state["python_rng"]))
        kind, keys, pos, has_gauss, cached = first.state["numpy_rng"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
        for member, (_, seed, f) in enumerate(training):
            assert f.envs is not None
            self.agent.rngs[member].bit_generator.state = f.state["agent_rng"]
            seed.recent_scores.extend(f.state["recent_scores"])
            if seed.envs.can_save_emulators:
                seed.envs.restore(f.envs)
                seed.obs = f.envs["obs"]
            else:
                # ale-py's vector env cannot restore its emulators: start new games, and make sure
                # no stored transition bridges the old game and the new one.
                seed.obs = seed.envs.reset(seed=[s + seed.steps for s in seed.game_seeds])
                seed.replay.end_games_abruptly()
        self._interval = _IntervalStats.from_members(self.device, [f.state.get("interval") for _, _, f in training])
        return [f.path for f in found]

    def close(self) -> None:
        for seed in self.seeds:
            seed.close()


def logged_epsilon(epsilons: np.ndarray) -> float:
    """The games' epsilon as `train/epsilon` records it: their common value exactly, else their mean."""
    return float(epsilons[0]) if (epsilons == epsilons[0]).all() else float(epsilons.mean())


def _assert_finite(seed: SeedRun, scalars: dict[str, float]) -> None:
    for name, value in scalars.items():
        if name in ("train/loss", "train/q_mean") and not math.isfinite(value):
            raise TrainingDiverged(
                f"{seed.label}non-finite {name.split('/')[1]} ({value}) at step {seed.steps:,} "
                f"(frame {seed.frames:,}); stopping, nothing saved after this point"
            )


class _IntervalStats:
    """Per-member sums of the update's loss and Q, kept on the device between logging points
    (one addition per update, no host sync), and part of each seed's checkpoint, so that a run
    resumed inside a logging interval logs what an uninterrupted one would."""

    def __init__(self, device: torch.device, members: int):
        self.device, self.members = device, members
        self.sums: torch.Tensor | None = None  # (2, K): loss, q_mean
        self.count = 0
        self.time, self.steps, self.updates = time.perf_counter(), 0, 0

    @classmethod
    def from_members(cls, device: torch.device, states: list[dict | None]) -> _IntervalStats:
        stats = cls(device, len(states))
        if states and all(s and s.get("count") for s in states):
            sums = [[s["loss_sum"], s["q_sum"]] for s in states if s]
            stats.sums = torch.tensor(sums, dtype=torch.float32, device=device).T.contiguous()
            stats.count = int(states[0]["count"])  # type: ignore[index]
        return stats

    def restart(self, steps: int, updates: int) -> None:
        """A new timing window (the sums stay: they may come from a checkpoint)."""
        self.time, self.steps, self.updates = time.perf_counter(), steps, updates

    def add(self, stats: UpdateResult) -> None:
        values = torch.stack([stats.loss, stats.q_mean])
        self.sums = values.clone() if self.sums is None else self.sums + values
        self.count += 1

    def keep(self, kept: list[int]) -> None:
        self.members = len(kept)
        if self.sums is not None:
            self.sums = self.sums[:, kept] if kept else None

    def means(self) -> list[dict[str, float]]:
        if not self.count or self.sums is None:
            return [{} for _ in range(self.members)]
        values = (self.sums / self.count).cpu().tolist()
        return [{"train/loss": values[0][k], "train/q_mean": values[1][k]} for k in range(self.members)]

    def member_state(self, k: int) -> dict:
        if self.sums is None or not self.count:
            return {"count": 0}
        loss, q = self.sums[:, k].cpu().tolist()
        return {"loss_sum": loss, "q_sum": q, "count": self.count}

    def assert_finite(self, seeds: list[SeedRun]) -> None:
        for seed, means in zip(seeds, self.means(), strict=True):
            _assert_finite(seed, means)

    def collect(self, steps: int, updates: int) -> list[dict[str, float]]:
        elapsed = max(time.perf_counter() - self.time, 1e-9)
        rates = {
            "perf/steps_per_s": (steps - self.steps) / elapsed,
            "perf/updates_per_s": (updates - self.updates) / elapsed,
        }
        out = [dict(rates, **means) for means in self.means()]
        self.sums, self.count = None, 0
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
