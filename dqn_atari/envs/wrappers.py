"""The Nature DQN observation protocol as small gymnasium wrappers, composed in `make_env`.

Order, innermost first (each sees the frames the one below produces):
    AtariEnv(frameskip=1, grayscale)  ale-py's emulator, one frame per step, 210x160 luminance
    FireReset                         one raw frame of FIRE after reset, for games that wait for it
    NoopReset                         1..noop_max raw no-op frames at the start of each game
    MaxAndSkip                        action repeat, max over the last two frames
    ResizeObservation (gymnasium)     84x84 with INTER_AREA
    FrameStackObservation (gymnasium) the last 4 frames, newest last, zeros before a game's first

Rewards stay raw (game points) and `terminated` means game over: the learning reward (sign
clip) and the life-loss learning terminal are derived in `AtariVector`, so that scores and
episode ends reported from the same stream are always full-game raw scores.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class NoopReset(gym.Wrapper):
    """Start each game with a random number (1..noop_max) of raw no-op frames.

    The emulator is deterministic; without this every game starts from the same state
    (Mnih et al. 2015, Methods: "up to 30 no-op actions"). Draws from the base env's RNG,
    so a seeded reset gives the same count.
    """

    def __init__(self, env: gym.Env, noop_max: int = 30):
        super().__init__(env)
        if env.unwrapped.get_action_meanings()[0] != "NOOP":
            raise ValueError("NoopReset needs action 0 to be NOOP")
        self.noop_max = noop_max

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        noops = int(self.np_random.integers(1, self.noop_max + 1)) if self.noop_max > 0 else 0
        for _ in range(noops):
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset()
        info["noops"] = noops
        return obs, info


class MaxAndSkip(gym.Wrapper):
    """Repeat the action for `frame_skip` frames, sum the rewards, and observe the pixel-wise max
    of the last two frames: Atari draws some sprites only on alternate frames (Nature, Methods).

    Stops early when the game ends inside the repeat; the max then uses the last two frames
    seen, which may straddle the previous agent step.
    """

    def __init__(self, env: gym.Env, frame_skip: int = 4):
        super().__init__(env)
        self.frame_skip = frame_skip
        self._last_frame: np.ndarray | None = None

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._last_frame = obs
        return obs, info

    def step(self, action):
        total_reward = 0.0
        frame = self._last_frame
        for _ in range(self.frame_skip):
            previous = frame
            frame, reward, terminated, truncated, info = self.env.step(action)
            total_reward += reward
            if terminated or truncated:
                break
        self._last_frame = frame
        return np.maximum(previous, frame), total_reward, terminated, truncated, info


class FireReset(gym.Wrapper):
    """Press FIRE for one raw frame after reset: in Breakout and similar games nothing moves until
    FIRE, and an untrained agent can spend whole episodes waiting. (From OpenAI Baselines, not the
    Nature paper.) One frame, before the no-ops, as ale-py's AtariVectorEnv does, so that both
    backends start a game identically."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        if env.unwrapped.get_action_meanings()[1] != "FIRE":
            raise ValueError("FireReset needs action 1 to be FIRE")

    def reset(self, *, seed=None, options=None):
        self.env.reset(seed=seed, options=options)
        obs, _, terminated, truncated, info = self.env.step(1)
        if terminated or truncated:
            obs, info = self.env.reset()
        return obs, info


def needs_fire_reset(env: gym.Env) -> bool:
    meanings = env.unwrapped.get_action_meanings()
    return len(meanings) >= 3 and meanings[1] == "FIRE"
