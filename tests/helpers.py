"""What several test modules share: paths, the CLI in a child process, device and bf16 markers,
the replay's reference stream, the checkpoint tests' short Pong run, and Catch. Test modules
import from here, never from one another; pytest's own set-up (threads, fixtures) is in
conftest.py."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers import FrameStackObservation, GrayscaleObservation, ResizeObservation

from dqn_atari.replay import ReplayBuffer

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"

# The CUDA variants of device tests: collected everywhere, run where a GPU is present, skipped
# (with this reason in the summary) on CPU-only machines. `pytest -m cuda` runs only them.
ON_CUDA = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
CUDA = pytest.param("cuda", marks=ON_CUDA, id="cuda")


def _has_bf16_units() -> bool:
    """A CPU with bfloat16 matrix units (AVX-512 BF16 or AMX); elsewhere bf16 is emulated, several
    times slower than fp32 (6.5x on this project's AVX2 machine)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# bf16 tests on the CPU: run where it has bf16 units, skipped (saying so) where bf16 is emulated.
BF16_HERE = pytest.mark.skipif(not _has_bf16_units(), reason="bf16 is emulated on this CPU (no AVX-512 BF16 or AMX)")


def on_host(x):
    """A sampled field as a numpy array, wherever it lives (frames on a GPU come back as CUDA
    tensors)."""
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """The real console entry point in a child process: exit status and stderr as a user sees them."""
    return subprocess.run(
        [sys.executable, "-m", "dqn_atari", *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ---------------------------------------------------------------------------- the replay's reference
FRAME = (2, 3)  # tiny frames: content is an id, so any mix-up shows
STACK = 4


def frame_of(uid: int) -> np.ndarray:
    """A frame that encodes a unique id in its bytes."""
    b = np.array([(uid >> (8 * k)) & 0xFF for k in range(6)], dtype=np.uint8)
    return b.reshape(FRAME)


class Stream:
    """N envs playing random games. Keeps what the agent saw and, per env, every write in order,
    so a reference answer can be computed for any ring position."""

    def __init__(
        self,
        num_envs: int,
        rng: np.random.Generator,
        gamma: float,
        n_step: int,
        padding: str = "zeros",
        restart_on_life_loss: bool = False,
    ):
        self.n, self.rng, self.gamma, self.n_step = num_envs, rng, gamma, n_step
        self.padding, self.restart_on_life_loss = padding, restart_on_life_loss
        self.uid = 0
        self.depth = [0] * num_envs  # entries since the stack's first frame
        self.stacks = [self._new_game(e) for e in range(num_envs)]
        self.writes = [[] for _ in range(num_envs)]  # per env: dicts in write order
        self.game_left = [self._game_length() for _ in range(num_envs)]

    def _game_length(self) -> int:
        return int(self.rng.choice([1, 2, 3, 5, 9, 20]))

    def _fresh(self) -> np.ndarray:
        self.uid += 1
        return frame_of(self.uid)

    def _new_game(self, e):
        first = self._fresh()
        if self.padding == "first_frame":
            stack = np.repeat(first[None], STACK, axis=0)
        else:
            stack = np.zeros((STACK, *FRAME), dtype=np.uint8)
            stack[-1] = first
        self.depth[e] = 0
        return stack

    def end_abruptly(self, buffer: ReplayBuffer):
        """Every game in progress is lost: its newest entry took an action whose outcome was
        never stored. It can start no transition; a walk bootstraps from its state."""
        buffer.end_games_abruptly()
        for e in range(self.n):
            if self.writes[e] and self.writes[e][-1]["kind"] == "step":
                self.writes[e][-1]["kind"] = "abrupt"
        self.stacks = [self._new_game(e) for e in range(self.n)]
        self.game_left = [self._game_length() for _ in range(self.n)]

    def step(self, buffer: ReplayBuffer):
        obs = np.stack(self.stacks)
        actions = self.rng.integers(0, 6, self.n)
        rewards = self.rng.choice([-1.0, 0.0, 0.0, 1.0], self.n).astype(np.float32)
        terminal = np.zeros(self.n, bool)
        truncated = np.zeros(self.n, bool)
        game_over = np.zeros(self.n, bool)
        next_obs = obs.copy()
        new_stacks = []
        for e in range(self.n):
            self.game_left[e] -= 1
            nxt = np.concatenate([obs[e, 1:], self._fresh()[None]])
            next_obs[e] = nxt
            ended = self.game_left[e] == 0
            if ended:
                game_over[e] = True
                if self.rng.random() < 0.3:
                    truncated[e] = True  # time limit: bootstraps
                else:
                    terminal[e] = True
            elif self.rng.random() < 0.1:
                terminal[e] = True  # life loss: learning terminal, game goes on
                if self.restart_on_life_loss:  # ...and a new stack starts, as at a game's end
                    ended = game_over[e] = True
            self.writes[e].append(
                dict(
                    kind="step",
                    obs=obs[e].copy(),
                    action=actions[e],
                    reward=rewards[e],
                    terminal=terminal[e],
                    truncated=truncated[e],
                    next_obs=nxt,
                    depth=self.depth[e],
                )
            )
            self.depth[e] += 1
            if ended:
                self.writes[e].append(dict(kind="last"))
                self.game_left[e] = self._game_length()
                new_stacks.append(self._new_game(e))
            else:
                new_stacks.append(nxt)
        buffer.add(obs, actions, rewards, terminal, truncated, game_over, next_obs)
        self.stacks = new_stacks

    def reference(self, e: int, pos: int, ring: int):
        """The transition written last at ring position `pos` of env e, its n-step target, and
        whether everything it needs is still held."""
        writes = self.writes[e]
        held_from = max(0, len(writes) - ring)
        seq = next(s for s in range(len(writes) - 1, -1, -1) if s % ring == pos)
        w = writes[seq]
        if w["kind"] != "step":
            return None
        ret, discount, k = 0.0, 1.0, 0
        for j in range(self.n_step):
            wj = writes[seq + j] if seq + j < len(writes) else None
            if wj is None or wj["kind"] == "last":
                return None  # needs entries not written yet
            if wj["kind"] == "abrupt" and j > 0:
                break  # the game's newest state: bootstrap from it, nothing after it belongs
            ret += discount * wj["reward"]
            discount *= self.gamma
            k = j + 1
            if wj["terminal"]:
                discount = 0.0
                break
            if wj["truncated"]:
                break
        if seq + k >= len(writes):
            return None
        boot = writes[seq + k]
        next_obs = writes[seq + k - 1]["next_obs"] if boot["kind"] == "last" else boot["obs"]
        # Oldest entry the stack needs: its game's first frame, or STACK-1 entries back.
        needs_from = seq - min(w["depth"], STACK - 1)
        return dict(w, ret=ret, discount=discount, next_obs=next_obs, held=needs_from >= held_from)

    def valid_transitions(self, ring: int) -> set[tuple[int, int]]:
        """(env, position) of every transition the replay may sample now."""
        valid = set()
        for e in range(self.n):
            for p in range(min(ring, len(self.writes[e]))):
                ref = self.reference(e, p, ring)
                if ref is not None and ref["held"]:
                    valid.add((e, p))
        return valid


# Where the frames live: host memory (numpy), a torch tensor (on the CPU here, standing in for a
# GPU: the path a GPU store takes, byte for byte), and a GPU where there is one. Sampling follows
# one set of rules on the host whatever holds the frames; only the gather happens where they are.
STORAGES = [pytest.param(None, id="host"), pytest.param("cpu", id="torch-cpu"), CUDA]


# ---------------------------------------------------------------------------- short runs on Pong
# 1,000 agent steps, a checkpoint every 250, learning from step 200, batches of 8 and a head of
# 64 units (what these tests check depends on neither; the update's cost does): seconds a run.
BASE = [
    str(CONFIGS / "smoke.yaml"),
    "train.total_frames=4000",
    "train.learning_starts_steps=200",
    "train.batch_size=8",
    "network.hidden_size=64",
    "checkpoint.every_frames=1000",
    "checkpoint.keep_last=2",
    "train.deterministic=true",
    "train.torch_threads=1",
    "log.every_steps=100",
]


def train(run: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli("train", *BASE, f"run_dir={run}", *extra) if env is None else _run_env(run, extra, env)


def _run_env(run, extra, env):
    return subprocess.run(
        [sys.executable, "-m", "dqn_atari", "train", *BASE, f"run_dir={run}", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
    )


def resume(run: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    if env is None:
        return run_cli("train", "--resume", str(run), *extra)
    return subprocess.run(
        [sys.executable, "-m", "dqn_atari", "train", "--resume", str(run), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
    )


def checkpoints(run: Path) -> list[Path]:
    root = run / "checkpoints"
    return sorted(p for p in root.iterdir() if p.name.startswith("ckpt-")) if root.is_dir() else []


def assert_same_final_state(a: Path, b: Path) -> None:
    ca, cb = checkpoints(a)[-1], checkpoints(b)[-1]
    assert ca.name == cb.name
    ma = torch.load(ca / "model.pt", weights_only=True)["agent"]
    mb = torch.load(cb / "model.pt", weights_only=True)["agent"]
    for net in ("online", "target"):
        for key in ma[net]:
            assert torch.equal(ma[net][key], mb[net][key]), f"{net}.{key} differs"
    sa, sb = ma["optimizer"]["state"], mb["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for name in sa[k]:
            assert torch.equal(torch.as_tensor(sa[k][name]), torch.as_tensor(sb[k][name])), f"optimizer {k}.{name}"
    assert ma["updates"] == mb["updates"]
    for f in sorted((ca / "replay").glob("*.npy")):
        np.testing.assert_array_equal(np.load(f), np.load(cb / "replay" / f.name), err_msg=f.name)


def metric_points(run: Path, tag: str) -> list[int]:
    with open(run / "metrics.csv", newline="") as f:
        return [int(r["frames"]) for r in csv.DictReader(f) if r["tag"] == tag]


def metric_values(run: Path, tag: str) -> list[tuple[int, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return [(int(r["frames"]), r["value"]) for r in csv.DictReader(f) if r["tag"] == tag]


def one_line_error(result: subprocess.CompletedProcess, code: int = 2) -> str:
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if "warning" not in line]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("dqn-atari: error: ")
    return lines[0]


def start_training(run: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dqn_atari", "train", *BASE, f"run_dir={run}", *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, what: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# ---------------------------------------------------------------------------- Catch
# Catch, a tiny pixel game for learning tests: a ball falls one row per step from a random
# column; the paddle on the bottom row moves left, stays or moves right. Catching it scores +1,
# missing it -1, and the game ends. The optimal return is +1 every game.
#
# Rendered as an Atari-sized RGB frame (210x160) so that the same grayscale, resize and frame
# stack wrappers as for Atari games process it.
ROWS, COLS = 10, 5
CELL_H, CELL_W = 21, 32  # 10 x 21 = 210, 5 x 32 = 160


class Catch(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self):
        self.observation_space = gym.spaces.Box(0, 255, (ROWS * CELL_H, COLS * CELL_W, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(3)  # left, stay, right

    def get_action_meanings(self):
        return ["LEFT", "NOOP", "RIGHT"]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.ball_row, self.ball_col = 0, int(self.np_random.integers(COLS))
        self.paddle = int(self.np_random.integers(COLS))
        return self._frame(), {"lives": 1}

    def step(self, action):
        self.paddle = int(np.clip(self.paddle + int(action) - 1, 0, COLS - 1))
        self.ball_row += 1
        done = self.ball_row == ROWS - 1
        reward = (1.0 if self.ball_col == self.paddle else -1.0) if done else 0.0
        return self._frame(), reward, done, False, {"lives": 1}

    def _frame(self):
        frame = np.zeros(self.observation_space.shape, np.uint8)
        r, c = self.ball_row, self.ball_col
        frame[r * CELL_H : (r + 1) * CELL_H, c * CELL_W : (c + 1) * CELL_W] = (255, 200, 0)
        p = self.paddle
        frame[(ROWS - 1) * CELL_H :, p * CELL_W : (p + 1) * CELL_W] = (0, 200, 255)
        return frame


def make_catch(frame_size: int = 84, frame_stack: int = 4) -> gym.Env:
    env = GrayscaleObservation(Catch())
    env = ResizeObservation(env, (frame_size, frame_size))
    return FrameStackObservation(env, frame_stack, padding_type="zero")
