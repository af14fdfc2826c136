"""N Atari games stepped together, with the same meaning on both backends.

Both backends are gymnasium VectorEnvs in SAME_STEP autoreset mode: when a game ends, the
step returns the new game's first observation and the ended game's last one in
`info["final_obs"]`. `AtariVector` turns that into what the trainer needs:

- `obs`: what to act on next; `next_obs`: what followed the action (for a game that just
  ended, its last stack, not the new game's first) — the pair the replay stores;
- `reward` in raw game points, `learning_reward` sign-clipped (Nature: rewards clipped to
  [-1, 1] for learning only);
- `terminated` (game over), `truncated` (time limit: bootstrap), `life_loss` (game goes on),
  and `learning_terminal` = game over, or life loss when `terminal_on_life_loss`;
- `stack_ends`: the next `obs` starts a new frame stack (game over, or a life loss when
  `frame_stack_restart_on_life_loss`); `next_obs` is then the stack that ended;
- `finished_games`: raw full-game scores, never per-life returns.

Life loss is derived here, from the emulator's `lives`, rather than from ale-py's
`episodic_life`, which resets the whole game at each life loss instead of continuing it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar, cast

import ale_py
import gymnasium as gym
import numpy as np
from ale_py.env import AtariEnv
from gymnasium.vector import AutoresetMode

from dqn_atari.envs.factory import STICKY_ACTION_PROBABILITY, make_env
from dqn_atari.envs.games import rom_id
from dqn_atari.envs.wrappers import FrameStack, MaxAndSkip


@dataclass
class GameResult:
    env_index: int
    score: float  # raw game points, all lives
    learning_return: float  # sum of clipped rewards, what the agent optimises
    length_steps: int  # agent steps


@dataclass
class VectorStep:
    obs: np.ndarray
    next_obs: np.ndarray
    reward: np.ndarray
    learning_reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    life_loss: np.ndarray
    learning_terminal: np.ndarray
    stack_ends: np.ndarray
    finished_games: list[GameResult] = field(default_factory=list)


class AtariVector:
    def __init__(
        self,
        env: gym.vector.VectorEnv,
        *,
        terminal_on_life_loss: bool = True,
        stack_restarts_on_life_loss: bool = False,
    ):
        self.env = env
        self.stack_restarts_on_life_loss = stack_restarts_on_life_loss
        self.num_envs = env.num_envs
        self.num_actions = int(cast(gym.spaces.Discrete, env.single_action_space).n)
        self.terminal_on_life_loss = terminal_on_life_loss
        self._lives = np.zeros(self.num_envs, dtype=np.int64)
        self._scores = np.zeros(self.num_envs, dtype=np.float64)
        self._learning_returns = np.zeros(self.num_envs, dtype=np.float64)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)

    def reset(self, seed: int | list[int] | None = None) -> np.ndarray:
        """`seed`: one per env, or an int for consecutive seeds from it."""
        seeds: Any = seed  # SyncVectorEnv takes a list (its stubs say int), ale-py's an array
        if isinstance(seed, list) and not isinstance(self.env, gym.vector.SyncVectorEnv):
            seeds = np.asarray(seed, dtype=np.int64)
        obs, info = self.env.reset(seed=seeds)
        self._lives[:] = info["lives"]
        self._scores[:] = 0
        self._learning_returns[:] = 0
        self._lengths[:] = 0
        return obs

    def step(self, actions: np.ndarray) -> VectorStep:
        obs, reward, terminated, truncated, info = self.env.step(actions.astype(np.int64, copy=False))
        reward = np.asarray(reward, dtype=np.float32)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        game_over = terminated | truncated

        lives = np.asarray(info["lives"])
        # For an ended game `lives` is already the new game's count; its last life loss is game over.
        life_loss = (lives < self._lives) & ~game_over
        self._lives[:] = lives

        learning_reward = np.sign(reward)
        self._scores += reward
        self._learning_returns += learning_reward
        self._lengths += 1
        finished = []
        next_obs = obs
        restarted = life_loss & self.stack_restarts_on_life_loss
        if restarted.any():
            next_obs = obs.copy()
            next_obs[restarted] = _stacked_info(info, "life_loss_obs", np.flatnonzero(restarted))
        if game_over.any():
            ended = np.flatnonzero(game_over)
            next_obs = next_obs.copy() if next_obs is obs else next_obs
            next_obs[ended] = _stacked_info(info, "final_obs", ended)
            finished = [
                GameResult(int(i), float(self._scores[i]), float(self._learning_returns[i]), int(self._lengths[i]))
                for i in ended
            ]
            self._scores[ended] = 0
            self._learning_returns[ended] = 0
            self._lengths[ended] = 0

        learning_terminal = terminated | (life_loss & self.terminal_on_life_loss)
        return VectorStep(
            obs=obs,
            next_obs=next_obs,
            reward=reward,
            learning_reward=learning_reward,
            terminated=terminated,
            truncated=truncated,
            life_loss=life_loss,
            learning_terminal=learning_terminal,
            stack_ends=game_over | restarted,
            finished_games=finished,
        )

    def close(self) -> None:
        self.env.close()

    # ------------------------------------------------------------------ checkpointing
    @property
    def can_save_emulators(self) -> bool:
        """Only our wrapper stack exposes its emulators; ale-py's vector env keeps them in C++, and
        a non-Atari env (the tests' Catch) has none."""
        return isinstance(self.env, gym.vector.SyncVectorEnv) and all(
            isinstance(env.unwrapped, AtariEnv) for env in self.env.envs
        )

    def state(self) -> dict[str, np.ndarray]:
        """Plain arrays: score keeping, and for the gymnasium backend each emulator's full state
        (ale-py cloneState with its RNG) and the wrappers' own state."""
        out = {
            "lives": self._lives.copy(),
            "scores": self._scores.copy(),
            "learning_returns": self._learning_returns.copy(),
            "lengths": self._lengths.copy(),
        }
        if self.can_save_emulators:
            for i, env in enumerate(cast(gym.vector.SyncVectorEnv, self.env).envs):
                skip, stack = _find(env, MaxAndSkip), _find(env, FrameStack)
                atari = cast(AtariEnv, env.unwrapped)
                out[f"ale_{i}"] = np.frombuffer(atari.ale.cloneState(include_rng=True).serialize(), dtype=np.uint8)
                out[f"np_random_{i}"] = np.array(json.dumps(atari.np_random.bit_generator.state))
                out[f"last_frame_{i}"] = skip._last_frame
                out[f"stack_{i}"] = np.stack(list(stack.obs_queue))
        return out

    def restore(self, state: dict[str, np.ndarray]) -> None:
        self._lives[:] = state["lives"]
        self._scores[:] = state["scores"]
        self._learning_returns[:] = state["learning_returns"]
        self._lengths[:] = state["lengths"]
        for i, env in enumerate(cast(gym.vector.SyncVectorEnv, self.env).envs):
            skip, stack = _find(env, MaxAndSkip), _find(env, FrameStack)
            atari = cast(AtariEnv, env.unwrapped)
            atari.ale.restoreState(ale_py.ALEState(state[f"ale_{i}"].tobytes()))
            atari.np_random.bit_generator.state = json.loads(str(state[f"np_random_{i}"]))
            skip._last_frame = state[f"last_frame_{i}"].copy()
            stack.obs_queue.clear()
            stack.obs_queue.extend(frame.copy() for frame in state[f"stack_{i}"])
            stack.lives = atari.ale.lives()


WrapperT = TypeVar("WrapperT", bound=gym.Wrapper)


def _find(env: gym.Env, kind: type[WrapperT]) -> WrapperT:
    """The wrapper of type `kind` in a stack of wrappers."""
    while not isinstance(env, kind):
        env = cast(gym.Wrapper, env).env
    return env


def _stacked_info(info: dict, key: str, envs: np.ndarray) -> np.ndarray:
    values = info[key]
    if values.dtype == object:  # SyncVectorEnv: an object array holding None for the other envs
        return np.stack([values[i] for i in envs])
    return values[envs]


def make_vector_env(
    game: str,
    num_envs: int = 1,
    *,
    backend: str = "gymnasium",
    protocol: str = "nature",
    frame_skip: int = 4,
    noop_max: int = 30,
    fire_reset: bool = True,
    terminal_on_life_loss: bool = True,
    max_episode_frames: int = 108_000,
    frame_size: int = 84,
    frame_stack: int = 4,
    frame_stack_padding: str = "zeros",
    frame_stack_restart_on_life_loss: bool = False,
    fire_on_life_loss: bool = False,
) -> AtariVector:
    if backend == "gymnasium":
        make_one = partial(
            make_env,
            game,
            protocol=protocol,
            frame_skip=frame_skip,
            noop_max=noop_max,
            fire_reset=fire_reset,
            max_episode_frames=max_episode_frames,
            frame_size=frame_size,
            frame_stack=frame_stack,
            frame_stack_padding=frame_stack_padding,
            frame_stack_restart_on_life_loss=frame_stack_restart_on_life_loss,
            fire_on_life_loss=fire_on_life_loss,
        )
        env: gym.vector.VectorEnv = gym.vector.SyncVectorEnv(
            [make_one] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP
        )
    elif backend == "ale_vector":
        from ale_py.vector_env import AtariVectorEnv

        if frame_stack_padding != "zeros" or frame_stack_restart_on_life_loss or fire_on_life_loss:
            raise ValueError("ale-py's AtariVectorEnv pads stacks with zeros per game only (DeepMind's convention)")

        env = AtariVectorEnv(
            rom_id(game),
            num_envs,
            frameskip=frame_skip,
            noop_max=noop_max,
            use_fire_reset=fire_reset,
            max_num_frames_per_episode=max_episode_frames,
            repeat_action_probability=STICKY_ACTION_PROBABILITY[protocol],
            img_height=frame_size,
            img_width=frame_size,
            stack_num=frame_stack,
            grayscale=True,
            maxpool=True,
            episodic_life=False,  # it would reset the game; see the module docstring
            reward_clipping=False,  # we need raw scores; the learning reward is clipped above
            autoreset_mode=AutoresetMode.SAME_STEP,
        )
    else:
        raise ValueError(f"unknown backend {backend!r}; expected gymnasium or ale_vector")
    return AtariVector(
        env,
        terminal_on_life_loss=terminal_on_life_loss,
        stack_restarts_on_life_loss=frame_stack_restart_on_life_loss,
    )


def vector_env_from_config(env_cfg) -> AtariVector:
    """From the config's `env` section, whose fields are exactly make_vector_env's arguments."""
    return make_vector_env(**dataclasses.asdict(env_cfg))
