"""`make_env`: one Atari game as the Nature DQN agent sees it."""

from __future__ import annotations

import ale_py
import gymnasium as gym
from ale_py.env import AtariEnv
from gymnasium.wrappers import ResizeObservation

from dqn_atari.envs.games import rom_id
from dqn_atari.envs.wrappers import FireReset, FrameStack, MaxAndSkip, NoopReset, needs_fire_reset

# Keep ALE's start-up banner out of stderr, where our one-line errors go.
ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)

# nature: deterministic emulator, as NoFrameskip-v4 (Mnih et al. 2015);
# machado: sticky actions, the emulator repeats the previous action with p=0.25 (Machado et al. 2018).
STICKY_ACTION_PROBABILITY = {"nature": 0.0, "machado": 0.25}


def make_env(
    game: str,
    *,
    protocol: str = "nature",
    frame_skip: int = 4,
    noop_max: int = 30,
    fire_reset: bool = True,
    max_episode_frames: int = 108_000,
    frame_size: int = 84,
    frame_stack: int = 4,
    frame_stack_padding: str = "zeros",
    frame_stack_restart_on_life_loss: bool = False,
    fire_on_life_loss: bool = False,
) -> gym.Env:
    """Observations are uint8 (frame_stack, frame_size, frame_size), newest frame last.

    Rewards are raw game points and `terminated` is game over (all lives); see AtariVector for
    the learning reward and the life-loss terminal. The emulator is at `env.unwrapped.ale`
    (e.g. `getScreenRGB()` for videos).
    """
    env: gym.Env = AtariEnv(
        game=rom_id(game),
        obs_type="grayscale",  # ALE's own luminance, read straight from the emulator's palette
        frameskip=1,
        repeat_action_probability=STICKY_ACTION_PROBABILITY[protocol],
        full_action_space=False,
        # A game still running after this many frames ends as a truncation (108,000 frames
        # = 30 minutes at 60 Hz, Machado et al. 2018), which bootstraps, unlike game over.
        max_num_frames_per_episode=max_episode_frames,
    )
    if fire_reset and needs_fire_reset(env):
        env = FireReset(env)
    if noop_max > 0:
        env = NoopReset(env, noop_max)
    env = MaxAndSkip(env, frame_skip)
    env = ResizeObservation(env, (frame_size, frame_size))
    # The replay rebuilds stacks with the same padding and restarts (see FrameStack).
    return FrameStack(
        env,
        frame_stack,
        padding=frame_stack_padding,
        restart_on_life_loss=frame_stack_restart_on_life_loss,
        fire_on_life_loss=fire_on_life_loss and needs_fire_reset(env),
    )
