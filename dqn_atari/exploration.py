"""Exploration rules: for each game, the probability epsilon that its next action is uniformly
random instead of the greedy one, as a function of the frames played.

    LinearEpsilon   epsilon-greedy with epsilon annealed linearly from `epsilon_start` to
                    `epsilon_end` over `epsilon_decay_frames`, from the first frame (CleanRL,
                    Baselines) or from the first update (DeepMind's Nature code, Dopamine,
                    DQN Zoo); Mnih et al. 2015, Methods: "Training details"
    NoEpsilon       always greedy: noisy networks explore through their noise, and NoisyNet-DQN
                    drops epsilon-greedy (Fortunato et al. 2018, section 3.1)

The agent draws, from each seed's own stream, which games explore and their random actions
(`Agent.act`); a rule only says how likely each game is to explore. A new rule (e.g. Ape-X's
fixed epsilon per game) is one class here and one value of `agent.exploration`.
"""

from __future__ import annotations

import numpy as np

from dqn_atari.config import Config


class Exploration:
    name = "exploration"

    def epsilons(self, frames: int, num_envs: int) -> np.ndarray:
        """(num_envs,) the probability that each game acts at random after `frames` frames."""
        raise NotImplementedError


def linear_epsilon(frames: int, start: float, end: float, decay_frames: int, begin_frames: int = 0) -> float:
    """Epsilon held at `start` until `begin_frames`, then annealed linearly to `end` over
    `decay_frames` frames."""
    fraction = min(max(frames - begin_frames, 0) / decay_frames, 1.0)
    return start + fraction * (end - start)


class LinearEpsilon(Exploration):
    name = "linear_epsilon"

    def __init__(self, start: float, end: float, decay_frames: int, begin_frames: int = 0):
        self.start, self.end, self.decay_frames, self.begin_frames = start, end, decay_frames, begin_frames

    def epsilons(self, frames: int, num_envs: int) -> np.ndarray:
        epsilon = linear_epsilon(frames, self.start, self.end, self.decay_frames, self.begin_frames)
        return np.full(num_envs, epsilon)


class NoEpsilon(Exploration):
    name = "none"

    def epsilons(self, frames: int, num_envs: int) -> np.ndarray:
        return np.zeros(num_envs)


def exploration_from_config(cfg: Config) -> Exploration:
    """The rule a run's `agent` section asks for; "learning_starts" begins the annealing at the
    run's first update, in frames."""
    a = cfg.agent
    if a.exploration == "none":
        return NoEpsilon()
    begin = cfg.train.learning_starts_steps * cfg.env.frame_skip if a.epsilon_decay_start == "learning_starts" else 0
    return LinearEpsilon(a.epsilon_start, a.epsilon_end, a.epsilon_decay_frames, begin)
