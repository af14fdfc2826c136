"""The Nature DQN observation protocol as small gymnasium wrappers, composed in `make_env`.

Order, innermost first (each sees the frames the one below produces):
    AtariEnv(frameskip=1, grayscale)  ale-py's emulator, one frame per step, 210x160 luminance
    FireReset                         one raw frame of FIRE after reset, for games that wait for it
    NoopReset                         1..noop_max raw no-op frames at the start of each game
    MaxAndSkip                        action repeat, max over the last two frames
    ResizeObservation (gymnasium)     84x84 with INTER_AREA
    FrameStack                        the last 4 frames, newest last; what pads a new stack and
                                      whether a life loss starts one follow the chosen convention

Rewards stay raw (game points) and `terminated` means game over: the learning reward (sign
clip) and the life-loss learning terminal are derived in `AtariVector`, so that scores and
episode ends reported from the same stream are always full-game raw scores.
"""

from __future__ import annotations

from collections import deque
from typing import cast

import gymnasium as gym
import numpy as np
from ale_py.env import AtariEnv

NOOP, FIRE = 0, 1


def action_meanings(env: gym.Env) -> list[str]:
    """The names of a game's actions, from ale-py's AtariEnv under the wrappers."""
    return cast(AtariEnv, env.unwrapped).get_action_meanings()


class NoopReset(gym.Wrapper):
    """Start each game with a random number (1..noop_max) of raw no-op frames.

    The emulator is deterministic; without this every game starts from the same state
    (Mnih et al. 2015, Methods: "up to 30 no-op actions"). Draws from the base env's RNG,
    so a seeded reset gives the same count.
    """

    def __init__(self, env: gym.Env, noop_max: int = 30):
        super().__init__(env)
        if action_meanings(env)[0] != "NOOP":
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
            total_reward += float(reward)
            if terminated or truncated:
                break
        self._last_frame = frame
        assert previous is not None and frame is not None, "step() before reset()"
        return np.maximum(previous, frame), total_reward, terminated, truncated, info


class FireReset(gym.Wrapper):
    """Press FIRE for one raw frame after reset: in Breakout and similar games nothing moves until
    FIRE, and an untrained agent can spend whole episodes waiting. (From OpenAI Baselines, not the
    Nature paper.) One frame, before the no-ops, as ale-py's AtariVectorEnv does, so that both
    backends start a game identically."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        if action_meanings(env)[1] != "FIRE":
            raise ValueError("FireReset needs action 1 to be FIRE")

    def reset(self, *, seed=None, options=None):
        self.env.reset(seed=seed, options=options)
        obs, _, terminated, truncated, info = self.env.step(1)
        if terminated or truncated:
            obs, info = self.env.reset()
        return obs, info


def needs_fire_reset(env: gym.Env) -> bool:
    meanings = action_meanings(env)
    return len(meanings) >= 3 and meanings[1] == "FIRE"


class FrameStack(gym.Wrapper):
    """The last `stack` frames as one uint8 array (stack, H, W), newest last.

    Two conventions exist, and the replay rebuilds stacks with the same one as acting:
    - DeepMind (Nature code, Dopamine, DQN Zoo; ale-py's AtariVectorEnv): a stack starts at each
      game; slots before the game's first frame are zeros (`padding="zeros"`).
    - Baselines and CleanRL (`EpisodicLifeEnv` under `FireResetEnv` under `FrameStack`): a life
      loss starts a new stack as if a new game began (`restart_on_life_loss`), its slots filled
      with the first frame repeated (`padding="first_frame"`), and the reset after a life loss
      plays NOOP, FIRE, then action 2, each an agent step the agent does not see
      (`fire_on_life_loss`), so Breakout's ball is served without the agent pressing FIRE.

    On a restart, the stack that ended with the life loss is returned in
    `info["life_loss_obs"]`: it is the next state of the transition that lost the life, while
    the returned observation is the new stack to act on. Rewards of the hidden reset steps are
    added to the step's reward, so scores stay full-game scores.
    """

    def __init__(
        self,
        env: gym.Env,
        stack: int = 4,
        *,
        padding: str = "zeros",
        restart_on_life_loss: bool = False,
        fire_on_life_loss: bool = False,
    ):
        super().__init__(env)
        if padding not in ("zeros", "first_frame"):
            raise ValueError(f"padding must be zeros or first_frame, got {padding!r}")
        if fire_on_life_loss and not restart_on_life_loss:
            raise ValueError("fire_on_life_loss needs restart_on_life_loss (the presses are part of a restart)")
        if fire_on_life_loss and action_meanings(env)[FIRE] != "FIRE":
            raise ValueError("fire_on_life_loss needs action 1 to be FIRE")
        self.stack, self.padding = stack, padding
        self.restart_on_life_loss, self.fire_on_life_loss = restart_on_life_loss, fire_on_life_loss
        self.obs_queue: deque[np.ndarray] = deque(maxlen=stack)
        self.lives = 0
        frame_shape = cast(gym.spaces.Box, env.observation_space).shape
        self.observation_space = gym.spaces.Box(low=0, high=255, shape=(stack, *frame_shape), dtype=np.uint8)

    def _restart(self, frame: np.ndarray) -> np.ndarray:
        pad = frame if self.padding == "first_frame" else np.zeros_like(frame)
        self.obs_queue.clear()
        self.obs_queue.extend([pad] * (self.stack - 1) + [frame])
        return np.stack(self.obs_queue)

    def reset(self, *, seed=None, options=None):
        frame, info = self.env.reset(seed=seed, options=options)
        self.lives = info.get("lives", 0)
        return self._restart(frame), info

    def step(self, action):
        frame, reward, terminated, truncated, info = self.env.step(action)
        self.obs_queue.append(frame)
        lives = info.get("lives", 0)
        life_lost, self.lives = lives < self.lives, lives
        if not (self.restart_on_life_loss and life_lost) or terminated or truncated:
            return np.stack(self.obs_queue), reward, terminated, truncated, info
        life_loss_obs = np.stack(self.obs_queue)
        if self.fire_on_life_loss:
            for hidden_action in (NOOP, FIRE, 2):
                frame, hidden_reward, terminated, truncated, info = self.env.step(hidden_action)
                reward = float(reward) + float(hidden_reward)
                if terminated or truncated:
                    break
            self.lives = info.get("lives", 0)
        info = dict(info, life_loss_obs=life_loss_obs)
        return self._restart(frame), reward, terminated, truncated, info
